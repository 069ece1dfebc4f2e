"""Build the buffer ``[buffer]`` asks for (its checks are ``BufferConfig``'s own)."""

from __future__ import annotations

import logging

from agent.buffer.base import Buffer, BufferConfig
from agent.buffer.disk import DiskBuffer
from agent.buffer.memory import MemoryBuffer
from common.metrics import Metrics


def build_buffer(
    config: BufferConfig, data_dir: str, metrics: Metrics, logger: logging.Logger
) -> Buffer:
    if config.type == "memory":
        return MemoryBuffer(config, data_dir, metrics, logger)
    return DiskBuffer(config, data_dir, metrics, logger)
