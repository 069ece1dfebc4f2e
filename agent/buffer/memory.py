"""The memory buffer: the disk buffer's contract without files. Fast, bounded by ``max_bytes``,
and everything not yet acknowledged is lost when the process stops or crashes. Dead-lettered
chunks are still written to ``data_dir/dead-letter``."""

from __future__ import annotations

from agent.buffer.base import Routes
from agent.buffer.core import ChunkBuffer


class MemoryBuffer(ChunkBuffer):
    location = "memory"

    async def open(self, routes: Routes) -> None:
        self._routes = routes
        self._update_gauges(force=True)

    async def close(self) -> None:
        for chunk in list(self._open.values()):
            self._seal(chunk)
        self._update_gauges(force=True)
