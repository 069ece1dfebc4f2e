"""The set of followed files: what the globs find, what is open, what was rotated or lost.

``restore`` is the first scan at start (stored positions, files rotated while the agent was
down), ``scan`` every ``refresh_interval`` after (new files, rotations, removals), and
``fill_slots`` keeps at most ``max_open_files`` open. The input (``input.py``) reads the files.
"""

from __future__ import annotations

import logging
import os
import time

from agent.inputs.tail.config import TailInputConfig
from agent.inputs.tail.discovery import Discovery, find_compressed, find_moved, path_info
from agent.inputs.tail.positions import FileKey, Position
from agent.inputs.tail.reader import TailedFile
from common.metrics import Metrics
from parsers.container import ContainerLogParser


class FileSet:
    def __init__(
        self, config: TailInputConfig, name: str, logger: logging.Logger, metrics: Metrics
    ) -> None:
        self.config = config
        self.name = name
        self._log = logger
        self._metrics = metrics
        self._discovery = Discovery(config.paths, config.exclude)
        self._max_line = int(config.max_line_bytes)
        self.files: dict[FileKey, TailedFile] = {}
        self._ignored: dict[FileKey, int] = {}
        """Files skipped by ignore_older -> their size then (read from there if they grow)."""
        self.open_count = 0
        self.changed = False
        """Set when files came or went: the positions need storing."""
        self._warned: set[str] = set()

    def forget(self, tailed: TailedFile) -> None:
        """Let go of a file read to its end."""
        tailed.close()
        self.open_count -= 1
        tailed.closed = True
        del self.files[tailed.key]
        self.changed = True
        self.fill_slots()

    def close_all(self) -> None:
        for tailed in self.files.values():
            tailed.close()
        self.open_count = 0

    def new_file(self, key: FileKey, path: str, offset: int) -> TailedFile:
        target = os.path.realpath(path)
        parser = ContainerLogParser(self.config.format, self._max_line)
        tailed = TailedFile(
            key=key,
            path=path,
            info=path_info(path, target if target != path else None),
            parser=parser,
            offset=offset,
            safe=offset,
            idle_since=time.monotonic(),
            target=target,
        )
        self.files[key] = tailed
        return tailed

    def restore(self, stored: dict[FileKey, Position], at_end: bool) -> None:
        """The first scan: files found resume at their stored positions (or start at their
        ends on the very first start without read_from_head); stored files that the globs no
        longer reach are looked for beside their old path (rotated while we were down) and
        read first; those gone are counted as lost."""
        found = self._discovery.scan()
        groups = _group(found)
        wall = time.time()
        for key, paths in groups.items():
            st = found[paths[0]]
            position = stored.pop(key, None)
            if position is None and self._too_old(key, st.st_mtime, st.st_size, wall):
                continue
            tailed = self.new_file(key, paths[0], 0)
            tailed.paths = paths
            tailed.size = st.st_size
            if position is None:
                if at_end:
                    tailed.offset = tailed.safe = st.st_size
                continue
            if self.open_count >= self.config.max_open_files:
                # opened when a slot is free; its head is checked then (_resume)
                tailed.offset = tailed.safe = min(position.offset, st.st_size)
                tailed.restored = position
                continue
            if not self._open_file(tailed):
                stored[key] = position
                del self.files[key]
                continue
            self._resume(tailed, position)
        now = time.monotonic()
        for key, position in stored.items():
            moved = find_moved(position.target or position.path, key)
            if moved is None:
                self.lost(position, "removed while the agent was down")
                continue
            tailed = self.new_file(key, moved, position.offset)
            tailed.info = path_info(position.path, os.path.realpath(moved))
            tailed.path = position.path
            tailed.paths = [position.path]
            if not self._open_moved(tailed, moved) or not tailed.same_head(position):
                tailed.close()
                del self.files[key]
                self.lost(position, "removed while the agent was down")
                continue
            tailed.rotated_at = now
            self._log.info(
                "%s: %s was rotated while the agent was down: reading its rest (%s) first",
                self.name,
                position.path,
                moved,
            )
            for other in self.files.values():
                if other is not tailed and position.path in other.paths:
                    other.after = tailed
        self.fill_slots()

    def _resume(self, tailed: TailedFile, position: Position) -> None:
        """Continue an opened file at its stored position, unless it is not the file that was
        stored (a recycled inode number: then it is new) or it shrank (read from its start)."""
        tailed.restored = None
        if not tailed.same_head(position):
            self.lost(position, "its inode now holds another file")
            tailed.offset = tailed.safe = 0
        elif tailed.size >= position.offset:
            tailed.offset = tailed.safe = position.offset
        else:
            tailed.offset = tailed.safe = 0

    def _too_old(self, key: FileKey, mtime: float, size: int, wall: float) -> bool:
        older = self.config.ignore_older
        if older is None or mtime >= wall - older:
            return False
        self._ignored[key] = size
        return True

    def _open_file(self, tailed: TailedFile) -> bool:
        for path in (tailed.path, *tailed.paths):
            tailed.path, original = path, tailed.path
            if tailed.open():
                self.open_count += 1
                return True
            tailed.path = original
        return False

    def _open_moved(self, tailed: TailedFile, moved: str) -> bool:
        """Open a rotated file under its new name, keeping the old one for path_key."""
        original = tailed.path
        tailed.path = moved
        opened = tailed.open()
        tailed.path = original
        if opened:
            self.open_count += 1
        return opened

    def lost(self, position: Position, why: str) -> None:
        """Count the bytes of a file that went before it was read to its end: exactly when its
        gzipped copy is there (kubelet and logrotate compress rotated files), else what we saw
        of it (a lower bound)."""
        lost = max(0, position.size - position.offset)
        where = "at least"
        compressed = find_compressed(
            position.target or position.path, position.head, position.head_len
        )
        if compressed is not None:
            lost = max(0, compressed[1] - position.offset)
            where = f"compressed into {compressed[0]}:"
        if lost:
            self._metrics.inc("input_lost_bytes_total", lost)
        self._log.warning(
            "%s: %s %s before it was read to its end: %s %d bytes lost",
            self.name,
            position.path,
            why,
            where,
            lost,
        )

    def scan(self) -> list[TailedFile]:
        """Look again: new files, files the globs no longer reach (rotated, removed). Returns
        the open files that no longer start as they did (rewritten from their start under us:
        copytruncate), for the input to read again from their start."""
        rewritten: list[TailedFile] = []
        found = self._discovery.scan()
        for path, why in self._discovery.errors.items():
            if path not in self._warned and len(self._warned) < 1000:
                self._warned.add(path)
                self._log.warning("%s: cannot follow %s: %s", self.name, path, why)
        self._discovery.errors.clear()
        groups = _group(found)
        now = time.monotonic()
        wall = time.time()
        for key, tailed in list(self.files.items()):
            if key in groups or tailed.rotated_at is not None:
                continue
            tailed.rotated_at = now
            self._metrics.inc("input_rotations_total")
            if tailed.fd is None:  # waiting for a slot when it went: find it, or count it
                moved = find_moved(tailed.target or tailed.path, key)
                if moved is None or not self._open_moved(tailed, moved):
                    self.lost(tailed.position(), "was removed")
                    tailed.closed = True
                    del self.files[key]
                    self.changed = True
        for key, paths in groups.items():
            st = found[paths[0]]
            known = self.files.get(key)
            if known is not None:
                tailed = known
            else:
                offset = 0
                if key in self._ignored:
                    if st.st_mtime < wall - (self.config.ignore_older or 0):
                        continue
                    offset = min(self._ignored.pop(key), st.st_size)
                elif self._too_old(key, st.st_mtime, st.st_size, wall):
                    continue
                tailed = self.new_file(key, paths[0], offset)
                # A rotated file that held one of these paths is read to its end first.
                for other in self.files.values():
                    if (
                        other.rotated_at is not None
                        and not other.closed
                        and any(path in other.paths for path in paths)
                    ):
                        tailed.after = other
                self.changed = True
            tailed.paths = paths
            if tailed.fd is None:
                tailed.size = st.st_size
            if tailed.rotated_at is not None:
                tailed.rotated_at = None  # a glob reaches it again
        for tailed in list(self.files.values()):
            if tailed.fd is None or tailed.closed or tailed.size == tailed.scanned_size:
                continue
            tailed.scanned_size = tailed.size
            try:
                if tailed.head_changed():
                    rewritten.append(tailed)
            except OSError as exc:
                self.warn_once(tailed.path, f"cannot read: {exc}")
        if self._ignored:
            for key in [key for key in self._ignored if key not in groups]:
                del self._ignored[key]
        self.fill_slots()
        return rewritten

    def fill_slots(self) -> None:
        """Open waiting files while fewer than max_open_files are open; when files wait and
        every slot is taken, close idle files (caught up, nothing held) to take turns."""
        cap = self.config.max_open_files
        waiting = [f for f in self.files.values() if f.fd is None and not f.closed]
        if not waiting:
            self._metrics.set("input_files_open", self.open_count)
            return
        waiting.sort(key=lambda f: f.size <= f.offset)  # files with lines to read first
        if self.open_count + len(waiting) > cap:
            now = time.monotonic()
            idle = [
                f
                for f in self.files.values()
                if f.fd is not None
                and f.rotated_at is None
                and f.offset == f.safe
                and f.offset >= f.size
                and now - f.idle_since >= self.config.refresh_interval
            ]
            idle.sort(key=lambda f: f.idle_since)
            for tailed in idle[: max(0, self.open_count + len(waiting) - cap)]:
                tailed.close()
                self.open_count -= 1
        for tailed in waiting:
            if self.open_count >= cap:
                break
            if self._open_file(tailed):
                tailed.idle_since = time.monotonic()
                if tailed.restored is not None:
                    self._resume(tailed, tailed.restored)
        self._metrics.set("input_files_open", self.open_count)

    def warn_once(self, path: str, why: str) -> None:
        if path not in self._warned and len(self._warned) < 1000:
            self._warned.add(path)
            self._log.warning("%s: %s: %s", self.name, path, why)


def _group(found: dict[str, os.stat_result]) -> dict[FileKey, list[str]]:
    """Paths by the file they lead to: one file reached through two globs is read once."""
    groups: dict[FileKey, list[str]] = {}
    for path, st in found.items():
        groups.setdefault((st.st_dev, st.st_ino), []).append(path)
    return groups
