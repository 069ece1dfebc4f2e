"""The agent's own log lines, on stderr, plain or JSON, times in UTC.

Warnings that can repeat in a storm are rate-limited: a call site marks them with
``extra=REPEATS`` (``{"repeats": True}``; outputs, which do not import ``agent``, write the dict).
Such a warning whose logger, message template and first argument (the component or host it is
about) already went out in the last ``RATE_WINDOW`` seconds is counted instead of written, and the
next one that goes out says how many were suppressed (a host ejected every second, a chunk retried
every few hundred milliseconds). Unmarked lines (each dropped or dead-lettered chunk, which the
log accounts for one by one) and errors always go out.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import msgspec

_encode = msgspec.json.Encoder().encode

RATE_WINDOW = 10.0
REPEATS = {"repeats": True}
"""``logger.warning(..., extra=REPEATS)``: this warning may be rate-limited."""
"""Seconds during which a repeated warning (same logger, same template) is counted, not written."""


def _utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class PlainFormatter(logging.Formatter):
    """``2026-12-06T13:40:00.123Z INFO agent: message``: UTC, and it says so."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


class RepeatFilter(logging.Filter):
    """Rate-limits repeated warnings; see the module docstring."""

    def __init__(
        self, window: float = RATE_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._last: dict[tuple[str, object, str | None], tuple[float, int]] = {}
        """(logger, template, first text argument) -> (when the last one went out, how many
        were suppressed since)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not getattr(record, "repeats", False):
            return True
        # The first argument, when it is text, is the component or host the line is about: one
        # failing output does not silence another's warnings.
        args = record.args
        first = args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else None
        key = (record.name, record.msg, first)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if len(self._last) > 10_000:  # many distinct templates: keep the table bounded
            self._last.clear()
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} similar lines suppressed in the last "
            record.msg += f"{now - last[0]:.0f}s)"
        self._last[key] = (now, 0)
        return True


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
