"""The agent's own log, from the real process: UTC times that say so, useful debug lines, one line
per dead letter, repeated warnings rate-limited with a count of what was suppressed."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from agent.logs import RepeatFilter
from bench.harness import AgentProcess
from tests.agent_config import Table, agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_line, numbers_in


def _config(
    tmp_path: Path, port: int, out: Path, agent: Table | None = None, **output: object
) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, name="in"),
        agent=agent,
        outputs=[file_output(out, name="out", **output)],
    )


def _lines(agent: AgentProcess) -> list[str]:
    return agent.log_path.read_text().splitlines()


def test_plain_log_lines_are_utc_and_say_so(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    agent = start_agent(_config(tmp_path, free_port(), tmp_path / "out.ndjson"))
    first = _lines(agent)[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO agent: ", first), first


def test_debug_level_tells_connections_chunks_and_what_a_reload_kept(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port, out = free_port(), tmp_path / "out.ndjson"
    agent = start_agent(_config(tmp_path, port, out, agent={"log_level": "debug"}))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(numbered_line(1))
        wait_for(lambda: 1 in numbers_in(out))
        os.kill(agent.pid, signal.SIGHUP)
        wait_for(lambda: "kept across the reload with 1 open connections" in agent.log())
    wait_for(lambda: "closed (0 open)" in agent.log())
    log = agent.log_path.read_text()
    assert re.search(r"in: connection from 127\.0\.0\.1:\d+ opened \(1 open\)", log), log
    assert re.search(r"chunk \S+ sealed: tag 'syslog', 1 records", log), log
    assert re.search(r"output out: chunk \S+ \(1 records, \d+ bytes\) acknowledged", log), log
    assert "SIGHUP: inputs kept with their connections: in;" in log


def test_one_dead_letter_is_one_log_line(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail")
    port = free_port()
    agent = start_agent(_config(tmp_path, port, blocker / "out.ndjson", retry_limit=0))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(numbered_line(1))
    wait_for(lambda: agent.metric("output_dead_lettered_records_total") == 1)
    lines = [line for line in _lines(agent) if "dead-letter" in line]
    assert len(lines) == 1, lines
    assert "out" in lines[0] and "gave up after 1 attempts" in lines[0]


def test_a_repeated_warning_is_written_once_then_counted(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """An output that fails every few milliseconds for seconds: one "retrying" line, not one per
    attempt."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail")
    port = free_port()
    agent = start_agent(
        _config(
            tmp_path,
            port,
            blocker / "out.ndjson",
            retry_base="5ms",
            retry_max="20ms",
            retry_limit="unlimited",
        )
    )
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(numbered_line(1))
    wait_for(lambda: agent.metric("output_retries_total") >= 50, timeout=30)
    retrying = [line for line in _lines(agent) if "retrying in" in line]
    assert len(retrying) == 1, retrying[:5]


def test_repeat_filter_counts_what_it_suppressed() -> None:
    now = [0.0]
    repeat = RepeatFilter(window=10.0, clock=lambda: now[0])

    def record(
        message: str, level: int = logging.WARNING, host: str = "h1", repeats: bool = True
    ) -> logging.LogRecord:
        made = logging.LogRecord("agent.output.es", level, __file__, 1, message, (host,), None)
        if repeats:
            made.repeats = True  # what ``extra=REPEATS`` sets
        return made

    assert repeat.filter(record("host %s ejected"))
    for _ in range(5):
        now[0] += 1
        assert not repeat.filter(record("host %s ejected"))
        assert repeat.filter(record("an error %s", logging.ERROR))  # errors always go out
    assert repeat.filter(record("another warning %s"))
    assert repeat.filter(record("host %s ejected", host="h2"))  # another host: its own line
    now[0] = 12.0
    after = record("host %s ejected")
    assert repeat.filter(after)
    assert after.getMessage() == "host h1 ejected (5 similar lines suppressed in the last 12s)"
    now[0] = 13.0
    assert not repeat.filter(record("host %s ejected"))
    # A line not marked as one that may repeat always goes out.
    assert repeat.filter(record("host %s ejected", repeats=False))
