"""/metrics of the real agent process, read with prometheus_client's parser: counters whose labels
are known at start are there as 0 before anything happened; the buffer's chunks are one series
per buffer, with its location; build info and the standard process metrics are exported."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent import __version__
from bench.harness import AgentProcess
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for


def _config(tmp_path: Path, buffer: str, tcp: int, udp: int) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("tcp", tcp, name="tcp-in"),
        syslog_input("udp", udp, name="udp-in"),
        filters=[{"type": "grep", "name": "keep", "regex": [["message", "."]]}],
        buffer={"type": buffer},
        outputs=[file_output(tmp_path / "out.ndjson", name="out")],
    )


def _samples(agent: AgentProcess) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(agent.metrics_text())
        for sample in family.samples
    ]


def _value(samples: list[Sample], metric: str, /, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == metric and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (metric, labels, found)
    return found[0] if found else None


@pytest.mark.parametrize("buffer", ["disk", "memory"])
def test_known_counters_are_zero_from_the_start_and_buffer_chunks_is_one_series(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], buffer: str
) -> None:
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    agent = start_agent(_config(tmp_path, buffer, tcp, udp))
    samples = _samples(agent)
    prefix = "audit_agent_"
    zero = [
        ("input_dropped_records_total", {"name": "tcp-in", "reason": "buffer_full"}),
        ("input_dropped_records_total", {"name": "udp-in", "reason": "buffer_full"}),
        ("input_dropped_records_total", {"name": "udp-in", "reason": "buffer_error"}),
        ("input_retried_records_total", {"name": "tcp-in", "reason": "buffer_error"}),
        ("input_records_total", {"name": "udp-in", "type": "syslog"}),
        ("input_kernel_drops_total", {"name": "udp-in"}),
        ("parse_errors_total", {"name": "tcp-in"}),
        ("filter_dropped_records_total", {"name": "keep"}),
        ("output_records_total", {"name": "out", "type": "file"}),
        ("output_retries_total", {"name": "out"}),
        ("output_dead_lettered_records_total", {"name": "out", "reason": "rejected"}),
        ("output_dead_lettered_records_total", {"name": "out", "reason": "refused"}),
        ("output_blocked_total", {"name": "out", "cause": "dead_letter_full"}),
        ("input_connections_rejected_total", {"name": "tcp-in", "reason": "max_connections"}),
        ("buffer_cut_bytes_total", {"name": "buffer", "reason": "torn"}),
        ("buffer_dead_letter_records_total", {"output": "out"}),
        ("buffer_dropped_records_total", {"reason": "drop_oldest"}),
        ("router_dropped_records_total", {"reason": "no_route"}),
    ]
    for name, labels in zero:
        assert _value(samples, prefix + name, **labels) == 0, (name, labels)

    chunks = [s for s in samples if s.name == prefix + "buffer_chunks"]
    assert [s.labels for s in chunks] == [{"name": "buffer", "type": buffer, "location": buffer}]
    with socket.create_connection(("127.0.0.1", tcp)) as conn:
        conn.sendall(b"<14>Nov 29 21:00:00 host app: one\n<14>Nov 29 21:00:00 host app: two\n")
    wait_for(lambda: agent.metric("output_records_total", name="out") == 2)
    samples = _samples(agent)
    assert _value(samples, prefix + "input_records_total", name="tcp-in") == 2
    assert len([s for s in samples if s.name == prefix + "buffer_chunks"]) == 1

    info = [s for s in samples if s.name == prefix + "build_info"]
    assert len(info) == 1 and info[0].value == 1
    assert info[0].labels["version"] == __version__
    assert info[0].labels["checksum"] == "zlib-ng"  # the test install has the fast extra


def test_process_metrics(tmp_path: Path, start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent(_config(tmp_path, "disk", free_port(), free_port(socket.SOCK_DGRAM)))
    samples = _samples(agent)
    cpu = _value(samples, "process_cpu_seconds_total")
    assert cpu is not None and cpu > 0
    rss = _value(samples, "process_resident_memory_bytes")
    assert rss is not None and rss > 10 * 1024 * 1024
    fds = _value(samples, "process_open_fds")
    assert fds == len(os.listdir(f"/proc/{agent.pid}/fd")) or (fds or 0) > 5
    max_fds = _value(samples, "process_max_fds")
    assert max_fds is not None and max_fds >= (fds or 0)
    start = _value(samples, "process_start_time_seconds")
    assert start is not None and time.time() - 120 < start <= time.time()
