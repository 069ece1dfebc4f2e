"""Dead letters for single records: those a destination refused one by one (an Elasticsearch
bulk item with a mapping conflict), kept beside whole dead-lettered chunks in
``data_dir/dead-letter/`` with the reason, for a person to look at and replay."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from agent.buffer.core import write_dead_letter
from outputs.base import Chunk

log = logging.getLogger("agent.deadletter")


class DeadLetterDir:
    def __init__(self, path: str) -> None:
        self.path = path
        self._parts = itertools.count(1)

    def write(self, chunk: Chunk, output: str, lines: Sequence[bytes], reason: str) -> str:
        """Returns the data file's path. Never raises: a failure to write is logged with the
        reason and the record count, so the loss is at least on record."""
        try:
            return write_dead_letter(
                self.path,
                chunk.id,
                chunk.tag,
                output,
                reason,
                b"".join(line + b"\n" for line in lines),
                len(lines),
                part=f"records-{next(self._parts)}",
            )
        except OSError as exc:
            log.error(
                "cannot write dead letters (%d records of chunk %s for %s, reason: %s): %s",
                len(lines), chunk.id, output, reason, exc,
            )
            return "(not written)"
