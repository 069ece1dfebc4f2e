"""Read positions, by device and inode, stored under data_dir.

One JSON file per tail input (``<data_dir>/tail/<input name>.json``), owner-only, replaced
atomically (written beside, then renamed). An entry's offset covers only lines that are in the
buffer, so after a crash a file is read again from there: at most the last batch twice.
"""

from __future__ import annotations

import contextlib
import logging
import os

import msgspec

FileKey = tuple[int, int]
"""(st_dev, st_ino)"""


class Position(msgspec.Struct, kw_only=True):
    dev: int
    ino: int
    offset: int
    """Bytes of the file whose lines are in the buffer."""
    path: str
    """Where the file was last seen (to find it again after a rotation while we were down)."""
    target: str = ""
    """The file a symlinked ``path`` led to then (/var/log/pods/.../0.log)."""
    size: int = 0
    """The file's size when last seen (bytes lost if it is gone: ``size - offset``)."""
    head: int = 0
    """CRC-32 of the file's first ``head_len`` bytes: tells the file from a later one that got
    the same inode number."""
    head_len: int = 0


class _PositionsFile(msgspec.Struct):
    version: int
    files: list[Position]


class PositionStore:
    def __init__(self, data_dir: str, name: str, logger: logging.Logger) -> None:
        directory = os.path.join(data_dir or ".", "tail")
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "tail"
        self.path = os.path.join(directory, f"{safe_name}.json")
        self._log = logger
        self._encode = msgspec.json.Encoder().encode
        self._decoder = msgspec.json.Decoder(_PositionsFile)
        self.existed = False
        """True if a positions file was there at start: the input ran here before."""

    def load(self) -> dict[FileKey, Position]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._log.error("cannot read positions %s (%s): files are read whole", self.path, exc)
            self.existed = True
            return {}
        self.existed = True
        try:
            stored = self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            # Reading whole again duplicates lines; starting at the ends would lose them.
            self._log.error("positions %s unreadable (%s): files are read whole", self.path, exc)
            return {}
        return {(p.dev, p.ino): p for p in stored.files}

    def save(self, positions: list[Position]) -> None:
        """Replace the positions file atomically; owner-only like everything under data_dir."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = f"{self.path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = self._encode(_PositionsFile(1, positions))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
