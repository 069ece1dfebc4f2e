"""SIGHUP against the real agent process: a reload never ends the process, whatever is wrong with
the new config; inputs whose config did not change keep their sockets and open connections (TCP,
unix_stream, RELP) and their UDP socket; counters go on; and under load, with a reload every
second alternating valid and invalid configs, no TCP or RELP record is lost."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import PATIENT_OUTPUT, Table, agent_toml, file_output
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_line, numbers_in
from tests.peers.senders import RelpSender, TcpSender, UdpSender


def _config(
    tmp_path: Path,
    inputs: list[Table],
    retry_base: str = "50ms",
    data_dir: Path | None = None,
    buffer: Table | None = None,
    buffer_type: str = "disk",
) -> str:
    sync = "batch" if buffer_type == "disk" else "none"
    output = {**PATIENT_OUTPUT, "retry_base": retry_base}
    return agent_toml(
        tmp_path,
        *inputs,
        agent={"grace_period": "5s"},
        buffer={"type": buffer_type, "sync": sync, "chunk_bytes": "256KiB", **(buffer or {})},
        outputs=[file_output(tmp_path / "out.ndjson", **output)],
        data_dir=data_dir,
    )


def _input(name: str, mode: str, where: str, tag: str | None = None) -> list[Table]:
    """One input, in a list: inputs add up with ``+``."""
    key = "path" if mode.startswith("unix") else "listen"
    return [{"type": "syslog", "name": name, "mode": mode, key: where, "tag": tag or name}]


def _write(agent: AgentProcess, config: str) -> None:
    """The new config, on the agent's HTTP port (which ``AgentProcess`` chose)."""
    http = f'http_listen = "127.0.0.1:{agent.http_port}"'
    if "http_listen" not in config:
        config = config.replace("[agent]", f"[agent]\n{http}", 1)
    agent.config_path.write_text(config)


def _hup(agent: AgentProcess, marker: str) -> None:
    """SIGHUP, then wait until the agent logged ``marker`` once more than before."""
    before = agent.log_path.read_text().count(marker)
    os.kill(agent.pid, signal.SIGHUP)
    wait_for(lambda: agent.log_path.read_text().count(marker) > before, timeout=30)


def _alive(agent: AgentProcess) -> None:
    assert agent.process is not None
    assert agent.process.poll() is None, f"the agent exited on a reload:\n{agent.log()}"


# ------------------------------------------------------------------------ connections kept


@pytest.mark.parametrize(
    ("mode", "buffer"), [("tcp", "disk"), ("unix_stream", "disk"), ("tcp", "memory")]
)
def test_unchanged_stream_input_keeps_its_open_connection_across_reloads(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], mode: str, buffer: str
) -> None:
    """A connection opened before three reloads (the output changes each time) stays open:
    lines written on it before, between and after arrive, and the agent never closed it."""
    where = str(tmp_path / "in.sock") if mode == "unix_stream" else f"127.0.0.1:{free_port()}"
    inputs = _input("in", mode, where)
    agent = start_agent(_config(tmp_path, inputs, buffer_type=buffer))
    if mode == "unix_stream":
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(where)
    else:
        conn = socket.create_connection(("127.0.0.1", int(where.rsplit(":", 1)[1])))
    out = tmp_path / "out.ndjson"
    with conn:
        conn.sendall(numbered_line(0))
        wait_for(lambda: 0 in numbers_in(out))
        for n in range(1, 4):
            _write(agent, _config(tmp_path, inputs, retry_base=f"{50 + n}ms", buffer_type=buffer))
            _hup(agent, "agent running:")
            conn.sendall(numbered_line(n))
            # wait_for returns before the loop moves on: the lambda sees this n (B023).
            wait_for(lambda: n in numbers_in(out))  # noqa: B023
        conn.settimeout(0.2)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # neither EOF nor a reset: the agent kept the connection
    assert "kept with their connections: in;" in agent.log()
    assert set(numbers_in(out)) == {0, 1, 2, 3}
    _alive(agent)


