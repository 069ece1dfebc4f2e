"""Writes records to standard output as NDJSON, one record per line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from outputs.base import Chunk, Output, OutputConfig, RetryableError


class StdoutConfig(
    OutputConfig, tag_field="type", tag="stdout", kw_only=True, forbid_unknown_fields=True
):
    workers: int = 1
    """One writer keeps lines of different chunks from interleaving."""


class StdoutOutput(Output):
    type_name = "stdout"

    def __init__(self, config: StdoutConfig, context: object) -> None:
        super().__init__(config, context)  # type: ignore[arg-type]
        self._lock = asyncio.Lock()

    async def send(self, chunks: Sequence[Chunk]) -> None:
        data = chunks[0].data() if len(chunks) == 1 else b"".join(c.data() for c in chunks)
        async with self._lock:
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except BrokenPipeError as exc:
                raise RetryableError(f"stdout is closed: {exc}") from exc
