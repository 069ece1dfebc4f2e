"""The ``http`` output against a real HTTP server started by the test (aiohttp.web on a loopback
port): bodies, gzip, headers, basic auth, what each status does, and the whole agent end to end
(syslog in, http out) through an outage and a refusal. Credentials never show in what the agent
writes."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.components import output_types
from agent.config import ConfigError, parse_config
from agent.reference import render
from bench.harness import AgentProcess
from common.units import config_dec_hook
from outputs.base import BlockedError, FatalError, RetryableError
from outputs.http import HttpConfig, HttpOutput
from tests.chunks import Delivery, TestChunk, deliver, make_chunks, make_context, send_each
from tests.conftest import free_port, wait_for
from tests.numbered import numbered_lines
from tests.peers.httpsink import HttpSink

PASSWORD = "s3cr3t-Pa55word"
TOKEN = base64.b64encode(f"agent:{PASSWORD}".encode()).decode()


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


def make_output(tmp_path: Path, url: str, **keys: Any) -> HttpOutput:
    config = msgspec.convert(
        {"type": "http", "name": "http.0", "url": url, **keys},
        HttpConfig,
        dec_hook=config_dec_hook,
    )
    return HttpOutput(config, make_context(tmp_path, name="http.0"))


def delivered(output: HttpOutput, chunks: list[TestChunk]) -> Delivery:
    """What delivery made of ``chunks`` through the started ``output`` (stopped afterwards)."""

    async def go() -> Delivery:
        await output.start()
        try:
            return await deliver(output, chunks)
        finally:
            await output.stop()

    return asyncio.run(go())


def run(output: HttpOutput, chunks: list[TestChunk]) -> None:
    asyncio.run(send_each(output, chunks))


def send_one(output: HttpOutput, chunk: TestChunk) -> BaseException | None:
    try:
        run(output, [chunk])
    except Exception as exc:
        return exc
    return None


# ------------------------------------------------------------------------------------ bodies


def test_ndjson_body_lines_are_the_chunk_records(tmp_path: Path, sink: HttpSink) -> None:
    (chunk,) = make_chunks(1, 25)
    run(make_output(tmp_path, sink.url), [chunk])
    (request,) = sink.requests
    assert request.method == "POST"
    assert request.path == "/ingest"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert "Content-Encoding" not in request.headers
    assert request.raw == chunk.data()
    assert request.raw.split(b"\n")[:-1] == list(chunk.lines())


def test_json_format_posts_one_array(tmp_path: Path, sink: HttpSink) -> None:
    (chunk,) = make_chunks(1, 5)
    run(make_output(tmp_path, sink.url, format="json", method="PUT"), [chunk])
    (request,) = sink.requests
    assert request.method == "PUT"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.raw) == [json.loads(line) for line in chunk.lines()]


def test_gzip_body_decodes_to_the_chunk(tmp_path: Path, sink: HttpSink) -> None:
    (chunk,) = make_chunks(1, 200)
    run(make_output(tmp_path, sink.url, compress="gzip"), [chunk])
    (request,) = sink.requests
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.raw[:2] == b"\x1f\x8b"  # a gzip member on the wire
    assert len(request.raw) < chunk.size
    assert request.body == chunk.data()


def test_headers_and_basic_auth_arrive(tmp_path: Path, sink: HttpSink) -> None:
    (chunk,) = make_chunks(1, 3)
    headers = {"X-Tenant": "team-a", "X-Scope-OrgID": "42"}
    output = make_output(
        tmp_path, sink.url, headers=headers, http_user="agent", http_passwd=PASSWORD
    )
    run(output, [chunk])
    (request,) = sink.requests
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert request.headers["X-Tenant"] == "team-a"
    assert request.headers["X-Scope-OrgID"] == "42"


def test_user_info_in_the_url_is_basic_auth(tmp_path: Path, sink: HttpSink) -> None:
    url = sink.url.replace("http://", f"http://agent:{PASSWORD}@")
    output = make_output(tmp_path, url)
    assert PASSWORD not in output.config.url
    run(output, make_chunks(1, 1))
    assert sink.requests[0].headers["Authorization"] == f"Basic {TOKEN}"


# ---------------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, RetryableError),
        (429, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (401, BlockedError),
        (403, BlockedError),
        (400, FatalError),
        (404, FatalError),
        (413, FatalError),
        (422, FatalError),
    ],
)
def test_status_decides_retry_wait_or_dead_letter(
    tmp_path: Path, sink: HttpSink, status: int, error: type[Exception]
) -> None:
    sink.respond(status, b"the server's words")
    failure = send_one(make_output(tmp_path, sink.url), make_chunks(1, 2)[0])
    assert type(failure) is error
    assert f"HTTP {status} from {sink.url}: the server's words" in str(failure)
    if isinstance(failure, BlockedError):
        assert failure.cause == "auth"


def test_chunks_ready_at_once_share_a_request_up_to_max_batch_bytes(
    tmp_path: Path, sink: HttpSink
) -> None:
    chunks = make_chunks(3, 10, tag="a") + make_chunks(2, 10, tag="b")
    size = chunks[0].size
    output = make_output(tmp_path, sink.url, workers=1, max_batch_bytes=3 * size)

    result = delivered(output, chunks)
    assert sorted(result.delivered) == sorted(c.id for c in chunks)
    # Tags share requests (nothing in a request depends on the tag); none is over the bound.
    assert [len(r.raw) for r in sink.requests] == [3 * size, 2 * size]
    assert b"".join(r.raw for r in sink.requests) == b"".join(c.data() for c in chunks)


def test_max_batch_bytes_0_sends_every_chunk_alone(tmp_path: Path, sink: HttpSink) -> None:
    chunks = make_chunks(3, 5)
    output = make_output(tmp_path, sink.url, workers=1, max_batch_bytes=0)

    delivered(output, chunks)
    assert sorted(r.raw for r in sink.requests) == sorted(c.data() for c in chunks)


def test_503_then_200_delivers_once_the_server_recovers(tmp_path: Path, sink: HttpSink) -> None:
    sink.respond(503, b"busy", times=3)
    chunks = make_chunks(2, 10)
    output = make_output(tmp_path, sink.url, workers=1, max_batch_bytes=0)

    result = delivered(output, chunks)
    assert sorted(result.delivered) == sorted(c.id for c in chunks)
    assert result.fatal == {}
    assert len(result.retryable) == 3
    assert [r.status for r in sink.requests] == [503, 503, 503, 200, 200]
    sent = [json.loads(line) for c in chunks for line in c.lines()]
    assert sorted(sink.records(), key=lambda r: r["seq"]) == sent  # each record once


def test_refused_connection_is_retryable_and_not_ready(tmp_path: Path) -> None:
    output = make_output(tmp_path, f"http://127.0.0.1:{free_port()}/ingest")
    failure = send_one(output, make_chunks(1, 1)[0])
    assert isinstance(failure, RetryableError)
    assert not output.ready


def test_credentials_never_appear_in_errors(tmp_path: Path, sink: HttpSink) -> None:
    """A proxy that echoes the request (Authorization included) into its error page."""
    sink.respond(400, b"bad request; you sent:", echo=True)
    url = sink.url.replace("http://", f"http://agent:{PASSWORD}@")
    failure = send_one(make_output(tmp_path, url), make_chunks(1, 1)[0])
    assert isinstance(failure, FatalError)
    text = str(failure)
    assert "Authorization: [redacted]" in text
    assert PASSWORD not in text and TOKEN not in text


# ------------------------------------------------------------------------------------ config


def _config(output: str) -> str:
    return f"""
