"""Build the buffer ``[buffer]`` asks for."""

from __future__ import annotations

import logging

from agent.buffer.base import Buffer, BufferConfig
from agent.buffer.disk import DiskBuffer
from agent.buffer.memory import MemoryBuffer
from common.metrics import Metrics


def build_buffer(
    config: BufferConfig, data_dir: str, metrics: Metrics, logger: logging.Logger
) -> Buffer:
    if int(config.chunk_bytes) <= 0:
        raise ValueError("buffer.chunk_bytes must be positive")
    if int(config.max_bytes) < int(config.chunk_bytes):
        raise ValueError(
            f"buffer.max_bytes ({int(config.max_bytes)}) must be at least "
            f"buffer.chunk_bytes ({int(config.chunk_bytes)})"
        )
    if config.type == "memory":
        return MemoryBuffer(config, data_dir, metrics, logger)
    return DiskBuffer(config, data_dir, metrics, logger)
