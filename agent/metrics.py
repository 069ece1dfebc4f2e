"""Prometheus metrics without a dependency: counters, gauges and histograms, rendered in the text
exposition format.

Components get a ``ComponentMetrics`` (the ``common.metrics.Metrics`` protocol) that adds the
product prefix and their ``name`` and ``type`` labels. Calls are per batch, never per record, so a
dict lookup per call is cheap enough.
"""

from __future__ import annotations

import bisect
import builtins
import math
import os
import resource
import time
from collections.abc import Callable, Iterable

PREFIX = "audit_agent_"

DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LabelKey = tuple[tuple[str, str], ...]

HELP = {
    "input_records_total": "Records received by an input (after parsing).",
    "input_bytes_total": "Bytes received by an input.",
    "input_dropped_records_total": "Records an input could not take, by reason.",
    "parse_errors_total": "Messages that could not be parsed (kept, flagged with parse_error).",
    "output_records_total": "Records an output delivered (acknowledged by the destination).",
    "output_bytes_total": "Bytes an output delivered.",
    "output_retries_total": "Writes (a chunk or a group of chunks) that failed, to be retried.",
    "output_dead_lettered_records_total": "Records moved to the dead-letter directory, by reason.",
    "output_request_seconds": (
        "Time of one write (a chunk, or a group of chunks: an S3 object, a bulk of chunks), "
        "from send to the destination's confirmation."
    ),
    "router_dropped_records_total": "Records whose tag no output matches.",
    "up": "1 while the agent runs.",
    "build_info": "The agent's version and runtime (always 1).",
    "buffer_chunks": "Chunks in the buffer not yet acknowledged by all their outputs.",
    "buffer_bytes": "Bytes the buffer holds, in memory and on disk.",
    "buffer_max_bytes": "The buffer's configured max_bytes.",
    "ready": "1 while /readyz answers 200 (ready), else 0.",
}


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value


class Registry:
    def __init__(self) -> None:
        self.counters: dict[str, dict[LabelKey, float]] = {}
        self.gauges: dict[str, dict[LabelKey, float]] = {}
        self.histograms: dict[str, dict[LabelKey, _Histogram]] = {}
        self.collectors: list[Callable[[], None]] = []
        """Called before rendering, to refresh gauges that are cheaper to read than to track."""

    def inc(self, name: str, value: float, labels: LabelKey) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + value

    def set(self, name: str, value: float, labels: LabelKey) -> None:
        self.gauges.setdefault(name, {})[labels] = value

    def observe(self, name: str, value: float, labels: LabelKey) -> None:
        series = self.histograms.setdefault(name, {})
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = _Histogram(DEFAULT_BUCKETS)
        histogram.observe(value)

    def declare(self, name: str, labels: LabelKey) -> None:
        """A counter series known at start, exported as 0 until it counts (so ``increase()``
        sees its first event)."""
        self.counters.setdefault(name, {}).setdefault(labels, 0.0)

    def retain(self, names: builtins.set[str]) -> None:
        """Forget gauges of components that are gone (after a reload); counters stay."""
        for series in self.gauges.values():
            for key in [k for k in series if k and k[0][0] == "name" and k[0][1] not in names]:
                del series[key]

    def value(self, metric: str, /, **labels: str) -> float:
        """Sum of a counter or gauge over the series whose labels include ``labels`` (tests,
        status lines)."""
        total = 0.0
        for table in (self.counters, self.gauges):
            for key, value in table.get(metric, {}).items():
                if all(item in key for item in labels.items()):
                    total += value
        return total

    def component(self, name: str, kind: str) -> ComponentMetrics:
        return ComponentMetrics(self, (("name", name), ("type", kind)))

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        out: list[str] = []
        for name in sorted(self.counters):
            _header(out, name, "counter")
            for labels, value in sorted(self.counters[name].items()):
                out.append(f"{PREFIX}{name}{_labels(labels)} {_number(value)}")
        for name in sorted(self.gauges):
            _header(out, name, "gauge")
            for labels, value in sorted(self.gauges[name].items()):
                out.append(f"{PREFIX}{name}{_labels(labels)} {_number(value)}")
        for name in sorted(self.histograms):
            _header(out, name, "histogram")
            for labels, histogram in sorted(self.histograms[name].items()):
                cumulative = 0
                for bound, count in zip(histogram.buckets, histogram.counts, strict=False):
                    cumulative += count
                    le = (("le", _number(bound)),)
                    out.append(f"{PREFIX}{name}_bucket{_labels(labels + le)} {cumulative}")
                inf = (("le", "+Inf"),)
                out.append(f"{PREFIX}{name}_bucket{_labels(labels + inf)} {histogram.count}")
                out.append(f"{PREFIX}{name}_sum{_labels(labels)} {_number(histogram.sum)}")
                out.append(f"{PREFIX}{name}_count{_labels(labels)} {histogram.count}")
        out.extend(process_metrics())
        return "\n".join(out) + "\n"


