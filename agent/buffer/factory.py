"""Build the buffer ``[buffer]`` asks for (its checks are ``BufferConfig``'s own)."""

from __future__ import annotations

import logging

from agent.buffer.base import Buffer, BufferConfig
from agent.buffer.core import ChunkBuffer
from agent.buffer.deadletter import DEFAULT_MAX_BYTES
from agent.buffer.disk import DiskBuffer
from agent.buffer.memory import MemoryBuffer
from common.metrics import Metrics


def build_buffer(
    config: BufferConfig,
    data_dir: str,
    metrics: Metrics,
    logger: logging.Logger,
    dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
) -> Buffer:
    """The buffer, owner of ``data_dir``'s chunks and of its dead-letter directory (bounded by
    ``dead_letter_max_bytes``). ``BufferConfig`` checks its own sizes."""
    kind: type[ChunkBuffer] = MemoryBuffer if config.type == "memory" else DiskBuffer
    return kind(config, data_dir, metrics, logger, dead_letter_max_bytes=dead_letter_max_bytes)
