"""Issue "buffer", full buffer with ``when_full = "drop_oldest"``, with the agent as a real process:
the file output is down and ``max_bytes`` small; a TCP sender sends far more than fits. Ingestion
never blocks (the sender finishes while the output is still down, the agent stays ready, no
backpressure pause); the oldest sealed chunks are deleted, logged and counted in
``buffer_dropped_records_total{reason="drop_oldest"}``; the chunk files on disk stay bounded. After
the output recovers, what arrives plus what was counted as dropped is exactly what was sent, the
newest records are among what arrived and only older ones are missing."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import PATIENT_OUTPUT, agent_toml, file_output, syslog_input
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_lines, numbers_in

pytestmark = pytest.mark.slow

TOTAL = 40_000
CHUNK_BYTES = 256 * 1024
MAX_BYTES = 2 * 1024 * 1024
"""Several chunks fit in the buffer. A TCP read (one batch, never split) can be up to 256 KiB: a
max_bytes of about one batch would leave nothing but the chunk in flight after each drop."""
DROP_LOG = re.compile(r"dropping oldest chunk (\S+) \(tag '[^']*', (\d+) records\)")


def test_drop_oldest_never_blocks_and_counts_every_record_it_drops(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail (ENOTDIR)")
    out = blocker / "out.ndjson"
    buffer = {
        "type": "disk",
        "chunk_bytes": CHUNK_BYTES,
        "max_bytes": MAX_BYTES,
        "when_full": "drop_oldest",
    }
    config = agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="app", name="tcp-in"),
        buffer=buffer,
        outputs=[file_output(out, **{**PATIENT_OUTPUT, "retry_max": "300ms"})],
    )
    agent = start_agent(config)
    sent = threading.Event()

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for first in range(0, TOTAL, 500):
                conn.sendall(numbered_lines(first, first + 500))
        sent.set()

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(60)
    # Ingestion did not wait for the output: everything was sent and taken while it is down.
    assert sent.is_set(), "the sender was held back although when_full = drop_oldest"
    wait_for(lambda: agent.metric("input_records_total", name="tcp-in") == TOTAL, timeout=30)
    assert agent.metric("input_backpressure_pauses_total") == 0
    assert agent.readyz()[0] == 200, agent.readyz()
    assert agent.metric("output_retries_total") >= 1
    assert not out.exists()
    dropped = agent.metric("buffer_dropped_records_total", reason="drop_oldest")
    assert dropped > TOTAL // 2  # ~10 MB sent into a 2 MiB buffer
    assert agent.metric("buffer_dropped_bytes_total", reason="drop_oldest") > 0
    # What is left on disk is bounded by max_bytes (plus the open chunk, plus per-record framing).
    chunk_files = list((tmp_path / "data" / "chunks").glob("*.chunk"))
    on_disk = sum(path.stat().st_size for path in chunk_files)
    assert on_disk <= 1.1 * (MAX_BYTES + CHUNK_BYTES), (on_disk, len(chunk_files))
    # Every dropped chunk was logged by id with its record count; the counts add up.
    log = (agent.workdir / "agent.log").read_text()
    logged = DROP_LOG.findall(log)
    assert logged and len({chunk_id for chunk_id, _ in logged}) == len(logged)
    assert sum(int(records) for _, records in logged) == dropped

    blocker.unlink()  # the output recovers
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=60)
    arrived = numbers_in(out)
    assert max(arrived.values()) == 1, "no duplicates without a crash"
    assert agent.metric("buffer_dropped_records_total", reason="drop_oldest") == dropped
    assert len(arrived) + dropped == TOTAL
    assert set(arrived) <= set(range(TOTAL))
    # Only old records were dropped: the newest ones all arrived. Dropping stops as soon as the
    # buffer fits, so what it keeps besides the chunk in flight is at least max_bytes less the
    # chunk in flight and the last chunk dropped: the newest records of that size.
    line_bytes = out.stat().st_size / len(arrived)
    largest_chunk = max(CHUNK_BYTES, max(int(records) for _, records in logged) * line_bytes)
    newest = int((MAX_BYTES - 2 * largest_chunk) / line_bytes)
    assert newest > 1000
    assert set(range(TOTAL - newest, TOTAL)) <= set(arrived)
    print(f"\ndrop_oldest: {int(dropped)} dropped in {len(logged)} chunks, {len(arrived)} arrived")
