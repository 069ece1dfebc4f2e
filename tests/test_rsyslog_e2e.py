"""Issue "foundation": a real rsyslogd forwards to the agent (a real process) over omfwd UDP, omfwd
TCP with octet-counted framing and omuxsock (UNIX datagram); the file output holds every message,
parsed field by field: rsyslog's hostname, the original tag as ``ident``, the pid, the message,
facility and severity; Docker-shaped tags give container fields through ``tag_pattern``. Both
the RFC 3164-style forwarding templates (omfwd's default ``RSYSLOG_TraditionalForwardFormat`` and
``RSYSLOG_ForwardFormat`` with an RFC 3339 time) and RFC 5424 (``RSYSLOG_SyslogProtocol23Format``).

rsyslog quirks this relies on (see tests/peers/rsyslog.py): rsyslog cuts an RFC 3164 tag at ':' (so
a Docker tag with an image version, ``nginx:1.25/web/<id>``, would arrive cut; the Docker tag here
has none) and at '/' unless ``global(parser.permitSlashInProgramName="on")``, which the peer sets.
"""

from __future__ import annotations

import collections
import datetime
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.conftest import free_port, read_ndjson, wait_for
from tests.peers.rsyslog import LOGGER, Rsyslog, available

pytestmark = [
    pytest.mark.rsyslog,
    pytest.mark.skipif(not available(), reason="rsyslogd and logger are needed"),
]

PLAIN = 1000
DOCKER = 200
SLICE = 200
"""Messages per ``logger`` run: rsyslog gets them in slices and the test waits for each slice to
arrive, so a burst never overflows a UDP receive queue (that is not what this test is about)."""
APP_TAG, APP_PID = "audit-app", 4242
DOCKER_TAG, DOCKER_PID = "nginx/web/5a6e1c8e6f3b", 2731
TAG_PATTERN = r"(?P<image>[^/]+)/(?P<container_name>[^/]+)/(?P<container_id>[0-9a-f]{12})"
NUMBER = re.compile(r"^(plain|docker) message number (\d+) with 'quotes' and \"json\" \{\}$")
"""The whole message: nothing cut or added around it."""
TRANSPORTS = ("udp", "tcp", "dgram")
TEMPLATES = {
    "rfc3164": "RSYSLOG_TraditionalForwardFormat",
    "rfc3164-rfc3339-time": "RSYSLOG_ForwardFormat",
    "rfc5424": "RSYSLOG_SyslogProtocol23Format",
}
TIME_SHAPE = {
    # The traditional format's "Nov 29 21:59:21" has whole seconds; the others microseconds.
    "rfc3164": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"),
    "rfc3164-rfc3339-time": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"),
    "rfc5424": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"),
}


def _text(kind: str, n: int) -> str:
    return f"{kind} message number {n} with 'quotes' and \"json\" {{}}"


def _agent_config(tmp_path: Path, udp: int, tcp: int, dgram: Path) -> str:
    inputs = [
        syslog_input("udp", udp, receive_buffer_bytes="8MiB", tag="udp"),
        syslog_input("tcp", tcp, framing="octet_counted", tag="tcp"),
        syslog_input("unix_dgram", path=dgram, receive_buffer_bytes="8MiB", tag="dgram"),
    ]
    return agent_toml(
        tmp_path,
        *({**block, "tag_pattern": TAG_PATTERN} for block in inputs),
        outputs=[file_output(tmp_path / f"{t}.ndjson", t) for t in TRANSPORTS],
    )


