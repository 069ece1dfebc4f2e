"""Monitoring (manifests/components/monitoring): the PodMonitor, the PrometheusRule's alerts and the
Grafana dashboard speak of series a REAL agent exports: a running agent is scraped and every metric
the rules and panels use must be in that scrape; the alert expressions are evaluated by the real
`promtool test rules` over input series built from that scrape (scripts/build-helm.sh builds
promtool from the Go module proxy; those tests skip without it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, syslog_input, tail_input
from tests.conftest import REPO, free_port, wait_for
from tests.test_manifests import MANIFESTS, container, needs_kubectl, only, rendered

MONITORING = MANIFESTS / "components" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RUNBOOK = REPO / "docs" / "runbook.md"
JOB = "container-audit-agent"
NODE = "node-a"
INSTANCE = "10.0.0.1:2020"
# Labels Prometheus adds to every scraped series (the PodMonitor's jobLabel and relabeling).
TARGET_LABELS = {"job": JOB, "node": NODE, "instance": INSTANCE}


def promtool_binary() -> str | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = cache / "container-audit-agent" / "bin" / "promtool"
    return shutil.which("promtool") or (str(cached) if os.access(cached, os.X_OK) else None)


PROMTOOL = promtool_binary()
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: run scripts/build-helm.sh (needs Go)"
)


def rule_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]
    return spec


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_spec()["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs.append(board["templating"]["list"][1]["query"]["query"])
    return exprs


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:audit_agent|process)_[a-z_]+)\b", expr))


# ---------------------------------------------------------------------- a real agent's scrape

Series = tuple[str, dict[str, str], float]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> list[Series]:
    series: list[Series] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"unparsable exposition line: {line!r}"
        labels = dict(_LABEL.findall(match.group(2) or ""))
        series.append((match.group(1), labels, float(match.group(3))))
    return series


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Series]]:
    """/metrics of a running agent as a node runs it: syslog over UDP (kernel drops), RELP and a
    UNIX socket, the tail input, the audit filter, a disk buffer, an output that delivers; a few
    records sent through so that counters and the latency histogram have moved."""
    work = tmp_path_factory.mktemp("agent")
    logs = work / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("2026-12-06T14:00:00.000000000Z stdout F hello from a file\n")
    udp = free_port()
    config = agent_toml(
        work,
        syslog_input("udp", udp, tag="syslog"),
        syslog_input("relp", free_port(), tag="syslog"),
        tail_input([logs / "*.log"], read_from_head=True, tag="kube.files"),
        agent={"node_name": NODE},
        buffer={"type": "disk", "max_bytes": "64MiB"},
        filters=[{"type": "audit", "match": "*"}],
    )
    agent = AgentProcess(work, config).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(20):
                sock.sendto(f"<13>1 - host app - - - record {i}".encode(), ("127.0.0.1", udp))
        wait_for(
            lambda: (
                agent.metric("output_request_seconds_count") > 0
                and agent.metric("input_records_total") >= 21
            ),
            timeout=60,
            interval=0.2,
        )
        time.sleep(0.5)
        yield parse_exposition(agent.metrics_text())
    finally:
        agent.stop()


def scraped_names(scrape: list[Series]) -> set[str]:
    return {name for name, _, _ in scrape}


def test_every_alert_metric_is_in_a_real_scrape(scrape: list[Series]) -> None:
    names = scraped_names(scrape)
    used = set().union(*(metric_names(rule["expr"]) for rule in alerts()))
    assert len(used) >= 8
    assert used <= names, f"rules use metrics the agent does not export: {sorted(used - names)}"


def test_every_dashboard_metric_is_in_a_real_scrape(scrape: list[Series]) -> None:
    names = scraped_names(scrape)
    labels = {key for _, series_labels, _ in scrape for key in series_labels}
    labels |= set(TARGET_LABELS) | {"le"}
    for expr in dashboard_exprs():
        used = metric_names(expr)
        assert used, f"a panel queries no agent metric: {expr}"
        assert used <= names, f"panel uses metrics the agent does not export: {used - names}"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            by = {label.strip() for label in group.split(",")}
            assert by <= labels, f"panel groups by labels no series has: {by - labels} in {expr}"


def test_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] and board["title"]
    kinds = {p["type"] for p in board["panels"]}
    assert kinds <= {"row", "timeseries"}
    exprs = " ".join(dashboard_exprs())
    for needle in ("histogram_quantile", "output_retries_total", "dead_lettered", "buffer_bytes"):
        assert needle in exprs


# ----------------------------------------------------------------------------- the runbook


def test_every_alert_has_a_runbook_paragraph() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.M))
    for rule in alerts():
        assert rule["alert"] in headings, f"docs/runbook.md has no section for {rule['alert']}"
        url = rule["annotations"]["runbook_url"]
        assert url.endswith("runbook.md#" + rule["alert"].lower()), url
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


# ----------------------------------------------------------------------- kustomize component


@needs_kubectl
def test_monitoring_component_selects_the_agent_pods() -> None:
    objects = rendered("overlays/s3+monitoring")
    monitor = only(objects, "PodMonitor")
    rule = only(objects, "PrometheusRule")
    daemonset = only(objects, "DaemonSet", "audit-agent")
    for obj in (monitor, rule):
        assert obj["metadata"]["namespace"] == daemonset["metadata"]["namespace"]
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[monitor["spec"]["jobLabel"]] == JOB
    ports = {
        p["name"]: p for p in container(daemonset["spec"]["template"]["spec"], "agent")["ports"]
    }
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert rule["spec"] == rule_spec()


# ------------------------------------------------------------------------ promtool test rules

# One scenario per alert: the scraped series (picked by name and labels) that goes bad, and how.
SCENARIOS: dict[str, tuple[str, dict[str, str], str]] = {
    "AuditAgentInputDroppingRecords": (
        "audit_agent_input_dropped_records_total",
        {"reason": "buffer_full", "type": "syslog"},
        "0+5x60",
    ),
    "AuditAgentBufferDroppingRecords": (
        "audit_agent_buffer_dropped_records_total",
        {"reason": "corrupt"},
        "0+2x60",
    ),
    "AuditAgentUnroutedRecords": (
        "audit_agent_router_dropped_records_total",
        {"reason": "no_route"},
        "0+1x60",
    ),
    "AuditAgentOutputRetrying": ("audit_agent_output_retries_total", {}, "0+1x60"),
    "AuditAgentOutputDeadLettering": (
        "audit_agent_output_dead_lettered_records_total",
        {},
        "0+4x60",
    ),
    "AuditAgentOutputBlocked": ("audit_agent_output_blocked_chunks", {"cause": "denied"}, "3x60"),
    "AuditAgentBufferFilling": ("audit_agent_buffer_bytes", {"location": "disk"}, "FILL"),
    "AuditAgentNotReady": ("audit_agent_ready", {}, "0x60"),
    "AuditAgentDown": ("up", {}, "0x60"),
    "AuditAgentKernelDrops": ("audit_agent_input_kernel_drops_total", {}, "0+3x60"),
    "AuditAgentNoRecords": ("audit_agent_input_records_total", {}, "FLAT"),
}
EVAL_TIME = "40m"


def series_text(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def baseline(scrape: list[Series]) -> list[tuple[str, dict[str, str], str]]:
    """Every scraped series as Prometheus would store it (with the target's labels), steady and
    healthy: counters flat, except records flowing in; plus the scrape's own `up`."""
    out = []
    for name, labels, value in scrape:
        full = {**labels, **TARGET_LABELS}
        steady = str(int(value)) if value.is_integer() else format(value, "f")
        values = "0+10x60" if name == "audit_agent_input_records_total" else f"{steady}x60"
        out.append((name, full, values))
    out.append(("up", dict(TARGET_LABELS), "1x60"))
    return out


def expected_alert(rule: dict[str, Any], series_labels: dict[str, str]) -> dict[str, Any]:
    by = re.search(r"by \(([^)]*)\)", rule["expr"])
    keys = [k.strip() for k in by.group(1).split(",")] if by else list(series_labels)
    labels = {k: series_labels[k] for k in keys if k in series_labels}
    labels.update(rule.get("labels", {}))

    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)

    return {
        "exp_labels": labels,
        "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()},
    }


