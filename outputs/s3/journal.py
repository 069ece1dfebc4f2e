"""The S3 output's journal: which chunks went into which object, kept beside the buffer.

Grouping several chunks into one object breaks the usual "a resend overwrites its own object"
rule: the agent acknowledges chunks one by one, so a crash can leave some chunks of an uploaded
object unacknowledged, and the replay after a restart may group them differently. The journal
makes the grouping stable. Before an upload it records the object's key and its chunk ids
("begin", fsynced); after S3 confirmed the object it records "done" (fsynced) before ``send``
returns. Then:

* a chunk of a *done* object is already in S3: it is left out of the write (nothing uploaded);
* a chunk of an object whose upload outcome is unknown (*pending*: a crash, a timeout) is
  resolved with HeadObject: if the object exists and its metadata carries this group's digest,
  the group is done; if not, the group is dropped and its chunks are grouped anew;
* a chunk the journal does not know is grouped normally.

So a record is never in two objects, whatever the replay order. A multipart upload id is
journaled too, so the upload can be aborted after a crash.

The file is JSON lines, appended and fsynced; it is compacted (rewritten to a temporary file
and renamed) at start and when it grows, keeping every pending group and the most recent
``keep_done`` done groups: a done group is only needed until its chunks are acknowledged, which
happens right after ``send`` returns, so a few thousand is far more than any crash leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

State = Literal["pending", "done"]


class Line(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    op: Literal["begin", "upload", "done", "drop", "retire", "index"]
    key: str = ""
    chunks: list[str] = []
    digest: str = ""
    upload_id: str = ""
    index: int = 0


class Entry(msgspec.Struct):
    key: str
    chunks: list[str]
    digest: str
    state: State = "pending"
    upload_id: str = ""


def group_digest(chunk_ids: Sequence[str]) -> str:
    """Identifies one grouping of chunks; stored in the object's metadata."""
    return hashlib.sha256("\n".join(chunk_ids).encode()).hexdigest()[:32]


class Journal:
    def __init__(self, path: Path, keep_done: int = 4096) -> None:
        self.path = path
        self.keep_done = keep_done
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.by_chunk: dict[str, str] = {}
        self.retired: OrderedDict[str, str] = OrderedDict()
        """Keys of uploads whose outcome was unknown and that were not found in S3 afterwards
        (key -> digest). Such an upload might still land late, so its key is never reused for
        another set of chunks: a late write then duplicates records instead of replacing an
        object that holds others."""
        self.next_index = 0
        self.torn_lines = 0
        self._lines_written = 0
        self._lock = asyncio.Lock()
        self._encoder = msgspec.json.Encoder()

    # ------------------------------------------------------------------------- loading

    def load(self) -> None:
        """Read the journal (a torn last line from a crash is skipped) and compact it."""
        # Owner-only, like everything under data_dir: object keys name hosts and tags.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.parent.stat().st_mode & 0o077:
            self.path.parent.chmod(0o700)
        decoder = msgspec.json.Decoder(Line)
        if self.path.exists():
            for raw in self.path.read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    self._apply(decoder.decode(raw))
                except msgspec.DecodeError:
                    self.torn_lines += 1
        self._trim()
        self._rewrite()
        self._lines_written = 0

    def _apply(self, line: Line) -> None:
        if line.op == "index":
            self.next_index = max(self.next_index, line.index)
        elif line.op == "retire":
            self.retired[line.key] = line.digest
            self.retired.move_to_end(line.key)
        elif line.op == "begin":
            self._forget(line.key)
            entry = Entry(key=line.key, chunks=list(line.chunks), digest=line.digest)
            self.entries[line.key] = entry
            for chunk_id in entry.chunks:
                self.by_chunk[chunk_id] = line.key
            self.next_index = max(self.next_index, line.index + 1)
        elif line.key in self.entries:
            entry = self.entries[line.key]
            if line.op == "upload":
                entry.upload_id = line.upload_id
            elif line.op == "done":
                entry.state = "done"
                entry.upload_id = ""
                self.entries.move_to_end(line.key)
            elif line.op == "drop":
                self._forget(line.key)
        if line.op == "drop" and line.digest:
            self.retired[line.key] = line.digest

    def _forget(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            for chunk_id in entry.chunks:
                if self.by_chunk.get(chunk_id) == key:
                    del self.by_chunk[chunk_id]

    def _trim(self) -> None:
        done = [key for key, entry in self.entries.items() if entry.state == "done"]
        for key in done[: max(0, len(done) - self.keep_done)]:
            self._forget(key)
        while len(self.retired) > self.keep_done:
            self.retired.popitem(last=False)

    def _snapshot(self) -> bytes:
        lines = [Line(op="index", index=self.next_index)]
        lines.extend(Line(op="retire", key=k, digest=d) for k, d in self.retired.items())
        for entry in self.entries.values():
            lines.append(Line(op="begin", key=entry.key, chunks=entry.chunks, digest=entry.digest))
            if entry.upload_id:
                lines.append(Line(op="upload", key=entry.key, upload_id=entry.upload_id))
            if entry.state == "done":
                lines.append(Line(op="done", key=entry.key))
        return b"".join(self._encoder.encode(line) + b"\n" for line in lines)

    def _rewrite(self) -> None:
        self._replace(self._snapshot())

    def _replace(self, data: bytes) -> None:
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(_private(temporary, os.O_TRUNC), "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError):
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    # ------------------------------------------------------------------------- queries

    def entry_of(self, chunk_id: str) -> Entry | None:
        key = self.by_chunk.get(chunk_id)
        return self.entries.get(key) if key is not None else None

    def take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    def pending(self) -> list[Entry]:
        return [entry for entry in self.entries.values() if entry.state == "pending"]

    # ------------------------------------------------------------------------- updates

    async def begin(self, key: str, chunks: list[str], digest: str, index: int) -> Entry:
        await self._write(Line(op="begin", key=key, chunks=chunks, digest=digest, index=index))
        entry = self.entries[key]
        return entry

    async def uploading(self, key: str, upload_id: str) -> None:
        await self._write(Line(op="upload", key=key, upload_id=upload_id))

    async def done(self, key: str) -> None:
        await self._write(Line(op="done", key=key))

    async def drop(self, key: str, retire: bool = False) -> None:
        """Forget a group whose object is not in S3; ``retire`` its key if the upload's outcome
        was unknown (it may still land)."""
        digest = self.entries[key].digest if retire and key in self.entries else ""
        await self._write(Line(op="drop", key=key, digest=digest))

    def free_key(self, key: str, digest: str) -> bool:
        """Whether ``key`` may hold the group with ``digest``."""
        return self.retired.get(key, digest) == digest

    async def _write(self, line: Line) -> None:
        """Apply ``line`` in memory, then append it durably (fsync in a thread, so a slow disk
        never stalls the event loop). A write error propagates: the caller must not go on."""
        self._apply(line)
        data = self._encoder.encode(line) + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._append, data)
            self._lines_written += 1
            if self._lines_written > 4 * self.keep_done:
                self._trim()
                await asyncio.to_thread(self._replace, self._snapshot())
                self._lines_written = 0

    def _append(self, data: bytes) -> None:
        with open(_private(self.path, os.O_APPEND), "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


def _private(path: Path, flags: int) -> int:
    """A file descriptor for ``path`` opened for writing, created 0600 (and made 0600 if an
    older version of the agent created it wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd
