"""A real rsyslogd forwards to the input: omfwd UDP and TCP (octet-counted), omuxsock, omrelp;
and omrelp keeps every message across a crash of the input."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.peers.inputs import InputHarness, input_harness
from tests.peers.rsyslog import Rsyslog, available

pytestmark = [
    pytest.mark.rsyslog,
    pytest.mark.skipif(not available(), reason="rsyslogd and logger are needed"),
]

COUNT = 1000
NUMBER = re.compile(rb"message number (\d+)")


@pytest.fixture
def harness() -> Iterator[InputHarness]:
    with input_harness() as running:
        yield running


def port_of(bound: str | None) -> int:
    assert bound is not None
    return int(bound.rsplit(":", 1)[1])


def numbers(frames: list[bytes]) -> list[int]:
    found = []
    for frame in frames:
        match = NUMBER.search(frame)
        assert match, frame
        found.append(int(match.group(1)))
    return found


def test_rsyslog_forwards_over_every_socket_kind(harness: InputHarness, tmp_path: Path) -> None:
    udp = harness.start(mode="udp", listen="127.0.0.1:0", receive_buffer_bytes="8MiB", tag="udp")
    tcp = harness.start(mode="tcp", listen="127.0.0.1:0", framing="octet_counted")
    dgram_path = tmp_path / "agent" / "dgram.sock"
    harness.start(mode="unix_dgram", path=str(dgram_path), receive_buffer_bytes="8MiB")
    relp = harness.start(mode="relp", listen="127.0.0.1:0")
    snippet = f"""
*.* action(type="omfwd" target="127.0.0.1" port="{port_of(udp.bound)}" protocol="udp"
           template="RSYSLOG_SyslogProtocol23Format")
*.* action(type="omfwd" target="127.0.0.1" port="{port_of(tcp.bound)}" protocol="tcp"
           TCP_Framing="octet-counted" template="RSYSLOG_ForwardFormat")
$ModLoad omuxsock
$OMUxSockSocket {dgram_path}
*.* :omuxsock:
module(load="omrelp")
*.* action(type="omrelp" target="127.0.0.1" port="{port_of(relp.bound)}"
           template="RSYSLOG_TraditionalForwardFormat")
"""
    with Rsyslog(tmp_path, snippet) as peer:
        peer.log(*(f"message number {n}" for n in range(COUNT)), tag="kube/pod-1")
        wait_for(lambda: harness.count() >= 4 * COUNT, timeout=60)
        output = peer.output()
    frames = harness.frames()
    sources = harness.sink.sources
    assert len(frames) == 4 * COUNT, output
    hostname = socket.gethostname().split(".")[0].encode()
    # Each action uses its own template, which tells the frames apart: RFC 5424 over UDP,
    # RSYSLOG_ForwardFormat (RFC 3339 time) over TCP, the traditional format over RELP.
    by_kind: dict[str, list[bytes]] = {"udp": [], "tcp": [], "dgram": [], "relp": []}
    for frame, source in zip(frames, sources, strict=True):
        if source == str(dgram_path):
            by_kind["dgram"].append(frame)
        elif frame.startswith(b"<13>1 "):
            by_kind["udp"].append(frame)
        elif frame[4:5].isdigit():
            by_kind["tcp"].append(frame)
        else:
            by_kind["relp"].append(frame)
    for kind, kind_frames in by_kind.items():
        assert sorted(numbers(kind_frames)) == list(range(COUNT)), kind
        for frame in kind_frames:
            assert frame.startswith(b"<13>"), (kind, frame)
            assert b" " + hostname + b" " in frame, (kind, frame)
            assert b"kube/pod-1" in frame, (kind, frame)
            assert not frame.endswith(b"\n"), (kind, frame)
    # RFC 5424 over UDP: HOSTNAME then APP-NAME as the original tag.
    assert re.match(rb"<13>1 \S+ " + hostname + rb" kube/pod-1 ", by_kind["udp"][0])


def test_omrelp_loses_nothing_when_the_input_crashes(harness: InputHarness, tmp_path: Path) -> None:
    port = free_port()
    total = 5000
    harness.start(mode="relp", listen=f"127.0.0.1:{port}")
    snippet = f"""
module(load="omrelp")
*.* action(type="omrelp" target="127.0.0.1" port="{port}"
           template="RSYSLOG_TraditionalForwardFormat"
           action.resumeRetryCount="-1" action.resumeInterval="1"
           queue.type="LinkedList" queue.size="100000")
"""
    with Rsyslog(tmp_path, snippet) as peer:
        half = total // 2
        peer.log(*(f"message number {n}" for n in range(half)), tag="crash")
        wait_for(lambda: harness.count() >= half, timeout=60)
        # Hold commits: whatever arrives from now on is received but never acknowledged.
        seen = harness.count()
        harness.call(lambda: setattr(harness.sink, "commit_gate", asyncio.Event()))
        peer.log(*(f"message number {n}" for n in range(half, total)), tag="crash")
        wait_for(lambda: harness.count() >= seen + 50, timeout=60)
        unacked = set(numbers(harness.frames()[seen:]))
        harness.abort(harness.inputs[0])
        harness.call(lambda: setattr(harness.sink, "commit_gate", None))
        before_restart = harness.count()
        harness.start(mode="relp", listen=f"127.0.0.1:{port}")
        wait_for(lambda: set(numbers(harness.frames())) >= set(range(total)), timeout=120)
        output = peer.output()
    after = numbers(harness.frames()[before_restart:])
    assert set(numbers(harness.frames())) == set(range(total)), output
    # The unacknowledged ones came again after the restart: RELP resent them.
    assert unacked and unacked <= set(after)
    print(
        f"crash test: {len(unacked)} unacknowledged at the crash, {len(after)} frames after "
        f"the restart, {harness.count() - total} duplicates"
    )
