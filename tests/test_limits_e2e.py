"""Issue 12, section 4: hostile or broken clients cannot exhaust the agent. Each test runs the
real agent (``python -m agent``) on free loopback ports and abuses it the way the review did:
a RELP frame announcing 60 MiB, a RELP client that never reads its answers, transaction numbers
out of sequence, connection floods past ``max_connections`` and past the open-file limit, HTTP
requests with huge headers and idle HTTP connections. Memory is judged by the agent's VmRSS /
VmHWM against generous bounds, never by timing."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import Table, agent_toml, syslog_input
from tests.conftest import free_port, read_ndjson, wait_for
from tests.peers.relp import Client, command

MiB = 1024 * 1024


def _line(text: str) -> bytes:
    return b"<13>1 2026-01-01T00:00:00Z node app - - - " + text.encode()


def _relp_input(port: int) -> Table:
    return syslog_input("relp", port, name="relp", tag="relp")


def _get(agent: AgentProcess, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{agent.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_relp_frame_announcing_60_mib_is_cut_not_buffered(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The review's attack: DATALEN 60 MiB. The agent keeps max_message_bytes of it (flagged
    truncated, the rest counted as discarded), answers, and its peak RSS stays far below the
    frame's size (before: the whole frame and its copies, 436 MiB for 6 such clients)."""
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _relp_input(port)))
    peak_before = _status_kib(agent.pid, "VmHWM")
    client = Client(port)
    client.open()
    size = 60 * MiB
    client.send(b"2 syslog %d <13>app: " % size)
    block = b"z" * MiB
    left = size - len(b"<13>app: ")
    while left:
        piece = block[: min(left, len(block))]
        client.send(piece)
        left -= len(piece)
        if left < size // 2 <= left + len(piece):  # halfway: health checks still answer
            assert _get(agent, "/healthz") == (200, b"ok\n")
    client.send(b"\n")
    assert client.read_frame() == (2, b"rsp", b"200 OK")
    client.send(command(3, "syslog", _line("next")))
    assert client.read_frame() == (3, b"rsp", b"200 OK")
    client.close()
    grown_mib = (_status_kib(agent.pid, "VmHWM") - peak_before) / 1024
    assert grown_mib < 30, f"peak RSS grew by {grown_mib:.0f} MiB for one 60 MiB frame"
    out = tmp_path / "out.ndjson"
    wait_for(lambda: len(read_ndjson(out)) >= 2)
    first, second = read_ndjson(out)
    assert first["truncated"] is True and second["message"] == "next"
    assert agent.metric("input_truncated_total", name="relp") == 1
    assert agent.metric("input_discarded_bytes_total", name="relp") == size - 64 * 1024


def test_relp_client_that_never_reads_its_answers_is_not_read_either(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """A client sends tiny messages as fast as it can and never reads an answer. The agent
    stops reading it once the answers it owes pile up: the client's sends block long before
    it sent everything, and the agent's memory stays bounded."""
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _relp_input(port)))
    rss_before = _status_kib(agent.pid, "VmRSS")
    client = Client(port, receive_buffer=4096)
    client.open()
    client.sock.settimeout(5)
    total = 2_000_000
    batch = 10_000
    sent = 0
    try:
        for first in range(2, total + 2, batch):
            client.send(b"".join(command(n, "syslog", b"x") for n in range(first, first + batch)))
            sent += batch
    except TimeoutError:
        pass
    read_by_agent = agent.metric("input_bytes_total", name="relp")
    grown_mib = (_status_kib(agent.pid, "VmRSS") - rss_before) / 1024
    assert agent.metric("input_backpressure_pauses_total", reason="unread_answers") >= 1
    assert sent < total, "the agent kept reading a client that reads none of its answers"
    # Seen: 8 MB read of the 36 MB sent (the rest waits in the kernel's buffers), RSS +52 MiB
    # (the messages it did read, parsed and buffered). Before: the agent read everything.
    assert read_by_agent < 24 * MiB
    assert grown_mib < 128, f"RSS grew by {grown_mib:.0f} MiB"
    client.close()


