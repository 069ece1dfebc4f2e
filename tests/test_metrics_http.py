"""Metrics render in the Prometheus text format (checked with prometheus_client's own parser) and
the HTTP endpoint serves /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from agent.http import HttpServer, split_host_port
from agent.metrics import Registry


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_render_parses_with_prometheus_client() -> None:
    registry = Registry()
    metrics = registry.component("syslog.0", "syslog")
    metrics.inc("input_records_total", 10)
    metrics.inc("input_records_total", 5)
    metrics.inc("input_dropped_records_total", 2, reason="buffer_full")
    metrics.set("input_active_connections", 3)
    out = registry.component('s3 "main"', "s3")
    out.observe("output_request_seconds", 0.2)
    out.observe("output_request_seconds", 3.0)
    families = _families(registry.render())

    records = families["audit_agent_input_records"]
    sample = records.samples[0]  # type: ignore[attr-defined]
    assert sample.name == "audit_agent_input_records_total"
    assert sample.labels == {"name": "syslog.0", "type": "syslog"}
    assert sample.value == 15
    dropped = families["audit_agent_input_dropped_records"].samples[0]  # type: ignore[attr-defined]
    assert dropped.labels["reason"] == "buffer_full"
    assert families["audit_agent_input_active_connections"].type == "gauge"  # type: ignore[attr-defined]
    histogram = families["audit_agent_output_request_seconds"]
    assert histogram.type == "histogram"  # type: ignore[attr-defined]
    by_name = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}  # type: ignore[attr-defined]
    assert by_name[("audit_agent_output_request_seconds_count", None)] == 2
    assert by_name[("audit_agent_output_request_seconds_bucket", "0.25")] == 1
    assert by_name[("audit_agent_output_request_seconds_bucket", "+Inf")] == 2
    assert histogram.samples[0].labels["name"] == 's3 "main"'  # type: ignore[attr-defined]


def test_registry_value_sums_matching_series() -> None:
    registry = Registry()
    metrics = registry.component("a", "syslog")
    metrics.inc("input_dropped_records_total", 2, reason="buffer_full")
    metrics.inc("input_dropped_records_total", 3, reason="truncated")
    assert registry.value("input_dropped_records_total", name="a") == 5
    assert registry.value("input_dropped_records_total", reason="truncated") == 3


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:2020") == ("127.0.0.1", 2020)
    assert split_host_port("[::1]:2020") == ("::1", 2020)
    assert split_host_port(":2020") == ("0.0.0.0", 2020)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_http_endpoints() -> None:
    registry = Registry()
    registry.component("x", "null").inc("output_records_total", 7)
    reasons: list[str] = []

    async def scenario() -> None:
        server = HttpServer("127.0.0.1:0", registry, lambda: list(reasons))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            status, body = await asyncio.to_thread(_get, base + "/healthz")
            assert (status, body) == (200, "ok\n")
            status, body = await asyncio.to_thread(_get, base + "/readyz")
            assert status == 200 and '"ready":true' in body
            reasons.append("buffer full")
            status, body = await asyncio.to_thread(_get, base + "/readyz")
            assert status == 503 and "buffer full" in body
            status, body = await asyncio.to_thread(_get, base + "/metrics")
            assert status == 200
            families = _families(body)
            assert families["audit_agent_output_records"].samples[0].value == 7  # type: ignore[attr-defined]
            status, _ = await asyncio.to_thread(_get, base + "/nope")
            assert status == 404
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_declared_counters_render_as_zero_and_process_metrics_parse() -> None:
    registry = Registry()
    metrics = registry.component("in", "syslog")
    metrics.declare("input_dropped_records_total", reason="buffer_full")
    metrics.inc("input_dropped_records_total", 2, reason="buffer_full")
    metrics.declare("input_dropped_records_total", reason="reloading")
    metrics.declare("input_dropped_records_total", reason="buffer_full")  # keeps the 2
    families = _families(registry.render())
    dropped = {
        s.labels["reason"]: s.value
        for s in families["audit_agent_input_dropped_records"].samples  # type: ignore[attr-defined]
    }
    assert dropped == {"buffer_full": 2, "reloading": 0}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert name in families, name


def test_retain_forgets_gauges_of_components_gone_and_keeps_counters() -> None:
    registry = Registry()
    registry.component("old", "file").set("output_up", 1)
    registry.component("old", "file").inc("output_records_total", 3)
    registry.component("kept", "file").set("output_up", 1)
    registry.set("up", 1, ())
    registry.retain({"kept"})
    assert registry.value("output_up", name="old") == 0
    assert registry.value("output_up", name="kept") == 1
    assert registry.value("up") == 1
    assert registry.value("output_records_total", name="old") == 3
