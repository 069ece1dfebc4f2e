"""Owner-only files and directories under ``data_dir``: audit records are sensitive, so whatever
the buffer writes there is 0600 (files) and 0700 (directories) whatever the umask, and
directories found with looser modes are tightened at start."""

from __future__ import annotations

import logging
import os
import stat

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

fdatasync = getattr(os, "fdatasync", os.fsync)
"""fdatasync where the platform has it (Linux), else fsync."""


def private_dir(path: str, logger: logging.Logger) -> None:
    """Create ``path`` (its parents as the umask says) or tighten it to 0700, with a log line
    when an existing directory was looser. A directory this process may not change (not its
    owner) is logged and left as it is."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_DIR)
        created = True
    except FileExistsError:
        created = False
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode == PRIVATE_DIR:
        return
    try:
        os.chmod(path, PRIVATE_DIR)
    except OSError as exc:
        logger.warning("cannot make %s owner-only (mode %04o): %s", path, mode, exc)
        return
    if not created and mode & 0o077:
        logger.warning("tightened the mode of %s from %04o to %04o (owner only)",
                       path, mode, PRIVATE_DIR)


def open_private(path: str, flags: int) -> int:
    """``os.open`` of a file that is 0600 whatever the umask (``flags`` include O_CREAT)."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def tighten_files(directory: str, names: list[str]) -> int:
    """chmod 0600 every regular file of ``names`` in ``directory`` that is looser; returns how
    many were changed (files this process may not change are left)."""
    changed = 0
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, PRIVATE_FILE)
                changed += 1
        except OSError:
            continue
    return changed


def writev_all(fd: int, parts: list[bytes]) -> int:
    """``os.writev`` until everything is written; returns the bytes written."""
    total = sum(len(part) for part in parts)
    written = os.writev(fd, parts)
    if written < total:  # a short write (full disk, signal): finish the rest plainly
        write_all(fd, b"".join(parts)[written:])
    return total


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (a regular file may take less on a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # pragma: no cover - defensive
            raise OSError("write returned 0")
        view = view[written:]
