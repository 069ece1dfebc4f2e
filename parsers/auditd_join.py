"""Joining auditd's records into events: the records of one event (SYSCALL, EXECVE and its
continuations, CWD, PATH, PROCTITLE, EOE, PAM's USER_*) share a serial per source; they are held
until the event's end record, or a bounded time or count, and come out as one record each, in
order even when events of several sources interleave.

Pure: no I/O, never imports ``agent``; nothing here raises for any input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from parsers.auditd import ENDS, AuditLine, standalone
from parsers.auditd_event import event_record


class _SourceClock:
    """The latest event time (seconds) seen on one source (stream and node). Every waiting event
    of the source holds the same object, so a line updates it without a lookup by source."""

    __slots__ = ("newest",)

    def __init__(self) -> None:
        self.newest = 0


class _Event:
    __slots__ = ("clock", "context", "done", "epoch", "lines", "since", "size")

    def __init__(self, line: AuditLine, since: float, context: Any, clock: _SourceClock) -> None:
        self.clock = clock
        self.lines = [line]
        self.size = len(line.body)
        self.since = since
        self.epoch = line.sec
        self.context = context
        self.done = line.type in ENDS or standalone(line.type)


class AuditJoiner:
    """Joins audit lines into events. ``add`` a line (with the agent's clock and an opaque
    ``context`` kept from an event's first line, e.g. the source record's tag and host);
    ``flush(now)`` releases events that waited ``timeout``; ``close()`` releases everything.
    Each call returns ``(record, context)`` pairs, oldest event first.

    Bounds: at most ``max_events`` events wait (past that the oldest is released as it is) and
    an event keeps at most ``max_records`` records and ``max_bytes`` of text (the rest is
    dropped). ``counts`` says how often each happened, and how many events came out."""

    def __init__(
        self,
        timeout: float = 2.0,
        max_events: int = 4096,
        max_records: int = 1024,
        max_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self.timeout = timeout
        self.max_events = max_events
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._pending: OrderedDict[tuple[Hashable, str | None, int], _Event] = OrderedDict()
        self._clocks: dict[tuple[Hashable, str | None], _SourceClock] = {}
        """The latest event time seen per source (stream and node): an event is over once its
        own source has moved on by ``timeout``. Per source, because sources' clocks differ (a
        node behind another must not have its events cut record by record)."""
        self._head: _Event | None = None
        """The oldest waiting event (the first of ``_pending``)."""
        self._records = 0
        """Records added since ``counts["records"]`` was last brought up to date."""
        self.counts: dict[str, int] = {
            "events": 0,
            "records": 0,
            "timeout": 0,
            "evicted": 0,
            "truncated_records": 0,
        }
        """events out; records joined; events released by ``timeout`` (no end record seen) or
        evicted by ``max_events``; records dropped past ``max_records``/``max_bytes``."""

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self, line: AuditLine, now: float, context: Any = None, stream: Hashable = None
    ) -> list[tuple[dict[str, Any], Any]]:
        """Add one parsed line; ``stream`` keeps events of different sources apart."""
        key = (stream, line.node, line.serial)
        self._records += 1
        pending = self._pending
        event = pending.get(key)
        if event is None:
            if line.type == "EOE":  # the end marker of an event already released: no data
                return self._release(now)
            source = (stream, line.node)
            clock = self._clocks.get(source)
            if clock is None:
                if len(self._clocks) >= 4 * self.max_events:
                    # Bounded memory; waiting events keep their clocks, new ones start afresh.
                    self._clocks.clear()
                clock = self._clocks[source] = _SourceClock()
            event = pending[key] = _Event(line, now, context, clock)
            if self._head is None:
                self._head = event
        else:
            size = event.size + len(line.body)
            if len(event.lines) >= self.max_records or size > self.max_bytes:
                self.counts["truncated_records"] += 1
            else:
                event.lines.append(line)
                event.size = size
                if line.type in ENDS:
                    event.done = True
        clock = event.clock
        if line.sec > clock.newest:
            clock.newest = line.sec
        head = self._head
        if (
            head is not None
            and not head.done
            and now - head.since < self.timeout
            and head.clock.newest - head.epoch <= self.timeout
            and len(pending) <= self.max_events
        ):
            return []  # the usual case between an event's first and last record
        return self._release(now)

    def _release(self, now: float) -> list[tuple[dict[str, Any], Any]]:
        out: list[tuple[dict[str, Any], Any]] = []
        pending = self._pending
        counts = self.counts
        while pending:
            key, event = next(iter(pending.items()))
            if not event.done:
                if len(pending) > self.max_events:
                    counts["evicted"] += 1
                elif (
                    now - event.since >= self.timeout
                    or event.clock.newest - event.epoch > self.timeout
                ):
                    counts["timeout"] += 1
                else:
                    break
            del pending[key]
            out.append((event_record(event.lines), event.context))
        self._head = next(iter(pending.values())) if pending else None
        counts["events"] += len(out)
        counts["records"] += self._records
        self._records = 0
        return out

    def flush(self, now: float) -> list[tuple[dict[str, Any], Any]]:
        """Events whose time has come (complete ones behind them too)."""
        return self._release(now)

    def close(self) -> list[tuple[dict[str, Any], Any]]:
        """Every waiting event, complete or not (incomplete ones count as ``timeout``)."""
        out: list[tuple[dict[str, Any], Any]] = []
        for event in self._pending.values():
            if not event.done:
                self.counts["timeout"] += 1
            out.append((event_record(event.lines), event.context))
        self._pending.clear()
        self._head = None
        self.counts["events"] += len(out)
        self.counts["records"] += self._records
        self._records = 0
        return out
