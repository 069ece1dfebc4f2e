"""Finding the files to follow: globs, excludes, and what a container log's path tells.

Kubelet names a container's log twice:

* ``/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart count>.log``, the file the
  runtime writes (rotated by kubelet to ``<n>.log.<timestamp>``, gzipped later), and
* ``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log``, a symlink to it.

Both are read here into a ``kubernetes`` object with fluent-bit's field names. Docker's json-file
driver writes ``/var/lib/docker/containers/<id>/<id>-json.log``: that gives ``container_id``.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass

# Compressed files (kubelet gzips rotated logs, logrotate's compress) are never followed.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")

_CONTAINERS = re.compile(
    r"(?P<pod_name>[^_/]+)_(?P<namespace_name>[^_/]+)_(?P<container_name>[^/]+)"
    r"-(?P<container_id>[0-9a-f]{64})\.log\Z"
)
_PODS = re.compile(
    r"(?:\A|/)(?P<namespace_name>[^_/]+)_(?P<pod_name>[^_/]+)_(?P<pod_id>[^_/]+)"
    r"/(?P<container_name>[^/]+)/(?P<restart>\d+)\.log(?:\.[^/]*)?\Z"
)
_DOCKER = re.compile(r"/(?P<container_id>[0-9a-f]{64})/(?P=container_id)-json\.log(?:\.\d+)?\Z")


@dataclass(frozen=True)
class PathInfo:
    """What a file's path says about its container."""

    kubernetes: dict[str, str] | None
    """``namespace_name``, ``pod_name``, ``pod_id``, ``container_name``, ``container_id`` as
    far as the path tells; None for a file that is no container log."""
    container_id: str | None
    """The container's id where the path tells it (/var/log/containers names, Docker's
    json-file paths); records carry it as top-level ``container_id`` too, as syslog records
    from Docker's syslog driver do, so the audit rules keyed on it apply."""


def path_info(path: str, target: str | None = None) -> PathInfo:
    """Container metadata from ``path`` (as found by a glob) and ``target`` (the file it
    resolves to, for the /var/log/containers symlinks)."""
    kubernetes: dict[str, str] = {}
    for candidate in (target, path):
        if candidate is None:
            continue
        pods = _PODS.search(candidate)
        if pods is not None:
            for key in ("namespace_name", "pod_name", "pod_id", "container_name"):
                kubernetes.setdefault(key, pods.group(key))
    containers = _CONTAINERS.fullmatch(os.path.basename(path))
    if containers is not None:
        for key in ("namespace_name", "pod_name", "container_name", "container_id"):
            kubernetes[key] = containers.group(key)
    if kubernetes:
        order = ("namespace_name", "pod_name", "pod_id", "container_name", "container_id")
        ordered = {key: kubernetes[key] for key in order if key in kubernetes}
        return PathInfo(ordered, ordered.get("container_id"))
    docker = _DOCKER.search(target or path)
    return PathInfo(None, docker.group("container_id") if docker is not None else None)


class Discovery:
    """The files the globs match now, following symlinks, minus the excludes."""

    def __init__(self, paths: list[str], exclude: list[str]) -> None:
        self.paths = list(paths)
        self.exclude = list(exclude)
        self.errors: dict[str, str] = {}
        """Paths that could not be examined (permissions), with why; for one log line each."""

    def excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.exclude)

    def scan(self) -> dict[str, os.stat_result]:
        """Path (as the glob found it) -> ``os.stat`` of the file it leads to, for every
        regular file matched; the same file can appear under several paths."""
        found: dict[str, os.stat_result] = {}
        for pattern in self.paths:
            for path in glob.iglob(pattern, recursive=True):
                if path in found or path.endswith(_COMPRESSED):
                    continue
                if self.exclude and self.excluded(path):
                    continue
                try:
                    st = os.stat(path)
                except OSError as exc:  # a dangling symlink (its pod is gone) or no permission
                    if not isinstance(exc, FileNotFoundError):
                        self.errors[path] = exc.strerror or str(exc)
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[path] = st
        return found


def find_moved(path: str, key: tuple[int, int]) -> str | None:
    """A file that was at ``path`` and is now elsewhere in the same directory (kubelet's
    ``0.log`` -> ``0.log.<timestamp>``, logrotate's ``x.log`` -> ``x.log.1``): its new path,
    found by device and inode; None if it is gone (deleted, or compressed into a new file)."""
    directory = os.path.dirname(os.path.realpath(path))
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.inode() != key[1] or entry.name.endswith(_COMPRESSED):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == key and stat.S_ISREG(st.st_mode):
            return entry.path
    return None


def find_compressed(target: str, head: int, head_len: int) -> tuple[str, int] | None:
    """The gzipped copy of a rotated file that used to be at ``target`` (kubelet's
    ``0.log.<timestamp>.gz``, logrotate's ``x.log.1.gz``), told by the CRC of its first
    ``head_len`` bytes: (its path, the uncompressed size). None if there is none."""
    if head_len == 0:
        return None
    directory, name = os.path.split(target)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(name) and n.endswith(".gz")]
    except OSError:
        return None
    for candidate in sorted(names):
        path = os.path.join(directory, candidate)
        try:
            with gzip.open(path, "rb") as handle:
                data = handle.read(head_len)
            if len(data) != head_len or zlib.crc32(data) != head:
                continue
            with open(path, "rb") as raw:
                raw.seek(-4, os.SEEK_END)
                (size,) = struct.unpack("<I", raw.read(4))  # ISIZE: the size modulo 2**32
        except (OSError, EOFError, gzip.BadGzipFile, struct.error):
            continue
        return path, size
    return None
