"""The test doubles every test and bench shares.

``RecordingMetrics`` counts into the agent's real ``Registry`` (what ``/metrics`` renders), so a
test reads back what production would have exported; ``NullMetrics`` counts nothing, for benches
and child processes where counting is not what is measured. ``DeadLetters`` records what an
output dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence

from agent.metrics import ComponentMetrics, Registry
from outputs.base import Chunk


class RecordingMetrics(ComponentMetrics):
    """The ``common.metrics.Metrics`` a component under test counts through: the agent's
    ``ComponentMetrics`` over a fresh ``Registry``, without the ``name`` and ``type`` labels the
    agent adds, so the series carry exactly the labels the component gave."""

    def __init__(self) -> None:
        self.registry = Registry()
        super().__init__(self.registry, ())

    def counter(self, name: str, **labels: str) -> float:
        """The counter series with exactly these labels (0 if it never counted)."""
        return self.registry.counters.get(name, {}).get(_key(labels), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of a counter or gauge over every series whose labels include ``labels`` (as
        ``Registry.value``, over a snapshot: inputs count on their loop thread while the test
        reads)."""
        tables = (self.registry.counters, self.registry.gauges)
        return sum(
            value
            for table in tables
            for key, value in list(table.get(name, {}).items())
            if all(item in key for item in labels.items())
        )

    def gauge(self, name: str, **labels: str) -> float | None:
        """The gauge series with exactly these labels (None if it was never set)."""
        return self.registry.gauges.get(name, {}).get(_key(labels))

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets a counter or gauge was recorded with, in recording order."""
        keys = [*self.registry.counters.get(name, {}), *self.registry.gauges.get(name, {})]
        return [dict(key) for key in keys]

    def observations(self, name: str, **labels: str) -> int:
        """How many values were observed into histogram ``name``, over every series whose
        labels include ``labels``."""
        return sum(count for count, _ in self._histograms(name, labels))

    def observed_sum(self, name: str, **labels: str) -> float:
        """The sum of the values observed into histogram ``name`` (as ``observations``)."""
        return sum(total for _, total in self._histograms(name, labels))

    def _histograms(self, name: str, labels: dict[str, str]) -> list[tuple[int, float]]:
        series = self.registry.histograms.get(name, {})
        return [
            (h.count, h.sum)
            for key, h in list(series.items())
            if all(item in key for item in labels.items())
        ]


class NullMetrics:
    """``common.metrics.Metrics`` that counts nothing."""

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...

    def set(self, name: str, value: float, **labels: str) -> None: ...


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class DeadLetters:
    """``OutputContext.dead_letter`` that records each call: (chunk id, lines, reason)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes], str]] = []

    def __call__(self, chunk: Chunk, lines: Sequence[bytes], reason: str) -> None:
        self.calls.append((chunk.id, list(lines), reason))

    @property
    def lines(self) -> list[bytes]:
        """Every dead-lettered line, in the order they came."""
        return [line for _, lines, _ in self.calls for line in lines]
