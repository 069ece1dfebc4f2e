"""The dead-letter directory: records a destination refused for good, with the reason, kept for
a person to look at and replay. Nothing leaves the agent silently."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence

import msgspec

from outputs.base import Chunk

log = logging.getLogger("agent.deadletter")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class DeadLetterDir:
    def __init__(self, path: str) -> None:
        self.path = path
        self._sequence = 0

    def write(self, chunk: Chunk, output: str, lines: Sequence[bytes], reason: str) -> str:
        """Write ``lines`` as NDJSON beside a JSON reason file; returns the data file's path.
        Never raises: a failure to write is logged with the reason and the record count."""
        self._sequence += 1
        stem = _UNSAFE.sub("_", f"{output}-{chunk.id}-{int(time.time() * 1000)}-{self._sequence}")
        data_path = os.path.join(self.path, stem + ".ndjson")
        meta = {
            "chunk": chunk.id,
            "tag": chunk.tag,
            "output": output,
            "reason": reason,
            "records": len(lines),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": os.path.basename(data_path),
        }
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(data_path, "wb") as handle:
                handle.write(b"".join(line + b"\n" for line in lines))
            with open(os.path.join(self.path, stem + ".reason.json"), "wb") as handle:
                handle.write(msgspec.json.format(msgspec.json.encode(meta)) + b"\n")
        except OSError as exc:
            log.error(
                "cannot write dead letters (%d records of chunk %s for %s, reason: %s): %s",
                len(lines),
                chunk.id,
                output,
                reason,
                exc,
            )
        return data_path