def promtool_tests(scrape: list[Series]) -> dict[str, Any]:
    rules = alerts()
    names = [rule["alert"] for rule in rules]
    assert sorted(names) == sorted(SCENARIOS), "every alert needs a promtool scenario"
    max_bytes = next(v for n, _, v in scrape if n == "audit_agent_buffer_max_bytes")
    tests: list[dict[str, Any]] = []

    def case(series: list[tuple[str, dict[str, str], str]], firing: dict[str, Any]) -> None:
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": series_text(n, labels), "values": values}
                    for n, labels, values in series
                ],
                "alert_rule_test": [
                    {"eval_time": EVAL_TIME, "alertname": name, "exp_alerts": firing.get(name, [])}
                    for name in names
                ],
            }
        )

    case(baseline(scrape), {})  # a healthy node: no alert at all
    for rule in rules:
        metric, wanted, values = SCENARIOS[rule["alert"]]
        series = baseline(scrape)
        index = next(
            (
                i
                for i, (n, labels, _) in enumerate(series)
                if n == metric and wanted.items() <= labels.items()
            ),
            None,
        )
        assert index is not None, f"the scrape has no {metric}{wanted} for {rule['alert']}"
        name, labels, _ = series[index]
        if values == "FILL":
            values = f"{0.9 * max_bytes:.0f}x60"
        series[index] = (name, labels, values)
        if values == "FLAT":  # every input of the node stops reading
            series = [(n, ls, "21x60" if n == metric else v) for n, ls, v in series]
        case(series, {rule["alert"]: [expected_alert(rule, labels)]})
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_scenario_starts_from_scraped_series(scrape: list[Series]) -> None:
    """Without promtool too: each alert's bad series is one the real agent exports, with the
    labels the scenario picks (reason, cause, location)."""
    tests = promtool_tests(scrape)["tests"]
    assert len(tests) == 1 + len(alerts())
    scraped = {series_text(n, {**ls, **TARGET_LABELS}) for n, ls, _ in scrape}
    for case in tests:
        series = {s["series"] for s in case["input_series"]} - {series_text("up", TARGET_LABELS)}
        assert series == scraped


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alerts_fire_on_the_series_a_real_agent_exports(
    scrape: list[Series], tmp_path: Path
) -> None:
    """promtool evaluates every alert over the scraped series made healthy (none fires), then once
    per alert with its series gone bad (exactly that alert fires, with its labels and
    annotations)."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(promtool_tests(scrape), width=1000))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


# ------------------------------------------------------------------- the series the alerts need


def test_ready_and_buffer_max_bytes_follow_readyz_and_the_config(start_agent: Any) -> None:
    """`audit_agent_ready` is /readyz as a series (AuditAgentNotReady), `buffer_max_bytes` the
    configured bound (AuditAgentBufferFilling): an input at its connection limit makes /readyz
    503 and the gauge 0; the connection gone, both recover."""
    port = free_port()
    agent = start_agent(
        f"""
[buffer]
type = "memory"
max_bytes = "48MiB"

[[inputs]]
type = "syslog"
mode = "tcp"
listen = "127.0.0.1:{port}"
max_connections = 1

[[outputs]]
type = "null"
match = "*"
"""
    )
    assert agent.metric("ready") == 1 and agent.readyz()[0] == 200
    assert agent.metric("buffer_max_bytes") == 48 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port)):
        wait_for(lambda: agent.readyz()[0] == 503, timeout=30)
        assert agent.metric("ready") == 0
    wait_for(lambda: agent.readyz()[0] == 200, timeout=30)
    assert agent.metric("ready") == 1
