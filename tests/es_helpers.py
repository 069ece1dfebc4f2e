"""Helpers for the Elasticsearch output tests and bench: an in-memory chunk built the way the
buffer builds one (records encoded once with msgspec, event times beside them), a metrics
recorder and an output context that collects dead letters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from outputs.base import OutputContext
from outputs.elasticsearch import ElasticsearchConfig, ElasticsearchOutput
from tests.chunks import TestChunk
from tests.doubles import DeadLetters, RecordingMetrics


class MemoryChunk(TestChunk):
    """Records encoded once with msgspec and their event times beside them, as the buffer
    builds a chunk."""

    def __init__(self, tag: str, records: Sequence[dict[str, Any]], chunk_id: str = "") -> None:
        super().__init__(
            tag,
            [msgspec.json.encode(record) for record in records],
            chunk_id=chunk_id or None,
            created=0.0,
            times=[datetime.fromisoformat(r["time"]).timestamp() for r in records],
        )


def make_output(
    **settings: Any,
) -> tuple[ElasticsearchOutput, RecordingMetrics, DeadLetters]:
    config = msgspec.convert(
        {"type": "elasticsearch", **settings},
        ElasticsearchConfig,
        dec_hook=_dec_hook,
    )
    metrics = RecordingMetrics()
    dead = DeadLetters()
    context = OutputContext(
        name="es-test",
        data_dir="/nonexistent",
        node_name="test-node",
        logger=logging.getLogger("test.es"),
        metrics=metrics,
        dead_letter=dead,
    )
    return ElasticsearchOutput(config, context), metrics, dead


def _dec_hook(type_: type, obj: object) -> object:
    from common.units import config_dec_hook

    return config_dec_hook(type_, obj)


SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
FACILITIES = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news"]


def syslog_record(
    n: int, time: str = "2026-11-29T10:15:30.123456Z", **extra: Any
) -> dict[str, Any]:
    """A record shaped like the syslog parser's output."""
    facility, severity = n % 8, n % 8
    record: dict[str, Any] = {
        "pri": facility * 8 + severity,
        "time": time,
        "host": f"node-{n % 3}",
        "ident": "sshd" if n % 2 else "kubelet",
        "pid": 1000 + n,
        "message": f"message number {n}: accepted publickey for user{n % 5} from 10.0.0.{n % 250}",
        "facility": FACILITIES[facility],
        "severity": SEVERITIES[severity],
        "seq": n,
    }
    record.update(extra)
    return record
