"""A disk that refuses writes (here: a file-size limit on the agent process, which makes the
kernel answer EFBIG as it answers ENOSPC on a full disk) loses nothing a stream sender sent:
the input holds back and retries, /readyz says why, the log says so, and once writes work again
every record arrives. Datagrams that cannot be buffered are counted as dropped."""

from __future__ import annotations

import resource
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_datagram, numbered_lines, numbers_in


def test_write_errors_hold_streams_back_and_lose_nothing(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    out = tmp_path / "out.ndjson"
    config = agent_toml(
        tmp_path,
        syslog_input("tcp", tcp_port, name="tcp-in"),
        syslog_input("udp", udp_port, name="udp-in"),
        buffer={"chunk_bytes": "8MiB"},
        outputs=[file_output(out, retry_base="50ms", retry_max="200ms")],
    )
    agent = start_agent(config)
    limit = 256 * 1024  # no file of the agent's may grow past this: chunk files hit it first
    # Only the soft limit: raising it back needs no privilege.
    resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    total = 20_000  # ~3.8 MB over one TCP connection
    lines = numbered_lines(0, total)
    sender = threading.Thread(
        target=lambda: socket.create_connection(("127.0.0.1", tcp_port)).sendall(lines)
    )
    sender.start()
    wait_for(lambda: "cannot write to the buffer" in agent.log(), timeout=30)
    status, body = agent.readyz()
    assert status == 503 and "buffer not writable" in body, body
    assert agent.metric("input_retried_records_total", name="tcp-in", reason="buffer_error") > 0

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(50):
            sock.sendto(numbered_datagram(500_000 + n), ("127.0.0.1", udp_port))

    resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    sender.join(60)
    wait_for(lambda: sum(1 for n in numbers_in(out) if n < total) == total, timeout=120)
    wait_for(lambda: agent.readyz()[0] == 200, timeout=30)
    assert "buffer writable again" in agent.log()

    udp = agent.metric("input_records_total", name="udp-in")
    udp_dropped = agent.metric("input_dropped_records_total", name="udp-in")
    kernel = agent.metric("input_kernel_drops_total", name="udp-in")
    wait_for(lambda: sum(1 for n in numbers_in(out) if n >= 500_000) == udp)
    assert udp + udp_dropped + kernel == 50
