"""Issue "buffer", RELP crash test: a real rsyslogd forwards 100,000 numbered messages to the agent
with omrelp; the agent (``mode = "relp"``, disk buffer, ``sync = "batch"``) is killed with -9 twice
during the stream and restarted on the same data_dir and port; every number arrives at the output.

Why nothing may be lost: the agent answers a RELP message only after the buffer committed it
(fsynced, with ``sync = "batch"``); rsyslog keeps every unanswered message in its action queue and
resends it when the agent is back (``action.resumeRetryCount="-1"``). What the agent buffered
survives the kill on disk and is delivered after the restart. Duplicates are allowed (at least
once): messages received but not yet answered at a kill, and chunks written to the file but not
yet acknowledged in the buffer, come again.

rsyslog is fed over TCP (imtcp) by this test: a TCP input is flow-controlled, so rsyslog's own
input side cannot drop anything, and its queues are sized for the whole stream.

No ``rebindInterval`` on omrelp: with ``rebindInterval="700"`` both the kill -9 and the SIGTERM
variants lost the unanswered messages at the end of each session that a stop broke (kill -9:
15360-15399 of 30,000; SIGTERM: 7680-7699 and 15360-15399). The agent never appended them, so it
never answered them, and rsyslog 8.2302 did not resend them: it forgets a session's unanswered
window when it rebinds. Without ``rebindInterval`` it resends them (these tests). Do not combine
``rebindInterval`` with omrelp where loss matters.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import PATIENT_OUTPUT, agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_lines, numbers_in
from tests.peers.rsyslog import Rsyslog, available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.rsyslog,
    pytest.mark.skipif(not available(), reason="rsyslogd and logger are needed"),
]

TOTAL = 100_000


def _rsyslog_snippet(tcp_port: int, relp_port: int) -> str:
    return f"""
main_queue(queue.type="LinkedList" queue.size="500000")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}")
module(load="omrelp")
*.* action(type="omrelp" target="127.0.0.1" port="{relp_port}"
           template="RSYSLOG_SyslogProtocol23Format"
           queue.type="LinkedList" queue.size="500000"
           action.resumeRetryCount="-1" action.resumeInterval="1")
