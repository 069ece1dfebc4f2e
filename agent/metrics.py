"""Prometheus metrics without a dependency: counters, gauges and histograms, rendered in the text
exposition format.

Components get a ``ComponentMetrics`` (the ``outputs.base.Metrics`` protocol) that adds the product
prefix and their ``name`` and ``type`` labels. Calls are per batch, never per record, so a dict
lookup per call is cheap enough.
"""

from __future__ import annotations

import bisect
import builtins
import math
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
    "output_retries_total": "Chunk sends that failed and will be retried.",
    "output_dead_lettered_records_total": "Records moved to the dead-letter directory, by reason.",
    "output_request_seconds": "Time to deliver one chunk, from send to acknowledgement.",
    "router_dropped_records_total": "Records whose tag no output matches.",
    "up": "1 while the agent runs.",
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
        return "\n".join(out) + "\n"


class ComponentMetrics:
    """``outputs.base.Metrics`` for one component: its name and type ride on every series."""

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
