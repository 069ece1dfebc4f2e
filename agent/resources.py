"""Process resources the agent sets up at start: the open-file limit.

Every connection an input or the HTTP server holds is a file descriptor. Distributions start
services with a soft ``RLIMIT_NOFILE`` of 1024 and a much higher hard limit; with the default
``max_connections = 1024`` the soft limit would run out first and connections would fail to be
accepted. The agent raises its soft limit to the hard limit at start (any process may), and warns
when even that does not cover what the config allows.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("agent")

SPARE_FILES = 128
"""Descriptors kept for everything that is not an input connection: the HTTP server's
connections (64 at most), chunk and dead-letter files, outputs' sockets, the log."""
_NR_OPEN = "/proc/sys/fs/nr_open"


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:  # Linux refuses an infinite soft limit; its ceiling is fs.nr_open
            with open(_NR_OPEN) as file:
                target = int(file.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, error)
            return soft, soft
    now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.debug("open-file limit (RLIMIT_NOFILE): soft %d -> %d, hard %d", soft, now, hard)
    return soft, now


def check_open_file_budget(inputs: Iterable[Any]) -> None:
    """Warn when the stream inputs' ``max_connections`` together exceed the open-file limit:
    connections past it would fail to be accepted (counted as ``accept_error``)."""
    wanted = sum(
        int(getattr(item, "max_connections", 0))
        for item in inputs
        if getattr(item, "mode", "") in ("tcp", "unix_stream", "relp")
    )
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if wanted and soft != resource.RLIM_INFINITY and wanted + SPARE_FILES > soft:
        log.warning(
            "the inputs allow %d connections but the open-file limit is %d (%d are kept for "
            "files and HTTP): raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections",
            wanted,
            soft,
            SPARE_FILES,
        )
