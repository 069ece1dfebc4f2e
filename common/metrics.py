"""What every component counts through: the ``Metrics`` protocol. The agent's registry
(``agent/metrics.py``) implements it; inputs, filters, the buffer and outputs only see this."""

from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    """Where a component counts what it did. The agent adds the product prefix and the
    component's ``name`` and ``type`` labels; names follow Prometheus conventions (``_total``,
    ``_bytes``, ``_seconds``)."""

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...

    def set(self, name: str, value: float, **labels: str) -> None: ...
