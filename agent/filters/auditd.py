"""``auditd``: turn records holding Linux audit lines into one record per audit event.

Audit lines arrive one record each: from the syslog input when rsyslog or audisp-syslog
forwards them, or from a ``tail`` input (``format = "raw"``) on ``/var/log/audit/audit.log``.
The filter parses the line in ``key`` (``parsers.auditd``), joins the records of one event
(SYSCALL, EXECVE with its continuation records, CWD, PATH, PROCTITLE, ...) by serial, and sends
out one record per event under the tag of its first line:
``{time, host, ident = "auditd", message, auditd: {...}, container_id}``. Records whose
``key`` holds no audit line pass through at once.

It is stateful: an event's records are held until the event is complete or ``timeout`` has
passed (``flush``), at most ``max_events`` events at a time. With ``containers = true`` each
event's pid (else its parent) is looked up in ``<proc_root>/<pid>/cgroup`` for the container
that ran it (``agent.filters.cgroups``); the ``kubernetes`` filter can then name the pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.cgroups import ContainerResolver
from agent.filters.common import as_text, make_getter, parse_path
from common.units import Duration, Size
from parsers.auditd import parse_line
from parsers.auditd_join import AuditJoiner


class AuditdConfig(FilterConfig, tag_field="type", tag="auditd"):
    key: str = "message"
    """Field path of the audit line."""
    timeout: Duration = Duration(2.0)
    """An event whose end record (PROCTITLE, EOE) has not come is sent out this long after its
    first record, as it is (counted)."""
    max_events: int = 4096
    """Events waiting at most; past this the oldest goes out as it is (counted)."""
    max_records: int = 1024
    """Records joined into one event at most (a long argv takes one per ~7.5 KB); more are
    dropped (counted)."""
    max_bytes: Size = Size(2 * 1024 * 1024)
    """Text joined into one event at most; records past it are dropped (counted)."""
    ident: str = "auditd"
    """``ident`` of the event records."""
    containers: bool = True
    """Look up the container of each event's process in ``<proc_root>/<pid>/cgroup`` and set
    ``container_id`` (needs hostPID and the host's /proc)."""
    proc_root: str = "/proc"
    """Where the host's /proc is mounted."""
    cache_entries: int = 65536
    """Processes whose container is remembered (by pid and start time)."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout: must be positive")
        for name in ("max_events", "max_records", "cache_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.max_bytes < 1:
            raise ValueError("max_bytes: must be at least 1")
        if not self.proc_root:
            raise ValueError("proc_root: cannot be empty")


_Context = tuple[str, Any]
"""What an event keeps of its first line's record: the tag and the host."""


class AuditdFilter(Filter):
    counts_drops = False
    """Several audit records make one event record: fewer out is not a loss (counted apart)."""

    def __init__(self, config: AuditdConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        self._line = make_getter(parse_path(config.key, "key"))
        self.joiner = AuditJoiner(
            timeout=float(config.timeout),
            max_events=config.max_events,
            max_records=config.max_records,
            max_bytes=int(config.max_bytes),
        )
        self.resolver = (
            ContainerResolver(config.proc_root, config.cache_entries) if config.containers else None
        )
        self._reported = dict(self.joiner.counts)

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        now = self.clock()
        joiner = self.joiner
        passed: list[Record] | None = None
        """The records that pass through, once one was consumed (until then: all so far)."""
        released: list[tuple[Record, Any]] = []
        line_of = self._line
        for index, record in enumerate(records):
            text = line_of(record)
            # Most records on a syslog stream are not audit lines: one `in` rules them out.
            line = parse_line(text) if text.__class__ is str and "type=" in text else None
            if line is None:
                if passed is not None:
                    passed.append(record)
                continue
            if passed is None:
                passed = records[:index]
            host = record.get("host")
            if host is not None and host.__class__ is not str:
                host = as_text(host)  # a table or list names no host (and is not hashable)
            released.extend(joiner.add(line, now, (tag, host), (tag, host)))
        out = self._finish(released) if released else self._report_only()
        if passed is None:
            # Nothing consumed: the list itself, not a copy (the chain keeps its event times).
            out.insert(0, (tag, records))
        elif passed:
            out.insert(0, (tag, passed))
        return out

    def _report_only(self) -> list[Batch]:
        if self.joiner.counts != self._reported:
            self._report()
        return []

    def flush(self, now: float) -> list[Batch]:
        return self._finish(self.joiner.flush(now))

    def close(self) -> list[Batch]:
        return self._finish(self.joiner.close())

    def _finish(self, released: list[tuple[Record, Any]]) -> list[Batch]:
        batches: dict[str, list[Record]] = {}
        ident = self.config.ident
        resolver = self.resolver
        metrics = self.context.metrics
        attributed: dict[str, int] = {}
        for record, (tag, host) in released:
            event: Record = {"time": record["time"]}
            if host is not None:
                event["host"] = host
            event["ident"] = ident
            event["message"] = record["message"]
            info = record["auditd"]
            event["auditd"] = info
            if resolver is not None and ("pid" in info or "ppid" in info):
                container, how = resolver.resolve(info.get("pid"), info.get("ppid"))
                if container is not None:
                    event["container_id"] = container
                    attributed[how] = attributed.get(how, 0) + 1
                else:
                    reason = "gone" if how == "gone" else "host"
                    attributed[reason] = attributed.get(reason, 0) + 1
            batches.setdefault(tag, []).append(event)
        for how, count in attributed.items():
            metrics.inc("filter_auditd_attribution_total", count, result=how)
        self._report()
        return list(batches.items())

    def _report(self) -> None:
        counts = self.joiner.counts
        reported = self._reported
        if counts == reported:
            return
        metrics = self.context.metrics
        for name, value in counts.items():
            delta = value - reported[name]
            if not delta:
                continue
            if name == "events":
                metrics.inc("filter_auditd_events_total", delta)
            elif name == "records":
                metrics.inc("filter_auditd_records_total", delta)
            elif name == "truncated_records":
                metrics.inc("filter_auditd_dropped_records_total", delta, reason="event_too_large")
            else:
                metrics.inc("filter_auditd_incomplete_events_total", delta, reason=name)
        self._reported = dict(counts)
