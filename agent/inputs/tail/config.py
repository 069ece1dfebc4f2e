"""The tail input's keys."""

from __future__ import annotations

from typing import Literal

import msgspec

from agent.fields import compile_template
from common.units import Duration, Size


class TailInputConfig(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="tail"
):
    """Follow log files: container logs under /var/log/containers or /var/log/pods (CRI,
    Docker json-file) and plain files such as /var/log/audit/audit.log."""

    name: str = ""
    """Labels metrics and log lines, and names the input's positions file; defaults to
    "tail.<position>"."""
    paths: list[str] = msgspec.field(default_factory=lambda: ["/var/log/containers/*.log"])
    """Globs of the files to follow (``*``, ``?``, ``[...]``, ``**`` for any depth). Symlinks
    are followed; a file reached through two globs (or two symlinks) is read once. Compressed
    files (``.gz``, ``.xz``, ...) are never followed."""
    exclude: list[str] = msgspec.field(default_factory=list)
    """Globs of paths not to follow, matched against the path as found by ``paths``."""
    format: Literal["auto", "cri", "docker", "raw"] = "auto"
    """How lines are parsed: ``cri`` (containerd, CRI-O), ``docker`` (json-file), ``raw`` (one
    record per line: ``message``, ``time``), or ``auto``: decided per file by the first line
    that is CRI or Docker (lines before it are kept as ``parse_error`` records)."""
    tag: str = "kube.${namespace_name}.${pod_name}.${container_name}"
    """Tag of the records; ``${field}`` takes a kubernetes field from the path (flat or as
    ``${kubernetes.pod_name}``), ``${container_id}``, ``${stream}`` (``stdout``/``stderr``: the
    file's records are then tagged per stream) or ``${path}``. A field the path does not give
    renders empty."""
    read_from_head: bool = False
    """Read the files present at the very first start (no positions stored yet) from their
    beginning; otherwise from their end. Files that appear later, and files after a restart,
    are read from where they stand: new ones whole, known ones from their stored position."""
    refresh_interval: Duration = Duration(1.0)
    """How often the globs are scanned again for new, rotated and removed files. A new file
    is read as soon as a scan finds it."""
    poll_interval: Duration = Duration(0.25)
    """How often open files are checked for new lines when nothing is being read."""
    rotate_wait: Duration = Duration(5.0)
    """How long a rotated or deleted file is still watched after its last line was read (the
    runtime may write a few more lines before it reopens)."""
    max_line_bytes: Size = Size(1024 * 1024)
    """A longer line (after joining partial pieces) is cut at this size and flagged
    ``truncated`` and counted (``input_truncated_total``); the rest of it is skipped
    (``input_discarded_bytes_total``)."""
    read_bytes: Size = Size(256 * 1024)
    """At most this much is read from one file in one go, so busy files take turns and a
    batch stays small; a read that finds no line end reads up to ``max_line_bytes`` + 4KiB,
    so that a whole line fits."""
    path_key: str | None = None
    """Record field that receives the file's path as ``paths`` found it (the symlink under
    /var/log/containers)."""
    ignore_older: Duration | None = None
    """Files last modified longer ago than this (``"24h"``) are not followed when they are
    found; one that is written again is followed from there."""
    max_open_files: int = 1024
    """At most this many files are held open; further files wait and take turns with idle ones
    (caught up, nothing half-read)."""

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("paths: at least one glob is required")
        for pattern in (*self.paths, *self.exclude):
            if not pattern or "\0" in pattern:
                raise ValueError(f"paths/exclude: invalid glob {pattern!r}")
        compile_template(self.tag)
        if self.max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1 byte")
        if self.read_bytes < 4096:
            raise ValueError("read_bytes must be at least 4KiB")
        if self.max_open_files < 1:
            raise ValueError("max_open_files must be at least 1")
        for key in ("refresh_interval", "poll_interval"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be more than 0")
        if self.rotate_wait < 0:
            raise ValueError("rotate_wait must not be negative")
        if self.path_key is not None and not self.path_key:
            raise ValueError("path_key must not be empty")
