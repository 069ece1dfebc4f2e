"""The dead-letter directory, ``data_dir/dead-letter/``: whole chunks an output gave up on and
single records a destination refused one by one (an Elasticsearch bulk item with a mapping
conflict), each as NDJSON beside a JSON file with the reason, for a person to look at and for
``python -m agent dead-letters replay`` to send again.

Records leave the buffer only when they are safely here: a write that fails (disk full, the
directory replaced by a file, permissions) or that would pass ``dead_letter_max_bytes`` raises
``DeadLetterError`` and the caller keeps the chunk unacknowledged. Files are created owner-only
(0600, the directory 0700): audit logs are sensitive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from urllib.parse import quote

from common.redact import redact_text
from outputs.base import Chunk, DeadLetterError

log = logging.getLogger("agent.deadletter")

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
"""``[agent] dead_letter_max_bytes`` by default: 1 GiB."""
DIRECTORY = "dead-letter"

FILE_MODE = 0o600
DIR_MODE = 0o700


def _write_file(path: str, content: bytes) -> None:
    """Write ``content`` to ``path`` owner-only and fsync it (through a temporary name, so a
    crash never leaves a half-written file under the final name)."""
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an older file of that name may have been created 0644
        view = memoryview(content)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, path)


def ensure_private_dir(directory: str) -> None:
    """Create ``directory`` (and parents) 0700; tighten it if it exists with wider modes."""
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    if os.stat(directory).st_mode & 0o077:
        os.chmod(directory, DIR_MODE)


def write_dead_letter(
    directory: str,
    chunk_id: str,
    tag: str,
    output: str,
    reason: str,
    data: bytes,
    records: int,
    part: str = "",
    times: Sequence[float] | None = None,
) -> str:
    """Write ``data`` (NDJSON) and a JSON reason file beside it; returns the data file's path.
    Both are fsynced, owner-only, the reason file last (a reason file means its data is
    complete). ``part`` distinguishes several dead letters of one chunk and output (the records
    an Elasticsearch bulk refused: ``part="records-<hash>"``). ``times`` (the records' event
    times) lets a replay name indices and keys as the first send would have. Raises OSError."""
    ensure_private_dir(directory)
    name = f"{chunk_id}.{quote(output, safe='')}"
    if part:
        name += "." + quote(part, safe="")
    base = os.path.join(directory, name)
    reason_doc: dict[str, object] = {
        "chunk": chunk_id,
        "tag": tag,
        "output": output,
        "reason": redact_text(reason),
        "records": records,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if times is not None:
        reason_doc["times"] = list(times)
    data_path = base + ".ndjson"
    _write_file(data_path, data)
    _write_file(base + ".json", json.dumps(reason_doc).encode() + b"\n")
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return data_path


def dead_letter_path(data_dir: str) -> str:
    """The dead-letter directory of ``data_dir``: the one place its name is decided (the
    buffer's ``dead_letters`` and ``dead-letters list|replay`` both ask here)."""
    return os.path.join(data_dir, DIRECTORY)


def directory_bytes(directory: str) -> int:
    """Bytes of the files in ``directory`` (0 if it does not exist)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return total


class DeadLetterDir:
    """The agent's dead-letter directory, bounded by ``max_bytes``. The running agent's is the
    buffer's (``Buffer.dead_letters``): delivery and the outputs write through it."""

    RESCAN_SECONDS = 10.0

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._used: int | None = None
        self._scanned = -1e9

    def used_bytes(self, rescan: bool = False) -> int:
        """Bytes in the directory; rescanned at most every ``RESCAN_SECONDS`` (files removed by
        a replay or by hand free room) or when ``rescan``."""
        now = time.monotonic()
        if rescan or self._used is None or now - self._scanned >= self.RESCAN_SECONDS:
            self._used = directory_bytes(self.path)
            self._scanned = now
        return self._used

    def _reserve(self, size: int, what: str) -> None:
        if self.used_bytes() + size <= self.max_bytes:
            return
        if self.used_bytes(rescan=True) + size <= self.max_bytes:
            return
        raise DeadLetterError(
            f"dead-letter directory {self.path} is full ({self.used_bytes()} bytes used, "
            f"{size} more needed for {what}, dead_letter_max_bytes {self.max_bytes}); "
            "records kept in the buffer",
            "dead_letter_full",
        )

    def _write(
        self,
        chunk: Chunk,
        output: str,
        reason: str,
        data: bytes,
        records: int,
        part: str,
        times: Sequence[float],
    ) -> str:
        what = f"{records} records of chunk {chunk.id}"
        self._reserve(len(data) + 1024, what)
        try:
            path = write_dead_letter(
                self.path, chunk.id, chunk.tag, output, reason, data, records, part, times
            )
        except OSError as exc:
            raise DeadLetterError(
                f"cannot write dead letters ({what}) to {self.path}: {exc}; "
                "records kept in the buffer",
                "dead_letter_unwritable",
            ) from None
        if self._used is not None:
            self._used += len(data) + 512
        return path

    def write_chunk(self, chunk: Chunk, output: str, reason: str) -> str:
        """Keep the whole chunk; returns the data file's path. Raises DeadLetterError."""
        return self._write(
            chunk, output, reason, chunk.data(), chunk.records, "", list(chunk.times())
        )

    def write(self, chunk: Chunk, output: str, lines: Sequence[bytes], reason: str) -> str:
        """Keep ``lines`` of ``chunk``; returns the data file's path. The file's name comes from
        the records themselves, so writing the same records again (a resend after a restart)
        replaces the file instead of adding a copy. Raises DeadLetterError."""
        data = b"".join(line + b"\n" for line in lines)
        part = "records-" + hashlib.sha256(data).hexdigest()[:16]
        positions = {line: index for index, line in enumerate(chunk.lines())}
        all_times = chunk.times()
        times = [all_times[positions[line]] if line in positions else 0.0 for line in lines]
        return self._write(chunk, output, reason, data, len(lines), part, times)
