"""What every peer a test starts has in common: ``with Peer(...) as peer`` starts it and stops it
however the block ends."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self


class Peer:
    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