class ComponentMetrics:
    """``common.metrics.Metrics`` for one component: its name and type ride on every series."""

    __slots__ = ("_base", "_cache", "_counters", "_registry")

    def __init__(self, registry: Registry, base: LabelKey) -> None:
        self._registry = registry
        self._counters = registry.counters
        self._base = base
        self._cache: dict[tuple[tuple[str, str], ...], LabelKey] = {}

    def _key(self, labels: dict[str, str]) -> LabelKey:
        if not labels:
            return self._base
        given = tuple(labels.items())  # as the call spelled them: no sort on a hit
        key = self._cache.get(given)
        if key is None:
            key = self._cache[given] = self._base + tuple(sorted(given))
        return key

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        # Inlined Registry.inc: the filter chain counts three series per filter and batch.
        series = self._counters.get(name)
        if series is None:
            series = self._counters[name] = {}
        key = self._key(labels) if labels else self._base
        series[key] = series.get(key, 0.0) + value

    def declare(self, name: str, **labels: str) -> None:
        self._registry.declare(name, self._key(labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._registry.observe(name, value, self._key(labels))

    def set(self, name: str, value: float, **labels: str) -> None:
        self._registry.set(name, value, self._key(labels))


def _header(out: list[str], name: str, kind: str) -> None:
    help_text = HELP.get(name, name.replace("_", " ").capitalize() + ".")
    out.append(f"# HELP {PREFIX}{name} {help_text}")
    out.append(f"# TYPE {PREFIX}{name} {kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# ------------------------------------------------------------------------- process metrics

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as file:
            for line in file:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BOOT = _boot_time()
_STARTED = time.time()


def process_metrics() -> list[str]:
    """The standard ``process_*`` metrics (Prometheus' client conventions, no prefix): CPU
    seconds, resident memory, open and maximum file descriptors, start time."""
    values: dict[str, float] = {}
    start = _STARTED
    try:
        with open("/proc/self/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        values["process_cpu_seconds_total"] = (int(fields[11]) + int(fields[12])) / _TICKS
        if _BOOT is not None:
            start = _BOOT + int(fields[19]) / _TICKS
        with open("/proc/self/statm") as file:
            values["process_resident_memory_bytes"] = int(file.read().split()[1]) * _PAGE
        values["process_open_fds"] = len(os.listdir("/proc/self/fd"))
    except (OSError, IndexError, ValueError):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        values["process_cpu_seconds_total"] = usage.ru_utime + usage.ru_stime
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        values["process_max_fds"] = soft
    values["process_start_time_seconds"] = start
    out: list[str] = []
    for name, (kind, text) in _PROCESS_HELP.items():
        if name in values:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            out.append(f"{name} {_number(values[name])}")
    return out


_PROCESS_HELP = {
    "process_cpu_seconds_total": ("counter", "Total user and system CPU time spent in seconds."),
    "process_resident_memory_bytes": ("gauge", "Resident memory size in bytes."),
    "process_open_fds": ("gauge", "Number of open file descriptors."),
    "process_max_fds": ("gauge", "Maximum number of open file descriptors."),
    "process_start_time_seconds": (
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
}