def test_a_changed_stream_input_submits_what_it_read_before_the_old_buffer_closes(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The input's tag changes: it restarts, closing its connections. A message the agent had
    read but not yet framed (no newline yet) goes to the buffer when the connection closes, and
    that must happen before the old pipeline's buffer closes."""
    port = free_port()
    agent = start_agent(_config(tmp_path, _input("in", "tcp", f"127.0.0.1:{port}", tag="a")))
    out = tmp_path / "out.ndjson"
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(numbered_line(0) + numbered_line(1).rstrip(b"\n"))
        wait_for(lambda: 0 in numbers_in(out))
        wait_for(
            lambda: agent.metric("input_bytes_total", name="in") == 2 * len(numbered_line(0)) - 1
        )
        _write(agent, _config(tmp_path, _input("in", "tcp", f"127.0.0.1:{port}", tag="b")))
        _hup(agent, "agent running:")
        assert conn.recv(100) == b""  # the agent closed it
    wait_for(lambda: 1 in numbers_in(out))
    assert "restarted or started: in;" in agent.log()


def _udp_inode(pid: int, port: int) -> str:
    """The inode of the UDP socket bound to ``port`` in the agent's network namespace."""
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return fields[9]
    raise AssertionError(f"no UDP socket on port {port}")


def test_unchanged_udp_input_stays_bound_and_a_changed_one_is_restarted(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    kept_port, changed_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)

    def inputs(tag: str) -> list[Table]:
        return _input("kept", "udp", f"127.0.0.1:{kept_port}") + _input(
            "changed", "udp", f"127.0.0.1:{changed_port}", tag
        )

    agent = start_agent(_config(tmp_path, inputs("a")))
    kept, changed = _udp_inode(agent.pid, kept_port), _udp_inode(agent.pid, changed_port)
    _write(agent, _config(tmp_path, inputs("b")))
    _hup(agent, "agent running:")
    assert _udp_inode(agent.pid, kept_port) == kept, "the unchanged UDP socket was re-bound"
    assert _udp_inode(agent.pid, changed_port) != changed
    assert "restarted or started: changed;" in agent.log()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"<14>Nov 29 21:00:00 host udp: seq=7 end", ("127.0.0.1", kept_port))
    wait_for(lambda: 7 in numbers_in(tmp_path / "out.ndjson"))


# ------------------------------------------------------------------ reloads never kill it


def _one_running_tcp_agent(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> tuple[AgentProcess, list[Table], socket.socket]:
    port = free_port()
    inputs = _input("in", "tcp", f"127.0.0.1:{port}")
    agent = start_agent(_config(tmp_path, inputs))
    conn = socket.create_connection(("127.0.0.1", port))
    return agent, inputs, conn


@pytest.mark.parametrize(
    "problem",
    ["unknown_key", "port_taken", "max_bytes_below_chunk_bytes", "bad_match_regex", "http_taken"],
)
def test_a_reload_that_cannot_happen_is_logged_and_the_running_pipeline_goes_on(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], problem: str
) -> None:
    agent, inputs, conn = _one_running_tcp_agent(tmp_path, start_agent)
    out = tmp_path / "out.ndjson"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    base = _config(tmp_path, inputs)
    bad = {
        "unknown_key": base + "\nbogus_key = 1\n",
        "port_taken": _config(tmp_path, inputs + _input("new", "tcp", f"127.0.0.1:{busy}")),
        "max_bytes_below_chunk_bytes": _config(tmp_path, inputs, buffer={"max_bytes": "64KiB"}),
        "bad_match_regex": base.replace('match = "*"', 'match_regex = "(["'),
        "http_taken": base.replace("[agent]", f'[agent]\nhttp_listen = "127.0.0.1:{busy}"'),
    }[problem]
    _write(agent, bad)
    with taken, conn:
        conn.sendall(numbered_line(0))
        _hup(agent, "config not reloaded")
        _alive(agent)
        conn.sendall(numbered_line(1))
        wait_for(lambda: {0, 1} <= set(numbers_in(out)))
        assert agent.ready()
        # The previous config still runs; a valid one afterwards is taken.
        _write(agent, _config(tmp_path, inputs, retry_base="60ms"))
        _hup(agent, "agent running:")
        conn.sendall(numbered_line(2))
        wait_for(lambda: 2 in numbers_in(out))
    reason = re.findall(r"config not reloaded.*", agent.log_path.read_text())
    assert reason and "Traceback" not in agent.log_path.read_text(), agent.log()
    if problem == "port_taken":
        assert str(busy) in reason[0]
        assert 'name="new"' not in agent.metrics_text()  # no series for what never ran
    _alive(agent)


