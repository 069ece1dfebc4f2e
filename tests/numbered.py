"""Numbered syslog lines for the end-to-end tests: each carries ``seq=N end``, and what reached
an output file is counted by number, so a loss or a duplicate shows."""

from __future__ import annotations

import collections
import re
from pathlib import Path

SEQ = re.compile(rb"seq=(\d+) end")
"""A number counts only with its terminator: a line torn by a kill cannot fake a short number."""

PAYLOAD = b"payload-" + b"x" * 100


def numbered_line(n: int, app: str = "app", payload: bytes = PAYLOAD) -> bytes:
    """An RFC 5424 line, newline-terminated (TCP framing)."""
    return b"<14>1 2026-11-29T21:00:00.000001Z node %s 42 - - %s seq=%d end\n" % (
        app.encode(),
        payload,
        n,
    )


def numbered_lines(start: int, stop: int, app: str = "app", payload: bytes = PAYLOAD) -> bytes:
    return b"".join(numbered_line(n, app, payload) for n in range(start, stop))


def numbered_datagram(n: int) -> bytes:
    """An RFC 3164 line for UDP (one datagram, no newline)."""
    return b"<14>Nov 29 21:00:00 host udp: seq=%d end" % n


def numbers_in(path: Path) -> collections.Counter[int]:
    """How many times each number is in the file (empty if it does not exist yet)."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(m) for m in SEQ.findall(path.read_bytes()))