[[inputs]]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:0"
[[outputs]]
type = "http"
{output}
"""


def test_config_errors_name_the_key_and_hide_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(f'url = "ftp://agent:{PASSWORD}@example.com/"'))
    assert "outputs[0].url: expected" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ConfigError, match=r"outputs\[0\].http_passwd: needs http_user"):
        parse_config(_config('url = "http://example.com/"\nhttp_passwd = "x"'))
    with pytest.raises(ConfigError, match=r"outputs\[0\].compress: .*'gzip'"):
        parse_config(_config('url = "http://example.com/"\ncompress = "zip"'))
    config = parse_config(_config('url = "https://example.com/in"\nheaders = { X-A = "1" }'))
    assert config.outputs[0].headers == {"X-A": "1"}


def test_registered_with_one_line_and_documented() -> None:
    assert output_types()["http"] == (HttpConfig, HttpOutput)
    reference = render()
    assert '### `[[outputs]]` `type = "http"`' in reference
    for key in ("url", "format", "compress", "headers", "http_user", "http_passwd", "retry_limit"):
        assert f"| `{key}` |" in reference


# ------------------------------------------------------------------------------- end to end


def _agent_config(tmp_path: Path, port: int, url: str, extra: str = "") -> str:
    return f"""
[agent]
data_dir = "{tmp_path / "data"}"
[buffer]
flush_interval = "200ms"
[[inputs]]
type = "syslog"
mode = "tcp"
listen = "127.0.0.1:{port}"
tag = "app"
[[outputs]]
type = "http"
name = "collector"
url = "{url}"
http_user = "agent"
http_passwd = "${{HTTP_PASSWORD}}"
compress = "gzip"
headers = {{ X-Tenant = "team-a" }}
retry_base = "50ms"
retry_max = "200ms"
{extra}
"""


def _send(port: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(numbered_lines(0, count))


def _seqs(records: list[dict[str, object]]) -> list[int]:
    return sorted(int(str(r["message"]).split("seq=")[1].split()[0]) for r in records)


@pytest.fixture
def agent_with_sink(
    tmp_path: Path, sink: HttpSink
) -> Iterator[Callable[[str], tuple[AgentProcess, int]]]:
    started: list[AgentProcess] = []

    def start(extra: str = "") -> tuple[AgentProcess, int]:
        port = free_port()
        workdir = tmp_path / "agent"
        workdir.mkdir(exist_ok=True)
        agent = AgentProcess(workdir, _agent_config(tmp_path, port, sink.url, extra))
        started.append(agent)
        agent.start(extra_env={"HTTP_PASSWORD": PASSWORD})
        return agent, port

    yield start
    for agent in started:
        agent.stop(timeout=30)
        agent.kill()


def test_agent_delivers_syslog_to_http_through_an_outage(
    sink: HttpSink, agent_with_sink: Callable[[str], tuple[AgentProcess, int]]
) -> None:
    """The collector answers 503 until it recovers; every record arrives once, gzip-encoded,
    with the headers and basic auth, and the retries are counted."""
    sink.respond(503, b"collector starting", times=4)
    agent, port = agent_with_sink("")
    _send(port, 300)
    wait_for(lambda: len(sink.records()) >= 300, timeout=60)
    assert _seqs(sink.records()) == list(range(300))
    assert [r.status for r in sink.requests[:4]] == [503] * 4
    for request in sink.accepted():
        assert request.headers["Content-Encoding"] == "gzip"
        assert request.headers["Authorization"] == f"Basic {TOKEN}"
        assert request.headers["X-Tenant"] == "team-a"
    record = sink.records()[0]
    assert record["ident"] == "app" and record["host"] == "node"
    assert agent.metric("output_retries_total", name="collector") >= 4
    wait_for(lambda: agent.metric("output_records_total", name="collector") == 300)
    assert agent.metric("output_dead_lettered_records_total", name="collector") == 0
    assert PASSWORD not in agent.log() and TOKEN not in agent.log()


def test_agent_dead_letters_what_the_server_refuses(
    tmp_path: Path,
    sink: HttpSink,
    agent_with_sink: Callable[[str], tuple[AgentProcess, int]],
) -> None:
    """A 400 is about the data: the chunk goes to the dead-letter directory at once with the
    server's answer as the reason; the answer echoed the credentials, the reason does not."""
    sink.respond(400, b'{"error":"unparseable"}; request headers:', echo=True)
    agent, port = agent_with_sink("")
    _send(port, 10)
    dead = tmp_path / "data" / "dead-letter"
    wait_for(lambda: agent.metric("output_dead_lettered_records_total", name="collector") == 10)
    reasons = [json.loads(path.read_text()) for path in sorted(dead.glob("*.json"))]
    assert reasons  # one per chunk: the 10 records may have been read into more than one
    text = json.dumps(reasons)
    for reason in map(json.dumps, reasons):
        assert "rejected: HTTP 400 from" in reason and "unparseable" in reason
        assert "Authorization: [redacted]" in reason
    letters = [json.loads(line) for path in dead.glob("*.ndjson") for line in path.open()]
    assert _seqs(letters) == list(range(10))
    assert agent.metric("output_records_total", name="collector") == 0
    for where in (text, agent.log(), agent.metrics_text()):
        assert PASSWORD not in where and TOKEN not in where
