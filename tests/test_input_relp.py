"""RELP at the protocol level, with a plain socket client: handshake, acks only after commit,
windowed transactions, close, serverclose, protocol errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.peers.inputs import InputHarness, input_harness
from tests.peers.relp import Client, command


@pytest.fixture(params=["asyncio", "uvloop"])
def harness(request: pytest.FixtureRequest) -> Iterator[InputHarness]:
    with input_harness(use_uvloop=request.param == "uvloop") as running:
        yield running


def start_relp(harness: InputHarness, **keys: object) -> int:
    syslog_input = harness.start(mode="relp", listen="127.0.0.1:0", **keys)
    assert syslog_input.bound is not None
    return int(syslog_input.bound.rsplit(":", 1)[1])


def test_open_answers_the_offers_omrelp_needs(harness: InputHarness) -> None:
    client = Client(start_relp(harness))
    answer = client.open().split(b"\n")
    assert answer[0] == b"200 OK"
    assert b"relp_version=0" in answer and b"commands=syslog" in answer
    client.send(command(2, "syslog", b"<13>app: hello"))
    assert client.read_frame() == (2, b"rsp", b"200 OK")
    client.send(command(3, "close"))
    assert client.read_frame() == (3, b"rsp", b"")
    assert client.sock.recv(10) == b""
    assert harness.frames() == [b"<13>app: hello"]
    client.close()


def test_acks_only_after_commit_and_in_order(harness: InputHarness) -> None:
    client = Client(start_relp(harness))
    client.open()
    gate = harness.call(asyncio.Event)
    harness.call(setattr, harness.sink, "commit_gate", gate)
    # A window of commands before any answer, in two writes.
    client.send(b"".join(command(n, "syslog", b"<13>app: m%d" % n) for n in range(2, 6)))
    wait_for(lambda: harness.count() == 4)
    client.send(b"".join(command(n, "syslog", b"<13>app: m%d" % n) for n in range(6, 9)))
    wait_for(lambda: harness.count() == 7)
    # Everything is submitted, nothing is committed: no answer may have been sent.
    assert client.nothing_pending()
    assert harness.sink.commits == 0
    harness.call(gate.set)
    answers = [client.read_frame() for _ in range(7)]
    assert answers == [(n, b"rsp", b"200 OK") for n in range(2, 9)]
    assert harness.sink.commits >= 1 and harness.sink.committed == 7
    assert harness.sink.batches == 2  # one submit per read, not per message
    client.close()


def test_embedded_newline_and_truncation(harness: InputHarness) -> None:
    client = Client(start_relp(harness, max_message_bytes=16))
    client.open()
    client.send(command(2, "syslog", b"<13>app: a\nb\n") + command(3, "syslog", b"X" * 100))
    assert [client.read_frame()[0] for _ in range(2)] == [2, 3]
    assert harness.frames() == [b"<13>app: a\nb", b"X" * 16]
    assert harness.sink.truncated == [b"X" * 16]
    client.close()


def test_split_reads(harness: InputHarness) -> None:
    client = Client(start_relp(harness))
    client.open()
    data = b"".join(command(n, "syslog", b"<13>app: split %d" % n) for n in range(2, 12))
    for i in range(0, len(data), 7):
        client.send(data[i : i + 7])
    answers = [client.read_frame()[0] for _ in range(10)]
    assert answers == list(range(2, 12))
    assert harness.frames() == [b"<13>app: split %d" % n for n in range(2, 12)]
    client.close()


def test_protocol_error_closes_only_that_session(harness: InputHarness) -> None:
    port = start_relp(harness)
    good = Client(port)
    good.open()
    bad = Client(port)
    bad.send(b"this is not relp at all\n" * 10)
    assert bad.sock.recv(100) == b""
    early = Client(port)
    early.send(command(1, "syslog", b"<13>before open"))
    assert early.sock.recv(100) == b""
    good.send(command(2, "syslog", b"<13>app: fine"))
    assert good.read_frame() == (2, b"rsp", b"200 OK")
    assert harness.metrics.total("input_framing_errors_total") == 2
    for client in (good, bad, early):
        client.close()


def test_unknown_command_gets_an_error_answer(harness: InputHarness) -> None:
    client = Client(start_relp(harness))
    client.open()
    client.send(command(2, "starttls"))
    txnr, name, data = client.read_frame()
    assert (txnr, name) == (2, b"rsp") and data.startswith(b"500 ")
    client.close()


def test_stop_answers_committed_then_serverclose(harness: InputHarness) -> None:
    port = start_relp(harness)
    client = Client(port)
    client.open()
    client.send(command(2, "syslog", b"<13>app: last"))
    assert client.read_frame() == (2, b"rsp", b"200 OK")
    harness.stop(harness.inputs[0])
    assert client.read_frame() == (0, b"serverclose", b"")
    assert client.sock.recv(10) == b""
    client.close()


def test_backpressure_holds_answers_until_the_sink_takes_the_frames(harness: InputHarness) -> None:
    client = Client(start_relp(harness))
    client.open()
    harness.call(harness.sink.set_room, False)
    client.send(command(2, "syslog", b"<13>app: waiting"))
    wait_for(lambda: harness.metrics.total("input_backpressure_pauses_total") >= 1)
    assert harness.count() == 0 and client.nothing_pending()
    harness.call(harness.sink.set_room, True)
    assert client.read_frame() == (2, b"rsp", b"200 OK")
    assert harness.frames() == [b"<13>app: waiting"]
    client.close()


def test_announced_huge_frame_is_cut_and_its_rest_skipped(harness: InputHarness) -> None:
    """A DATALEN of 8 MiB with max_message_bytes = 1 KiB: the agent keeps 1 KiB, skips the rest
    as it arrives (counted), answers, and the session goes on."""
    port = start_relp(harness, max_message_bytes=1024)
    client = Client(port)
    client.open()
    size = 8 * 1024 * 1024
    client.send(b"2 syslog %d " % size)
    block = b"<13>app: " + b"y" * (64 * 1024 - 9)
    for _ in range(size // len(block)):
        client.send(block)
    client.send(b"\n" + command(3, "syslog", b"<13>app: after"))
    assert [client.read_frame() for _ in range(2)] == [
        (2, b"rsp", b"200 OK"),
        (3, b"rsp", b"200 OK"),
    ]
    assert harness.frames() == [block[:1024], b"<13>app: after"]
    assert harness.sink.truncated == [block[:1024]]
    assert harness.metrics.total("input_truncated_total") == 1
    assert harness.metrics.total("input_discarded_bytes_total") == size - 1024
    client.close()


def test_message_of_exactly_the_limit_with_its_lf_is_not_cut(harness: InputHarness) -> None:
    client = Client(start_relp(harness, max_message_bytes=16))
    client.open()
    client.send(command(2, "syslog", b"A" * 16 + b"\n") + command(3, "syslog", b"B" * 17 + b"\n"))
    assert [client.read_frame()[0] for _ in range(2)] == [2, 3]
    assert harness.frames() == [b"A" * 16, b"B" * 16]
    assert harness.sink.truncated == [b"B" * 16]
    assert harness.metrics.total("input_discarded_bytes_total") == 2
    client.close()


@pytest.mark.parametrize(
    ("txnrs", "answered"),
    [([2, 3, 3], [2, 3]), ([2, 3, 2], [2, 3]), ([2, 4], [2])],
    ids=["duplicate", "decreasing", "skipped"],
)
def test_transaction_numbers_out_of_sequence_end_the_session(
    harness: InputHarness, txnrs: list[int], answered: list[int]
) -> None:
    """As librelp: every command carries the next number; a repeated, lower or skipped one is
    a protocol error: the session is closed without an answer to it, and counted."""
    client = Client(start_relp(harness))
    client.open()
    *good, bad = txnrs
    for txnr in good:
        client.send(command(txnr, "syslog", b"<13>app: number %d" % txnr))
        assert client.read_frame() == (txnr, b"rsp", b"200 OK")
    client.send(command(bad, "syslog", b"<13>app: number %d" % bad))
    with pytest.raises(EOFError):
        client.read_frame()
    assert harness.frames() == [b"<13>app: number %d" % n for n in answered]
    assert harness.metrics.total("input_framing_errors_total") == 1
    client.close()


def test_numbers_start_again_with_a_new_session(harness: InputHarness) -> None:
    port = start_relp(harness)
    for _ in range(2):
        client = Client(port)
        client.open()
        client.send(command(2, "syslog", b"<13>app: again"))
        assert client.read_frame() == (2, b"rsp", b"200 OK")
        client.close()
    assert harness.metrics.total("input_framing_errors_total") == 0


def test_a_client_that_does_not_read_its_answers_stops_being_read(harness: InputHarness) -> None:
    """Answers pile up in the transport for a client that never reads them; past the high-water
    mark the agent stops reading it, so neither its answers nor its messages grow without
    bound (the client's own sends block)."""
    port = start_relp(harness)
    client = Client(port)
    client.open()
    # Small kernel buffers on both sides: the answers stay in the agent's transport.
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    harness.call(
        lambda: [
            c.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            for c in harness.inputs[0]._connections
            if c.transport is not None
        ]
    )
    client.sock.settimeout(3)
    total = 400_000
    sent = 0
    batch = 2000
    try:
        for first in range(2, total, batch):
            client.send(b"".join(command(n, "syslog", b"x") for n in range(first, first + batch)))
            sent += batch
    except TimeoutError:
        pass
    pending = harness.call(
        lambda: max(
            c.transport.get_write_buffer_size()
            for c in harness.inputs[0]._connections
            if c.transport is not None
        )
    )
    assert sent < total, "the agent read everything a client that never reads sent"
    assert pending < 1024 * 1024
    assert harness.metrics.total("input_backpressure_pauses_total") >= 1
    client.close()