def test_a_new_data_dir_that_cannot_open_leaves_the_previous_buffer_running(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The new config is valid but its data_dir is locked by another agent: the previous
    buffer and outputs run on behind the same inputs; nothing is lost."""
    agent, inputs, conn = _one_running_tcp_agent(tmp_path, start_agent)
    other = tmp_path / "other"
    other.mkdir()
    out = tmp_path / "out.ndjson"
    _write(agent, _config(tmp_path, inputs, data_dir=other))
    with conn, open(other / "buffer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as another agent running on that data_dir
        conn.sendall(numbered_line(0))
        _hup(agent, "config not reloaded")
        conn.sendall(numbered_line(1))
        wait_for(lambda: {0, 1} <= set(numbers_in(out)))
        assert agent.ready()
    assert "in use by another running agent" in agent.log()
    _alive(agent)


def test_counters_go_on_across_a_reload(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    agent, inputs, conn = _one_running_tcp_agent(tmp_path, start_agent)
    with conn:
        conn.sendall(b"".join(numbered_line(n) for n in range(5)))
        wait_for(lambda: agent.metric("output_records_total") == 5)
        _write(agent, _config(tmp_path, inputs, retry_base="70ms"))
        _hup(agent, "agent running:")
        assert agent.metric("input_records_total", name="in") == 5
        assert agent.metric("output_records_total") == 5
        conn.sendall(numbered_line(5))
        wait_for(lambda: agent.metric("output_records_total") == 6)
    assert agent.metric("input_records_total", name="in") == 6


# ----------------------------------------------------------------------- reloads under load


@pytest.mark.slow
def test_reload_every_second_under_load_loses_no_tcp_or_relp_record(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """30 s of SIGHUP every second, alternating valid configs (the output changes; an extra UDP
    input changes its tag, so it restarts) and invalid ones (an unknown key, a port that is
    taken, max_bytes below chunk_bytes), while TCP, RELP and UDP senders run: the agent stays
    up, its TCP and RELP connections are never closed, every TCP and RELP number arrives."""
    tcp, relp, udp, extra = free_port(), free_port(), free_port(socket.SOCK_DGRAM), free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    inputs = (
        _input("tcp", "tcp", f"127.0.0.1:{tcp}")
        + _input("relp", "relp", f"127.0.0.1:{relp}")
        + _input("udp", "udp", f"127.0.0.1:{udp}")
    )

    def valid(n: int) -> str:
        return _config(
            tmp_path,
            inputs + _input("extra", "udp", f"127.0.0.1:{extra}", tag=f"extra{n % 2}"),
            retry_base=f"{50 + n % 2}ms",
        )

    invalid = [
        valid(0) + "\nbogus_key = 1\n",
        _config(tmp_path, inputs + _input("new", "tcp", f"127.0.0.1:{busy}")),
        _config(tmp_path, inputs, buffer={"max_bytes": "64KiB"}),
    ]
    agent = start_agent(valid(0))
    out = tmp_path / "out.ndjson"
    tcp_sender, relp_sender, udp_sender = TcpSender(tcp), RelpSender(relp), UdpSender(udp)
    senders = [tcp_sender, relp_sender, udp_sender]
    for sender in senders:
        sender.start()
    reloads = 0
    with taken:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = valid(reloads // 2 + 1) if reloads % 2 == 0 else invalid[reloads // 2 % 3]
                _write(agent, text)
                os.kill(agent.pid, signal.SIGHUP)
                reloads += 1
                time.sleep(1)
                _alive(agent)
        finally:
            for sender in senders:
                sender.stop()
    for sender in senders:
        assert not sender.errors, sender.errors
    log = agent.log_path.read_text()
    assert log.count("SIGHUP: reloading") >= 10, agent.log()
    assert log.count("config not reloaded") >= 10, agent.log()

    def tcp_numbers() -> set[int]:
        return {n for n, _ in _by_app(out, b"tcp")}

    wait_for(lambda: len(tcp_numbers()) >= tcp_sender.sent, timeout=60)
    wait_for(lambda: len({n for n, _ in _by_app(out, b"relp")}) >= relp_sender.sent, timeout=60)
    tcp_missing = set(range(tcp_sender.sent)) - tcp_numbers()
    relp_missing = set(range(relp_sender.sent)) - {n for n, _ in _by_app(out, b"relp")}
    udp_arrived = len({n for n, _ in _by_app(out, b"udp")})
    print(
        f"\n{reloads} reloads in 30 s; TCP {tcp_sender.sent} sent, {len(tcp_missing)} lost, "
        f"{tcp_sender.sessions} connections; RELP {relp_sender.sent} sent, "
        f"{len(relp_missing)} lost, {relp_sender.sessions} sessions; "
        f"UDP {udp_sender.sent} sent, {udp_arrived} arrived"
    )
    assert not tcp_missing and not relp_missing
    assert tcp_sender.sessions == 1 and tcp_sender.resets == 0
    assert relp_sender.sessions == 1 and relp_sender.serverclose == 0
    assert agent.metric("input_records_total", name="tcp") >= tcp_sender.sent
    _alive(agent)
    assert agent.stop() == 0


def _by_app(path: Path, app: bytes) -> list[tuple[int, int]]:
    """(number, count) of the numbered lines one sender sent."""
    if not path.exists():
        return []
    pattern = re.compile(rb'"ident":"' + app + rb'".*?seq=(\d+) end')
    counts: dict[int, int] = {}
    for match in pattern.finditer(path.read_bytes()):
        number = int(match.group(1))
        counts[number] = counts.get(number, 0) + 1
    return list(counts.items())
