"""What the filter tests share: a controllable clock, and building filters and chains from raw
config dicts exactly as the agent does (msgspec conversion, ``build``)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from agent.components import build, filter_types
from agent.filters.audit import AuditFilter
from agent.filters.base import Filter, FilterConfig, FilterContext
from agent.filters.chain import FilterChain
from common.units import config_dec_hook
from tests.doubles import RecordingMetrics


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filter_config(raw: dict[str, Any]) -> FilterConfig:
    config: FilterConfig = msgspec.convert(
        raw, filter_types()[raw["type"]][0], dec_hook=config_dec_hook
    )
    return config


def make(kind: str, metrics: RecordingMetrics | None = None, **config: Any) -> Filter:
    """One filter of ``kind`` built from ``config``. A test that reaches a filter's own
    attributes (its ``clock``) narrows it first: ``assert isinstance(f, ThrottleFilter)``."""
    context = FilterContext(
        name=f"{kind}.0", logger=logging.getLogger("test"), metrics=metrics or RecordingMetrics()
    )
    filter_: Filter = build("filters", 0, filter_config({"type": kind, **config}), context)
    return filter_


def recorded(f: Filter) -> RecordingMetrics:
    """What a filter ``make`` built counted (``make`` gives each one a ``RecordingMetrics``)."""
    assert isinstance(f.context.metrics, RecordingMetrics)
    return f.context.metrics


def make_audit(**config: Any) -> AuditFilter:
    """The audit filter on a controllable clock (burst rules count within windows)."""
    audit = make("audit", **config)
    assert isinstance(audit, AuditFilter)
    audit.clock = Clock()
    return audit


def chain(*configs: dict[str, Any]) -> tuple[FilterChain, list[RecordingMetrics]]:
    pairs: list[tuple[FilterConfig, FilterContext]] = []
    metrics: list[RecordingMetrics] = []
    for index, raw in enumerate(configs):
        recorder = RecordingMetrics()
        metrics.append(recorder)
        context = FilterContext(
            name=f"{raw['type']}.{index}", logger=logging.getLogger("t"), metrics=recorder
        )
        pairs.append((filter_config(raw), context))
    return FilterChain(pairs), metrics


def run(f: Filter, records: list[dict[str, Any]], tag: str = "syslog") -> list[dict[str, Any]]:
    """The records that come out of one filter, whatever their tags."""
    return [r for _, recs in f.process(tag, records) for r in recs]