def _rsyslog_snippet(template: str, udp: int, tcp: int, dgram: Path) -> str:
    return f"""
*.* action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="{template}")
*.* action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
           TCP_Framing="octet-counted" template="{template}")
$ModLoad omuxsock
$OMUxSockSocket {dgram}
*.* :omuxsock:;{template}
"""


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_rsyslog_forwards_parsed_records_over_udp_tcp_and_omuxsock(
    tmp_path: Path,
    start_agent: Callable[..., AgentProcess],
    monkeypatch: pytest.MonkeyPatch,
    template: str,
) -> None:
    # RFC 3164 times carry no zone: rsyslog writes local time, the agent reads UTC (its default).
    monkeypatch.setenv("TZ", "UTC")
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    dgram = tmp_path / "run" / "agent.sock"
    agent = start_agent(_agent_config(tmp_path, udp, tcp, dgram))
    outputs = {t: tmp_path / f"{t}.ndjson" for t in TRANSPORTS}
    sent = 0

    def arrived_everywhere() -> bool:
        return all(len(read_ndjson(path)) >= sent for path in outputs.values())

    started = time.time()
    snippet = _rsyslog_snippet(TEMPLATES[template], udp, tcp, dgram)
    with Rsyslog(tmp_path, snippet) as peer:
        for kind, count, tag, pid in (
            ("plain", PLAIN, APP_TAG, APP_PID),
            ("docker", DOCKER, DOCKER_TAG, DOCKER_PID),
        ):
            for first in range(0, count, SLICE):
                texts = [_text(kind, n) for n in range(first, min(first + SLICE, count))]
                _log(peer, texts, tag, pid)
                sent += len(texts)
                wait_for(arrived_everywhere, timeout=60)
        rsyslog_output = peer.output()
    finished = time.time()

    hostname = socket.gethostname().split(".")[0]
    for transport, path in outputs.items():
        records = read_ndjson(path)
        where = f"{transport}/{template}"
        assert len(records) == PLAIN + DOCKER, (where, rsyslog_output)
        seen: collections.Counter[tuple[str, int]] = collections.Counter()
        for record in records:
            message = str(record.get("message"))
            if template == "rfc5424":
                # rsyslog keeps the space after a 3164 tag in its msg property and
                # RSYSLOG_SyslogProtocol23Format writes "%STRUCTURED-DATA% %msg%": the MSG on the
                # wire starts with that space, and the agent keeps MSG as it was sent.
                assert message.startswith(" "), (where, record)
                message = message[1:]
            match = NUMBER.match(message)
            assert match, (where, record)
            kind, n = match.group(1), int(match.group(2))
            seen[(kind, n)] += 1
            assert "parse_error" not in record, (where, record)
            assert record["host"] == hostname, (where, record)
            # logger's default priority: user.notice.
            assert record["pri"] == 13, (where, record)
            assert (record["facility"], record["severity"]) == ("user", "notice"), (where, record)
            event = datetime.datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
            assert started - 5 <= event.timestamp() <= finished + 5, (where, record)
            if kind == "plain":
                assert record["ident"] == APP_TAG, (where, record)
                assert str(record["pid"]) == str(APP_PID), (where, record)
                assert not {"container_id", "container_name", "image"} & record.keys(), record
            else:
                assert record["ident"] == DOCKER_TAG, (where, record)
                assert str(record["pid"]) == str(DOCKER_PID), (where, record)
                assert record["image"] == "nginx", (where, record)
                assert record["container_name"] == "web", (where, record)
                assert record["container_id"] == "5a6e1c8e6f3b", (where, record)
            assert TIME_SHAPE[template].match(str(record["time"])), (where, record)
        expected = {("plain", n) for n in range(PLAIN)} | {("docker", n) for n in range(DOCKER)}
        assert set(seen) == expected, where
        assert max(seen.values()) == 1, (where, "duplicates")
    for transport in TRANSPORTS:
        assert agent.metric("output_records_total", name=_output_name(transport)) == PLAIN + DOCKER
    assert agent.metric("parse_errors_total") == 0
    assert agent.metric("input_kernel_drops_total") == 0


def _log(peer: Rsyslog, texts: list[str], tag: str, pid: int) -> None:
    """One ``logger`` run into rsyslog's own input socket, with a fixed pid (``--id``)."""
    subprocess.run(
        [LOGGER, "-u", str(peer.input_socket), "-d", "-t", tag, f"--id={pid}"],
        input="".join(text + "\n" for text in texts).encode(),
        check=True,
        timeout=60,
    )


def _output_name(transport: str) -> str:
    return f"file.{TRANSPORTS.index(transport)}"