def test_relp_duplicate_and_decreasing_txnr_end_the_session(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _relp_input(port)))
    for bad in (2, 1):  # 2: a duplicate of the last one; 1: lower than the last one
        client = Client(port)
        client.open()
        client.send(command(2, "syslog", _line("good")))
        assert client.read_frame() == (2, b"rsp", b"200 OK")
        client.send(command(bad, "syslog", _line("bad")))
        with pytest.raises((EOFError, ConnectionResetError)):
            client.read_frame()
        client.close()
    assert agent.metric("input_framing_errors_total", name="relp") == 2
    wait_for(lambda: len(read_ndjson(tmp_path / "out.ndjson")) >= 2)
    time.sleep(0.5)  # a wrongly accepted "bad" record would be flushed by now
    messages = [r["message"] for r in read_ndjson(tmp_path / "out.ndjson")]
    assert messages == ["good", "good"]
    assert "txnr 2 repeats an earlier one (3 expected)" in agent.log()
    assert "txnr 1 repeats an earlier one (3 expected)" in agent.log()


# ------------------------------------------------------------------------------------- HTTP


def _http_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_http_oversized_request_headers_get_431(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(agent_toml(tmp_path, _relp_input(free_port())))
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 16384 + b"\r\n\r\n"
    answer = _http_exchange(agent.http_port, big)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    small = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _http_exchange(agent.http_port, small).startswith(b"HTTP/1.1 200 OK")
    assert agent.metric("http_rejected_connections_total", reason="header_too_large") == 1


def test_idle_http_connections_do_not_starve_health_checks(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """400 clients connect to the HTTP port and send nothing, with the agent limited to 256
    open files: the agent keeps at most 64 HTTP connections (the oldest idle one makes room
    for a newcomer), so it neither runs out of descriptors nor stops answering probes."""
    agent = start_agent(agent_toml(tmp_path, _relp_input(free_port())), nofile=(256, 256))
    idle = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", agent.http_port), timeout=10))
        for _ in range(3):
            assert _get(agent, "/healthz") == (200, b"ok\n")
        assert _get(agent, "/readyz")[0] == 200
        assert agent.metric("http_rejected_connections_total", reason="evicted_idle") > 0
    finally:
        for sock in idle:
            sock.close()


# ------------------------------------------------------------------- connections and files


def _tcp_input(port: int, **keys: object) -> Table:
    # Merged here, not passed on as ``**keys``: mypy cannot tell ``keys`` holds no ``path``.
    return {**syslog_input("tcp", port, name="tcp", tag="tcp"), **keys}


def _refused(sock: socket.socket) -> bool:
    """The agent closed this connection without reading from it."""
    sock.settimeout(10)
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_max_connections_refusals_are_counted_logged_and_shown_in_readyz(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _tcp_input(port, max_connections=3)))
    address = ("127.0.0.1", port)
    kept = [socket.create_connection(address) for _ in range(3)]
    wait_for(lambda: agent.metric("input_active_connections", name="tcp") == 3)
    status, body = agent.readyz()
    assert status == 503 and "input tcp at max_connections (3)" in body, body
    extra = [socket.create_connection(address) for _ in range(5)]
    assert all(_refused(sock) for sock in extra)
    wait_for(
        lambda: agent.metric(
            "input_connections_rejected_total", name="tcp", reason="max_connections"
        )
        == 5
    )
    # Logged once for the storm (rate-limited), with where the count is.
    assert agent.log().count("tcp: refusing a connection from 127.0.0.1:") == 1
    assert 'input_connections_rejected_total{reason="max_connections"}' in agent.log()
    kept[0].sendall(b"<13>1 2026-01-01T00:00:00Z node app - - - still served\n")
    for sock in kept + extra:
        sock.close()
    wait_for(lambda: agent.readyz()[0] == 200)
    wait_for(lambda: len(read_ndjson(tmp_path / "out.ndjson")) == 1)


def test_soft_open_file_limit_is_raised_to_the_hard_limit(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    config = agent_toml(tmp_path, _tcp_input(free_port()), agent={"log_level": "debug"})
    agent = start_agent(config, nofile=(256, 2048))
    limits = Path(f"/proc/{agent.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == ["2048", "2048"], line
    assert "open-file limit (RLIMIT_NOFILE): soft 256 -> 2048, hard 2048" in agent.log()


def test_connection_flood_past_the_open_file_limit_is_refused_and_counted(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """200 connections with the agent limited to 100 open files and max_connections at its
    default (1024): before, uvloop accepted and closed the excess silently (nothing counted)
    and every descriptor went to connections. Now connections past the open-file budget are
    refused and counted, /readyz says why, health checks answer, and once the flood is gone the
    input serves again."""
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _tcp_input(port)), nofile=(100, 100))
    address = ("127.0.0.1", port)
    flood = []
    try:
        for _ in range(200):
            flood.append(socket.create_connection(address, timeout=10))
        wait_for(
            lambda: agent.metric("input_active_connections", name="tcp")
            + agent.metric("input_connections_rejected_total", name="tcp")
            >= 200,
            timeout=30,
        )
        rejected = agent.metric("input_connections_rejected_total", name="tcp")
        assert rejected == agent.metric(
            "input_connections_rejected_total", name="tcp", reason="open_files"
        ) + agent.metric("input_connections_rejected_total", name="tcp", reason="accept_error")
        assert rejected >= 100
        assert _get(agent, "/healthz") == (200, b"ok\n")
        status, body = agent.readyz()
        assert status == 503 and "open-file limit" in body, body
        assert "refusing a connection" in agent.log()
    finally:
        for sock in flood:
            sock.close()
    wait_for(lambda: agent.readyz()[0] == 200)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"<13>1 2026-01-01T00:00:00Z node app - - - after the flood\n")
    wait_for(lambda: len(read_ndjson(tmp_path / "out.ndjson")) == 1)


def test_accept_failing_for_want_of_descriptors_is_counted_and_logged(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """Idle HTTP connections take descriptors the connection budget counted on, so accepting
    a TCP connection fails with EMFILE. uvloop would accept and close it silently; the input's
    own accept loop counts it (reason accept_error), logs it, leaves the connection waiting in
    the backlog and tries again shortly: once descriptors are free it is served."""
    port = free_port()
    agent = start_agent(agent_toml(tmp_path, _tcp_input(port)), nofile=(60, 60))
    address = ("127.0.0.1", port)
    files = Path(f"/proc/{agent.pid}/fd")
    before = len(list(files.iterdir()))
    # 35 idle connections leave fewer descriptors than the 30 connections below need, whatever
    # the agent holds at start (with 25 the margin hung on that count: at 5 descriptors the
    # connection budget refused the 30th before any accept could fail).
    idle = [socket.create_connection(("127.0.0.1", agent.http_port)) for _ in range(35)]
    wait_for(lambda: len(list(files.iterdir())) >= before + 33)  # the agent accepted them
    clients = []
    try:
        for _ in range(30):
            clients.append(socket.create_connection(address, timeout=10))
        # No descriptor is left for the HTTP server either: watch the log, not /metrics.
        wait_for(lambda: "accept failed: [Errno 24] Too many open files" in agent.log())
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: len(list(files.iterdir())) < 55)  # the agent closed the idle ones
    wait_for(
        lambda: agent.metric("input_connections_rejected_total", name="tcp", reason="accept_error")
        >= 1
    )
    # Descriptors are free again: the connections left in the backlog are accepted and read.
    for number, sock in enumerate(clients):
        sock.sendall(b"<13>1 2026-01-01T00:00:00Z node app - - - waited %d\n" % number)
    wait_for(lambda: len(read_ndjson(tmp_path / "out.ndjson")) == 30, timeout=30)
    for sock in clients:
        sock.close()


def test_http_client_that_never_finishes_its_headers_is_timed_out(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """Slowloris: a request whose headers never end is closed after the request timeout (5 s)
    and counted."""
    agent = start_agent(agent_toml(tmp_path, _relp_input(free_port())))
    with socket.create_connection(("127.0.0.1", agent.http_port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            sock.sendall(b"X-Slow: 1\r\n")
            closed = sock.recv(100) == b""
        except ConnectionResetError:
            closed = True
    assert closed
    assert agent.metric("http_rejected_connections_total", reason="timeout") == 1
