"""The whole agent as a process: syslog over TCP -> buffer -> S3 output -> moto_server.
Every record sent ends up in exactly one object, after a clean stop and after a kill -9."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, syslog_input
from tests.conftest import free_port, wait_for
from tests.peers.moto import FAKE_CREDENTIALS_ENV, MotoServer
from tests.s3_helpers import multipart_uploads, stored

PIPELINE = ("agent.buffer.factory", "agent.filters.chain", "parsers.syslog")
MISSING = [name for name in PIPELINE if importlib.util.find_spec(name) is None]

pytestmark = [
    pytest.mark.s3,
    pytest.mark.skipif(bool(MISSING), reason=f"pipeline not merged yet: {', '.join(MISSING)}"),
]


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoServer]:
    for key, value in FAKE_CREDENTIALS_ENV.items():
        monkeypatch.setenv(key, value)  # inherited by the agent process
    with MotoServer(log_path=tmp_path / "moto.log") as server:
        server.client().create_bucket(Bucket="e2e")
        yield server


def config(tmp_path: Path, port: int, moto: MotoServer) -> str:
    archive = {
        "type": "s3",
        "name": "archive",
        "match": "*",
        "bucket": "e2e",
        "endpoint_url": moto.url,
        "region": "us-east-1",
        "addressing_style": "path",
        "upload_timeout": "1s",
        "request_timeout": "10s",
        "retry_base": "200ms",
        "retry_max": "1s",
    }
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="syslog"),
        agent={"node_name": "node-e2e", "grace_period": "30s"},
        outputs=[archive],
    )


def send_lines(port: int, first: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        payload = b"".join(
            b"<14>1 2024-05-01T10:00:00.000Z web-1 app 42 - - e2e-msg-%d\n" % n
            for n in range(first, first + count)
        )
        sock.sendall(payload)


def messages(moto: MotoServer) -> Counter[str]:
    objects = stored(moto.client(), "e2e")
    return Counter(str(r.get("message")) for records in objects.values() for r in records)


def expected(count: int) -> Counter[str]:
    return Counter(f"e2e-msg-{n}" for n in range(count))


def test_syslog_to_s3_every_record_once(
    moto: MotoServer, tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(config(tmp_path, port, moto))
    send_lines(port, 0, 3000)
    wait_for(lambda: sum(messages(moto).values()) >= 3000, timeout=60, interval=0.5)
    assert agent.metric("output_s3_objects_total") >= 1
    assert agent.stop() == 0
    assert messages(moto) == expected(3000)
    assert multipart_uploads(moto.client(), "e2e") == []
    keys = list(stored(moto.client(), "e2e"))
    assert all(k.startswith("logs/syslog/") and "/node-e2e-" in k for k in keys), keys
    assert all(k.endswith(".ndjson.gz") for k in keys)


def test_kill_9_and_restart_loses_and_duplicates_nothing(
    moto: MotoServer, tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    text = config(tmp_path, port, moto)
    agent = start_agent(text, workdir=tmp_path / "first")
    send_lines(port, 0, 2000)
    # Everything read from the socket (what the kernel held for the agent dies with it)...
    wait_for(lambda: agent.metric("input_records_total") >= 2000, timeout=60)
    # ...then kill as soon as the first object exists: uploads and acks may be mid-way.
    wait_for(lambda: stored(moto.client(), "e2e"), timeout=60, interval=0.05)
    agent.kill()
    restarted = start_agent(text, workdir=tmp_path / "second")
    send_lines(port, 2000, 500)
    total = 2500
    wait_for(lambda: set(messages(moto)) >= set(expected(total)), timeout=90, interval=0.5)
    assert restarted.stop() == 0
    counts = messages(moto)
    assert counts == expected(total), {m: c for m, c in counts.items() if c != 1}
    assert multipart_uploads(moto.client(), "e2e") == []
    journal = tmp_path / "data" / "s3" / "archive.journal"
    assert journal.exists()
    assert all(json.loads(line) for line in journal.read_text().splitlines())
