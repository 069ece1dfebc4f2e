"""Records leave the buffer only when they are safely somewhere, proven with the agent as a real
process against real peers: dead letters that cannot be written keep the chunk, errors that are
not about the data wait instead of dead-lettering, the dead-letter directory is bounded, dead
letters are replayed, and no credential reaches /metrics or the log."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from outputs.s3.keys import KeyTemplate
from tests.agent_config import Table, agent_toml, file_output, syslog_input
from tests.conftest import agent_command, agent_env, free_port, read_ndjson, wait_for
from tests.numbered import SEQ, numbered_lines, numbers_in
from tests.peers.faultproxy import FaultProxy
from tests.peers.moto import FAKE_CREDENTIALS_ENV, MotoServer
from tests.peers.opensearch import OpenSearchNode, opensearch_fixture  # noqa: F401
from tests.s3_helpers import multipart_uploads, s3_config, stored

pytestmark = pytest.mark.slow

WIDE = b"payload-" + b"x" * 120


def _send(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)


def _config(tmp_path: Path, port: int, output: Table, **agent: object) -> str:
    """The agent taking TCP on ``port`` into a disk buffer, delivering to ``output``."""
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="app"),
        agent={"grace_period": "2s", **agent},
        buffer={"type": "disk"},
        outputs=[output],
    )


def _s3_output(url: str, bucket: str, **keys: object) -> Table:
    return {
        "type": "s3",
        "name": "archive",
        "match": "*",
        "bucket": bucket,
        "endpoint_url": url,
        "region": "us-east-1",
        "addressing_style": "path",
        "healthcheck": False,
        "upload_timeout": "300ms",
        "request_timeout": "10s",
        "retry_base": "100ms",
        "retry_max": "500ms",
        **keys,
    }


def _es_output(hosts: str | list[str], index: str, **keys: object) -> Table:
    return {
        "type": "elasticsearch",
        "name": "es",
        "match": "*",
        "hosts": hosts,
        "index": index,
        "retry_base": "100ms",
        "retry_max": "500ms",
        **keys,
    }


def _dead_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".json", ".ndjson"))


# ------------------------------------------------------------------------------- S3 (moto)


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoServer]:
    for key, value in FAKE_CREDENTIALS_ENV.items():
        monkeypatch.setenv(key, value)  # inherited by the agent process
    with MotoServer(log_path=tmp_path / "moto.log") as server:
        yield server


@pytest.mark.s3
def test_missing_bucket_waits_then_delivers_without_dead_letters(
    tmp_path: Path, moto: MotoServer, start_agent: Callable[..., AgentProcess]
) -> None:
    """The bucket is created a bit later (Terraform, a new account): the records wait in the
    buffer, /readyz and output_blocked_chunks say why, and they all arrive; nothing is
    dead-lettered, even with a retry_limit that the chunks pass many times."""
    port = free_port()
    config = _config(tmp_path, port, _s3_output(moto.url, "later", retry_limit=1))
    agent = start_agent(config)
    _send(port, numbered_lines(0, 500))
    dead = tmp_path / "data" / "dead-letter"
    # Many attempts, well past retry_limit, and still nothing dead-lettered.
    wait_for(lambda: agent.metric("output_retries_total") >= 4 or _dead_files(dead), timeout=30)
    assert _dead_files(dead) == [], "a missing bucket dead-lettered the records"
    assert agent.metric("buffer_chunks") >= 1
    assert agent.metric("output_blocked_chunks", cause="no_bucket") >= 1
    status, body = agent.readyz()
    assert status == 503 and "archive blocked (no_bucket" in body and "NoSuchBucket" in body
    moto.client().create_bucket(Bucket="later")

    def arrived() -> int:
        objects = stored(moto.client(), "later", prefix="")
        return len({r["message"] for records in objects.values() for r in records})

    wait_for(lambda: arrived() == 500, timeout=60)
    assert _dead_files(dead) == []
    assert agent.metric("output_dead_lettered_records_total") == 0
    wait_for(lambda: agent.metric("output_records_total", name="archive") == 500, timeout=30)
    wait_for(lambda: agent.metric("output_blocked_chunks", cause="no_bucket") == 0, timeout=30)
    wait_for(lambda: agent.readyz()[0] == 200, timeout=30)


# --------------------------------------------------------------------- Elasticsearch node


def _numbers_index(opensearch: OpenSearchNode, index: str) -> None:
    """An index where ``message`` is a number: a text message is refused (mapping error)."""
    opensearch.delete_index(index)
    opensearch.request(
        "PUT", f"/{index}", {"mappings": {"properties": {"message": {"type": "long"}}}}
    )


def _mixed_lines(count: int) -> bytes:
    """RFC 5424 lines: even ones carry a number as message (accepted), odd ones text."""
    return b"".join(
        b"<14>1 2026-11-29T10:00:00.000Z web-1 app - - - %s\n"
        % (str(n).encode() if n % 2 == 0 else b"not-a-number-%d" % n)
        for n in range(count)
    )


@pytest.mark.opensearch
def test_unwritable_dead_letter_directory_keeps_the_chunk(
    tmp_path: Path, opensearch: OpenSearchNode, start_agent: Callable[..., AgentProcess]
) -> None:
    """Elasticsearch refuses some documents; the dead-letter directory was replaced by a file:
    the chunk stays in the buffer, unacknowledged, until the letters can be written. Then the
    refused records are in owner-only files, counted apart from the delivered ones."""
    _numbers_index(opensearch, "dl-e2e")
    port = free_port()
    config = _config(tmp_path, port, _es_output(opensearch.url, "dl-e2e"))
    agent = start_agent(config)
    dead = tmp_path / "data" / "dead-letter"
    if dead.is_dir():
        dead.rmdir()
    dead.write_text("not a directory")
    _send(port, _mixed_lines(20))

    def accepted() -> int:
        opensearch.refresh("dl-e2e")
        return opensearch.count("dl-e2e")

    wait_for(lambda: accepted() == 10, timeout=30)  # the numbers went in
    wait_for(
        lambda: (
            agent.metric("output_retries_total") >= 2
            or "(not written)" in agent.log_path.read_text()
        ),
        timeout=30,
    )
    assert "(not written)" not in agent.log_path.read_text()
    assert agent.metric("buffer_chunks") >= 1, "the chunk was acknowledged without its dead letters"
    assert agent.metric("output_records_total", name="es") == 0
    assert agent.metric("output_blocked_chunks", cause="dead_letter_unwritable") >= 1
    status, body = agent.readyz()
    assert status == 503 and "dead_letter_unwritable" in body

    dead.unlink()
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    assert agent.metric("output_records_total", name="es") == 10
    assert agent.metric("output_dead_lettered_records_total", name="es", reason="refused") == 10
    assert agent.metric("buffer_dead_letter_records_total", output="es") == 10
    opensearch.refresh("dl-e2e")
    assert opensearch.count("dl-e2e") == 10
    files = _dead_files(dead)
    assert files
    assert stat.S_IMODE(dead.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    refused = [r for p in files if p.suffix == ".ndjson" for r in read_ndjson(p)]
    assert sorted(str(r["message"]) for r in refused) == sorted(
        f"not-a-number-{n}" for n in range(1, 20, 2)
    )
    reasons = [json.loads(p.read_text()) for p in files if p.suffix == ".json"]
    assert all("mapper_parsing_exception" in r["reason"] for r in reasons)
    # One dead-letter event, one log line.
    logged = agent.log_path.read_text()
    assert logged.count("refused by the destination, kept in") == len(reasons)


@pytest.mark.opensearch
def test_refused_credentials_hold_the_records_until_fixed(
    tmp_path: Path, opensearch: OpenSearchNode, start_agent: Callable[..., AgentProcess]
) -> None:
    """A 401 from the cluster (a rotated secret, through a proxy in front of the node): the
    records wait, whatever retry_limit says; /readyz and output_blocked_chunks{cause="auth"}
    say why; once the credentials work again everything arrives and nothing was dead-lettered."""
    opensearch.delete_index("auth-e2e")
    port = free_port()
    with FaultProxy(opensearch.url) as proxy:
        proxy.respond(
            401,
            b'{"error":{"type":"security_exception","reason":"unauthorized"},"status":401}',
            when=lambda r: r.path == "/_bulk",
            content_type="application/json",
        )
        output = _es_output(proxy.url, "auth-e2e", id_mode="hash", retry_limit=1, retry_max="300ms")
        config = _config(tmp_path, port, output)
        agent = start_agent(config)
        _send(port, numbered_lines(0, 300))
        dead = tmp_path / "data" / "dead-letter"
        wait_for(lambda: agent.metric("output_retries_total") >= 4 or _dead_files(dead), timeout=30)
        assert _dead_files(dead) == [], "refused credentials dead-lettered the records"
        assert agent.metric("output_blocked_chunks", cause="auth") >= 1
        status, body = agent.readyz()
        assert status == 503 and "es blocked (auth" in body and "security_exception" in body
        proxy.clear()

        def indexed() -> int:
            try:
                opensearch.refresh("auth-e2e")
                return opensearch.count("auth-e2e")
            except AssertionError:  # the index is being created: shards not started yet
                return -1

        wait_for(lambda: indexed() == 300, timeout=60)
        wait_for(lambda: agent.metric("output_records_total", name="es") == 300, timeout=30)
        assert agent.metric("output_dead_lettered_records_total") == 0
        wait_for(lambda: agent.readyz()[0] == 200, timeout=30)


@pytest.mark.opensearch
def test_credentials_in_a_url_reach_neither_metrics_nor_log_nor_check(
    tmp_path: Path, opensearch: OpenSearchNode, start_agent: Callable[..., AgentProcess]
) -> None:
    """``http://user:pass@host`` is taken apart: the host URL (metrics labels, log lines) is
    shown without them, and the password is sent only in the Authorization header."""
    port = free_port()
    dead_port = free_port()
    live = opensearch.url.replace("http://", "http://elastic:hunter2-secret@")
    hosts = [f"http://elastic:hunter2-secret@127.0.0.1:{dead_port}", live]
    config = _config(tmp_path, port, _es_output(hosts, "url-credentials", retry_max="300ms"))
    agent = start_agent(config)
    _send(port, numbered_lines(0, 10))
    wait_for(lambda: agent.metric("output_records_total", name="es") == 10, timeout=30)
    wait_for(lambda: agent.metric("output_es_host_ejections_total") >= 1, timeout=30)
    metrics = agent.metrics_text()
    assert f"127.0.0.1:{dead_port}" in metrics
    assert "hunter2" not in metrics
    assert "hunter2" not in agent.log_path.read_text() and "hunter2" not in agent.readyz()[1]
    bad = config.replace(f"127.0.0.1:{dead_port}", f"127.0.0.1:{dead_port}?query=1")
    check_path = tmp_path / "check.toml"
    check_path.write_text(bad)
    result = subprocess.run(
        agent_command("--config", str(check_path), "--check"),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "query" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# ------------------------------------------------------------- bounded directory, replay


def _file_config(tmp_path: Path, port: int, out: Path, max_bytes: str) -> str:
    output = file_output(out, name="archive", retry_limit=0, retry_base="100ms", retry_max="300ms")
    return _config(tmp_path, port, output, dead_letter_max_bytes=max_bytes)


def test_full_dead_letter_directory_holds_the_chunk_and_replay_sends_it(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """A failing output past retry_limit, a dead-letter directory at dead_letter_max_bytes: the
    chunk stays in the buffer (nothing deleted), /readyz and the metrics say so. Room made: it
    is dead-lettered. The cause fixed: ``dead-letters replay`` sends it and removes it."""
    port = free_port()
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's directory should be: writes fail")
    out = blocker / "out.ndjson"
    dead = tmp_path / "data" / "dead-letter"
    dead.mkdir(parents=True)
    filler = dead / "someone-elses.bin"
    filler.write_bytes(b"f" * 60_000)
    config = _file_config(tmp_path, port, out, "64KiB")
    agent = start_agent(config)
    _send(port, numbered_lines(0, 100, payload=WIDE))

    wait_for(
        lambda: agent.metric("output_blocked_chunks", cause="dead_letter_full") >= 1, timeout=30
    )
    status, body = agent.readyz()
    assert status == 503 and "dead_letter_full" in body
    assert agent.metric("dead_letter_max_bytes") == 64 * 1024
    wait_for(lambda: agent.metric("dead_letter_bytes") >= 60_000, timeout=30)
    assert agent.metric("buffer_chunks") >= 1
    assert agent.metric("output_dead_lettered_records_total") == 0
    assert [p.name for p in dead.iterdir()] == [filler.name]

    filler.unlink()
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    assert agent.metric("output_dead_lettered_records_total", reason="retry_limit") == 100
    assert agent.metric("buffer_dead_letter_records_total", output="archive") == 100
    assert agent.metric("output_records_total", name="archive") == 0
    assert sum(len(read_ndjson(p)) for p in _dead_files(dead) if p.suffix == ".ndjson") == 100

    # The cause is fixed; replay while the agent runs.
    blocker.unlink()
    blocker.mkdir()
    config_path = tmp_path / "replay.toml"
    config_path.write_text(config)
    listed = subprocess.run(
        agent_command("dead-letters", "list", "--config", str(config_path)),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "1 dead letters, 100 records" in listed.stdout
    replayed = subprocess.run(
        agent_command(
            "dead-letters", "replay", "--config", str(config_path), "--output", "archive"
        ),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 100 records from 1 of 1 dead letters" in replayed.stdout
    assert sorted(numbers_in(out)) == list(range(100))
    assert _dead_files(dead) == []


@pytest.mark.opensearch
def test_refused_documents_replayed_once_the_mapping_is_fixed(
    tmp_path: Path, opensearch: OpenSearchNode, start_agent: Callable[..., AgentProcess]
) -> None:
    """Elasticsearch refuses text where the index maps a number: dead-lettered with the reason.
    The mapping fixed (the index recreated), ``dead-letters replay`` indexes them; run again,
    it finds nothing left."""
    _numbers_index(opensearch, "dl-replay")
    port = free_port()
    config = _config(tmp_path, port, _es_output(opensearch.url, "dl-replay", id_mode="hash"))
    agent = start_agent(config)
    _send(port, _mixed_lines(40))
    wait_for(lambda: agent.metric("output_dead_lettered_records_total") == 20, timeout=30)
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=30)
    assert agent.metric("output_records_total", name="es") == 20
    dead = tmp_path / "data" / "dead-letter"
    assert _dead_files(dead)

    opensearch.delete_index("dl-replay")
    opensearch.request(
        "PUT", "/dl-replay", {"mappings": {"properties": {"message": {"type": "keyword"}}}}
    )
    config_path = tmp_path / "replay.toml"
    config_path.write_text(config)
    command = agent_command("dead-letters", "replay", "--config", str(config_path))
    result = subprocess.run(command, env=agent_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 20 records" in result.stdout
    assert _dead_files(dead) == []
    opensearch.refresh("dl-replay")
    messages = {hit["_source"]["message"] for hit in opensearch.search("dl-replay")}
    assert messages == {f"not-a-number-{n}" for n in range(1, 40, 2)}
    again = subprocess.run(command, env=agent_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "no dead letters" in again.stdout


@pytest.mark.s3
def test_s3_chunk_refused_then_replayed_into_the_bucket(
    tmp_path: Path, moto: MotoServer, start_agent: Callable[..., AgentProcess]
) -> None:
    """S3 refuses the upload with a 4xx about the request (a proxy in front of moto): the chunk
    is dead-lettered with a redacted reason; once the proxy is gone, ``dead-letters replay``
    uploads it to the bucket, and nothing is left in the directory."""
    moto.client().create_bucket(Bucket="replay")
    echoed = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
        b"<Message>refused; Authorization: AWS4-HMAC-SHA256 Credential=AKIAECHOED/x</Message>"
        b"</Error>"
    )
    port = free_port()
    with FaultProxy(moto.url) as proxy:
        proxy.respond(400, echoed, when=lambda r: r.method == "PUT")
        config = _config(tmp_path, port, _s3_output(proxy.url, "replay"))
        agent = start_agent(config)
        _send(port, numbered_lines(0, 200))
        wait_for(lambda: agent.metric("output_dead_lettered_records_total") == 200, timeout=30)
        assert agent.metric("output_dead_lettered_records_total", reason="rejected") == 200
        assert agent.metric("output_records_total", name="archive") == 0
        dead = tmp_path / "data" / "dead-letter"
        reasons = [json.loads(p.read_text()) for p in _dead_files(dead) if p.suffix == ".json"]
        assert reasons and all("InvalidArgument" in r["reason"] for r in reasons)
        assert not any("AKIAECHOED" in r["reason"] for r in reasons)
        assert "AKIAECHOED" not in agent.log_path.read_text()
    # The running agent's upload in progress (same node, same key pattern): not stale for the
    # replay, which must leave it alone.
    template = s3_config(moto.url, "replay").template
    keys = KeyTemplate(template, ext=".gz", host=socket.gethostname())
    in_progress = keys.key(keys.group("app", time.time()), "1796563504731-000000000999", 7)
    assert keys.pattern().match(in_progress)
    upload = moto.client().create_multipart_upload(Bucket="replay", Key=in_progress)
    config_path = tmp_path / "replay.toml"
    config_path.write_text(config.replace(proxy.url, moto.url))
    result = subprocess.run(
        agent_command("dead-letters", "replay", "--config", str(config_path)),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 200 records" in result.stdout
    objects = stored(moto.client(), "replay", prefix="")
    assert sorted(numbers_in_records(objects)) == list(range(200))
    assert _dead_files(dead) == []
    uploads = [u["UploadId"] for u in multipart_uploads(moto.client(), "replay")]
    assert upload["UploadId"] in uploads


def numbers_in_records(objects: dict[str, list[dict[str, object]]]) -> list[int]:
    found = (SEQ.search(str(r["message"]).encode()) for rs in objects.values() for r in rs)
    return [int(match.group(1)) for match in found if match]
