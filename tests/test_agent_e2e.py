"""The whole agent as a process: `logger` (util-linux) sends to each socket kind, records come out
of the file output with the right fields; malformed input is kept and counted; SIGTERM exits 0
after flushing; the embedded default config runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.conftest import REPO, agent_env, free_port, read_ndjson, wait_for

HOST = socket.gethostname()

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "logger"], capture_output=True).returncode != 0,
    reason="logger (util-linux) is not installed",
)


def _logger(*args: str) -> None:
    subprocess.run(["logger", *args], check=True, timeout=20)


def _wait_records(path: Path, count: int, timeout: float = 20) -> list[dict[str, object]]:
    wait_for(lambda: len(read_ndjson(path)) >= count, timeout=timeout)
    return read_ndjson(path)


@pytest.mark.parametrize(
    ("mode", "transport"),
    [
        ("udp", ["-d"]),
        ("tcp", ["-T"]),
        ("tcp", ["-T", "--octet-count"]),
        ("unix_dgram", []),
        ("unix_stream", []),
    ],
    ids=["udp", "tcp-newline", "tcp-octet-counted", "unix_dgram", "unix_stream"],
)
def test_logger_rfc5424_and_rfc3164_to_every_mode(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], mode: str, transport: list[str]
) -> None:
    if mode.startswith("unix"):
        sock = tmp_path / "run" / "syslog.sock"
        block = syslog_input(mode, path=sock, tag="syslog")
        target = ["-u", str(sock), "--socket-errors=on"]
        if mode == "unix_stream":
            target += ["-T"]
        else:
            target += ["-d"]
    else:
        kind = socket.SOCK_DGRAM if mode == "udp" else socket.SOCK_STREAM
        port = free_port(kind)
        block = syslog_input(mode, port, tag="syslog")
        target = ["-n", "127.0.0.1", "-P", str(port), *transport]
    start_agent(agent_toml(tmp_path, block))

    _logger(
        *target,
        "--rfc5424",
        "-t",
        "web-5424",
        "--id=4242",
        "-p",
        "auth.warning",
        "--msgid",
        "ID47",
        "--sd-id",
        "origin@32473",
        "--sd-param",
        'ip="10.0.0.7"',
        "hello from 5424",
    )
    _logger(
        *target, "--rfc3164", "-t", "web-3164", "--id=4343", "-p", "local3.err", "hello from 3164"
    )

    records = _wait_records(tmp_path / "out.ndjson", 2)
    by_ident = {r.get("ident"): r for r in records}
    r5424, r3164 = by_ident["web-5424"], by_ident["web-3164"]
    assert r5424["message"] == "hello from 5424"
    assert r5424["pid"] in (4242, "4242")
    assert r5424["facility"] == "auth" and r5424["severity"] == "warning"
    assert r5424["msgid"] == "ID47"
    assert r5424["sd"]["origin@32473"] == {"ip": "10.0.0.7"}  # type: ignore[index]
    assert r5424["host"] == HOST
    assert str(r5424["time"]).endswith("Z")
    assert r3164["message"] == "hello from 3164"
    assert r3164["pid"] in (4343, "4343")
    assert r3164["facility"] == "local3" and r3164["severity"] == "err"
    assert "parse_error" not in r3164 and "parse_error" not in r5424


def test_malformed_lines_are_kept_flagged_and_counted(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    block = syslog_input("tcp", port, format="rfc5424", source_key="peer")
    agent = start_agent(agent_toml(tmp_path, block))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"this is not syslog \xff\xfe at all\n<34>1 - - - - - - fine\n")
    records = _wait_records(tmp_path / "out.ndjson", 2)
    bad = next(r for r in records if "parse_error" in r)
    assert bad["message"] == "this is not syslog \ufffd\ufffd at all"
    assert str(bad["peer"]).startswith("127.0.0.1:")
    good = next(r for r in records if "parse_error" not in r)
    assert good["message"] == "fine"
    assert agent.metric("parse_errors_total") == 1


def test_templated_tags_route_to_different_outputs(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    nginx = file_output(tmp_path / "nginx.ndjson", match="app.nginx")
    other: dict[str, object] = {"type": "file", "match_regex": r"^app\.(redis|api)$"}
    other["path"] = tmp_path / "other.ndjson"
    config = agent_toml(
        tmp_path, syslog_input("udp", port, tag="app.${ident}"), outputs=[nginx, other]
    )
    agent = start_agent(config)
    for ident in ("nginx", "redis", "api", "unrouted"):
        _logger("-n", "127.0.0.1", "-P", str(port), "-d", "-t", ident, f"from {ident}")
    _wait_records(tmp_path / "nginx.ndjson", 1)
    others = _wait_records(tmp_path / "other.ndjson", 2)
    assert {r["ident"] for r in read_ndjson(tmp_path / "nginx.ndjson")} == {"nginx"}
    assert {r["ident"] for r in others} == {"redis", "api"}
    wait_for(lambda: agent.metric("router_dropped_records_total", reason="no_route") == 1)


def test_sigterm_flushes_and_exits_zero(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(
        agent_toml(tmp_path, syslog_input("tcp", port), buffer={"flush_interval": "60s"})
    )
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"".join(b"<13>Nov 29 21:00:00 host app: line %d\n" % i for i in range(500)))
    wait_for(lambda: agent.metric("input_records_total") == 500)
    assert read_ndjson(tmp_path / "out.ndjson") == []  # still in the open chunk
    assert agent.stop() == 0
    assert len(read_ndjson(tmp_path / "out.ndjson")) == 500


def test_the_end_of_a_burst_goes_out_without_waiting_for_flush_interval(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """Two batches, then silence: the input paused, so its chunk is sealed and delivered long
    before the hour-long ``flush_interval`` (the housekeeping sleeps until the buffer's
    ``next_seal``)."""
    port = free_port()
    agent = start_agent(
        agent_toml(tmp_path, syslog_input("tcp", port), buffer={"flush_interval": "1h"})
    )
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for sent in (100, 200):
            conn.sendall(b"".join(b"<13>Nov 29 21:00:00 host app: %d\n" % i for i in range(100)))
            wait_for(lambda: agent.metric("input_records_total") == sent)  # noqa: B023
        records = _wait_records(tmp_path / "out.ndjson", 200)
    assert len(records) == 200
    assert agent.metric("output_chunks_total") == 1


def test_metrics_count_records_in_and_out(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    agent = start_agent(agent_toml(tmp_path, syslog_input("udp", port, name="udp-in")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(20):
            sock.sendto(b"<14>Nov 29 21:00:00 host app: n=%d" % i, ("127.0.0.1", port))
    wait_for(lambda: agent.metric("output_records_total", name="file.0") == 20)
    families = {f.name: f for f in text_string_to_metric_families(agent.metrics_text())}
    records_in = families["audit_agent_input_records"].samples
    assert [(s.labels, s.value) for s in records_in] == [({"name": "udp-in", "type": "syslog"}, 20)]
    assert families["audit_agent_output_request_seconds"].type == "histogram"
    assert "audit_agent_buffer_chunks" in families


def test_embedded_default_config_runs_and_prints_to_stdout(tmp_path: Path) -> None:
    udp, http = free_port(socket.SOCK_DGRAM), free_port()
    env = agent_env(AGENT_UDP_LISTEN=f"127.0.0.1:{udp}", AGENT_HTTP_LISTEN=f"127.0.0.1:{http}")
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent"],
            env=env,
            stdout=out,
            stderr=err,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        wait_for(lambda: b"listening on" in (tmp_path / "err").read_bytes(), timeout=30)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            deadline = time.monotonic() + 20
            while b"hello default" not in (tmp_path / "out").read_bytes():
                assert time.monotonic() < deadline, (tmp_path / "err").read_text()
                sock.sendto(b"<13>Nov 29 21:00:00 host app: hello default", ("127.0.0.1", udp))
                time.sleep(0.3)
        log = (tmp_path / "err").read_text()
        assert f"127.0.0.1:{udp}" in log and "syslog.sock" in log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0


def test_sighup_reloads_config_and_keeps_running_on_a_bad_one(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, syslog_input("tcp", port)))

    def send(text: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(text)

    send(b"<13>Nov 29 21:00:00 host app: before reload\n")
    _wait_records(tmp_path / "out.ndjson", 1)

    agent.config_path.write_text(
        agent.config_path.read_text().replace("out.ndjson", "after.ndjson")
    )
    os.kill(agent.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloading" in agent.log())
    wait_for(agent.ready)
    wait_for(lambda: agent.log().count("agent running:") >= 2)
    send(b"<13>Nov 29 21:00:00 host app: after reload\n")
    after = _wait_records(tmp_path / "after.ndjson", 1)
    assert after[0]["message"] == "after reload"

    agent.config_path.write_text(agent.config_path.read_text() + "\nbogus_key = 1\n")
    os.kill(agent.pid, signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in agent.log())
    assert "bogus_key: unknown key" in agent.log()
    send(b"<13>Nov 29 21:00:00 host app: still running\n")
    wait_for(lambda: len(read_ndjson(tmp_path / "after.ndjson")) == 2)
    assert agent.stop() == 0