"""


def _agent_config(tmp_path: Path, relp_port: int, out: Path, **buffer: object) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("relp", relp_port, tag="relp"),
        agent={"grace_period": "5s"},
        buffer={
            "type": "disk",
            "sync": "batch",
            "chunk_bytes": "512KiB",
            "flush_interval": "300ms",
            **buffer,
        },
        outputs=[file_output(out, **PATIENT_OUTPUT)],
    )


def _send_to_rsyslog(
    port: int, done: threading.Event, errors: list[BaseException], total: int = TOTAL
) -> None:
    try:
        deadline = time.monotonic() + 20
        while True:  # imtcp may still be binding when the imuxsock socket appeared
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with conn:
            for first in range(0, total, 1000):
                conn.sendall(
                    numbered_lines(first, first + 1000, app="relp-app", payload=b"payload")
                )
        done.set()
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def _reloaded(agent: AgentProcess, times: int) -> Callable[[], bool]:
    """The pipeline was rebuilt ``times`` times and the new one runs (and serves metrics)."""

    def check() -> bool:
        log = agent.log_path.read_text()
        return log.count("SIGHUP: reloading") >= times and log.count("agent running:") > times

    return check


def _took(agent: AgentProcess, count: int) -> Callable[[], bool]:
    return lambda: agent.metric("input_records_total") >= count


@pytest.mark.parametrize("stop", ["kill-9", "sigterm", "sighup"])
def test_relp_agent_stopped_twice_during_the_stream_loses_nothing(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], stop: str
) -> None:
    """kill -9 is the crash the issue asks for; SIGTERM is the graceful path (stop reading,
    answer what was committed, ``serverclose``, seal, exit 0), which must lose nothing either;
    SIGHUP replaces the running pipeline by a new one in the same process (the disk buffer
    carries what is unacknowledged across), which must lose nothing either."""
    relp_port, tcp_port = free_port(), free_port()
    out = tmp_path / "out.ndjson"
    config = _agent_config(tmp_path, relp_port, out)
    workdir = tmp_path / "agent"
    agent = start_agent(config, workdir=workdir)
    sent = threading.Event()
    errors: list[BaseException] = []
    stops: list[dict[str, int]] = []
    started = time.monotonic()

    with Rsyslog(tmp_path, _rsyslog_snippet(tcp_port, relp_port)) as peer:
        sender = threading.Thread(target=_send_to_rsyslog, args=(tcp_port, sent, errors))
        sender.start()
        # Kill when this process has taken a share of the stream: ~25% by the first process,
        # then ~25% more by the second; the third runs to the end.
        for round_ in range(2):
            wait_for(_took(agent, TOTAL // 4), timeout=90)
            if stop == "kill-9":
                agent.kill()
            elif stop == "sigterm":
                assert agent.stop() == 0
            else:
                os.kill(agent.pid, signal.SIGHUP)
                wait_for(_reloaded(agent, round_ + 1), timeout=60)
            arrived = numbers_in(out)
            stops.append({"distinct_arrived": len(arrived), "lines": sum(arrived.values())})
            assert len(arrived) < TOTAL, "the stream ended before the kill: nothing was proven"
            if stop != "sighup":
                agent = start_agent(config, workdir=workdir)
            wait_for(agent.ready, timeout=30)
            stops[-1]["recovered_records"] = int(agent.metric("buffer_recovered_records_total"))
        sender.join(120)
        assert not errors, errors
        assert sent.is_set()
        wait_for(lambda: len(numbers_in(out)) >= TOTAL, timeout=120)
        rsyslog_output = peer.output()
    elapsed = time.monotonic() - started

    counts = numbers_in(out)
    missing = sorted(set(range(TOTAL)) - set(counts))
    assert not missing, (
        f"{len(missing)} numbers never arrived, first {missing[:5]}; stops {stops}\n"
        f"{agent.log()}\n{rsyslog_output}"
    )
    assert set(counts) == set(range(TOTAL))
    duplicates = sum(counts.values()) - TOTAL
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    print(
        f"\nRELP {stop} test: {TOTAL} numbers all arrived in {elapsed:.1f}s; "
        f"{duplicates} duplicates ({sum(n > 1 for n in counts.values())} numbers seen more than "
        f"once); at the stops: {stops}"
    )


def test_relp_full_buffer_holds_rsyslog_back_across_a_kill_9(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The output is down and ``max_bytes`` small (``when_full = "block"``): the agent stops
    reading the RELP session when the buffer is full and says it is not ready; rsyslog keeps the
    rest in its queue. Killed -9 while full and restarted (still full: recovery refills it), then
    the output recovers: every number arrives."""
    total = 30_000
    relp_port, tcp_port = free_port(), free_port()
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail (ENOTDIR)")
    out = blocker / "out.ndjson"
    config = _agent_config(tmp_path, relp_port, out, chunk_bytes="64KiB", max_bytes="512KiB")
    workdir = tmp_path / "agent"
    agent = start_agent(config, workdir=workdir)
    sent = threading.Event()
    errors: list[BaseException] = []

    with Rsyslog(tmp_path, _rsyslog_snippet(tcp_port, relp_port)) as peer:
        sender = threading.Thread(
            target=_send_to_rsyslog, args=(tcp_port, sent, errors), kwargs={"total": total}
        )
        sender.start()
        wait_for(lambda: "buffer full" in agent.readyz()[1], timeout=60)
        wait_for(lambda: agent.metric("input_backpressure_pauses_total") >= 1)
        held_back = agent.metric("input_records_total")
        assert held_back < total
        agent.kill()
        # The output recovers while the agent is down (the restarted agent would not say it is
        # ready while its recovered buffer is still full).
        blocker.unlink()
        agent = start_agent(config, workdir=workdir)
        sender.join(120)
        assert not errors, errors
        assert sent.is_set()
        wait_for(lambda: len(numbers_in(out)) >= total, timeout=120)
        rsyslog_output = peer.output()
    counts = numbers_in(out)
    assert set(counts) == set(range(total)), rsyslog_output
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    print(
        f"\nRELP full buffer: {held_back:.0f} taken before the kill, "
        f"{sum(counts.values()) - total} duplicates"
    )
