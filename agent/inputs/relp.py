"""RELP server side (the protocol rsyslog's omrelp speaks).

A RELP frame is ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``. The client opens a session with
``open`` (its offers, one per line: ``relp_version=0``, ``commands=syslog``, ...), sends ``syslog``
commands with increasing transaction numbers, many of them before any answer (a window), and
ends with ``close``. Every command gets an ``rsp`` with the same TXNR whose data starts with a
status (``200 OK``). The server may end the session with ``serverclose`` (TXNR 0).

Reliability is the point: a ``syslog`` command is answered only after the sink committed the
batch that held it (``await sink.commit()``), so a message the client saw acknowledged survives
a crash. Frames read in one ``data_received`` form one batch: one submit, one commit, all their
answers in one write. A command not answered when the connection breaks is resent by the client.
Answers go out in the order the commands came.

Hostile or broken clients are bounded: a frame's DATA is kept only up to ``max_message_bytes``
whatever its DATALEN announces (the message is cut and flagged, as in the other modes, and the
rest is skipped as it arrives: linear time, bounded memory); transaction numbers must follow each
other as librelp requires (a repeated, lower or skipped number closes the session); and a client
that does not read its answers stops being read once the answers waiting for it pass the
transport's write high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import Any

from agent.inputs.stream import ConnectionOwner, StreamConnection

SOFTWARE = "container-audit-agent,0.1.0,https://github.com/container-audit-agent"
_MAX_TXNR = 999_999_999
"""Nine digits; the number after it is 1 again."""
_HEADER = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})( |\r?\n)")
"""``TXNR SP COMMAND SP DATALEN`` and what ends it: SP (before DATA) or LF (no DATA)."""
_HEADER_PREFIX = re.compile(rb"[0-9]{0,9}(?: (?:[A-Za-z]{0,32}(?: [0-9]{0,9}\r?)?)?)?")
"""What a header cut by the end of a read may look like."""
_MAX_HEADER = 9 + 1 + 32 + 1 + 9 + 2
_WHITESPACE = frozenset(b" \r\n")
_MAX_OTHER_DATA = 64 * 1024
"""DATA kept of commands other than ``syslog`` (``open`` offers are a few lines)."""
WRITE_HIGH_WATER = 64 * 1024
"""Answers waiting for a client that does not read them: beyond this, stop reading it."""
_SHUTDOWN_WAIT = 5.0


class RelpProtocolError(Exception):
    pass


class _Frame:
    """The frame being read: its header, the DATA kept so far and what is still to come."""

    __slots__ = ("command", "cut", "datalen", "keep", "parts", "skip", "txnr")

    def __init__(self, txnr: bytes, command: bytes, datalen: int, keep: int) -> None:
        self.txnr = txnr
        self.command = command
        self.datalen = datalen
        self.keep = keep
        """DATA bytes still to keep."""
        self.skip = datalen - keep
        """DATA bytes beyond the limit still to skip."""
        self.cut = self.skip > 0
        self.parts: list[bytes] = []


class _Answer:
    """One ``rsp`` owed to the client, in command order."""

    __slots__ = ("close_after", "payload", "ready")

    def __init__(self, payload: bytes, ready: bool, close_after: bool = False) -> None:
        self.payload = payload
        self.ready = ready
        self.close_after = close_after


def rsp(txnr: bytes, text: str) -> bytes:
    data = text.encode()
    return b"%s rsp %d %s\n" % (txnr, len(data), data) if data else b"%s rsp 0\n" % txnr


class RelpConnection(StreamConnection):
    submit_held_on_close = False

    def __init__(self, owner: ConnectionOwner) -> None:
        super().__init__(owner)
        self.limit = int(owner.config.max_message_bytes)
        self._head = b""
        """The start of a header that the end of a read cut (at most ``_MAX_HEADER`` bytes)."""
        self._frame: _Frame | None = None
        self._next_txnr = 1
        self._discarded = 0
        self._write_paused = False
        """The client does not read its answers: reading from it waits until it does."""
        self._opened = False
        self._closing = False
        """``close`` received or we are shutting down: read nothing more."""
        self._answers: deque[_Answer] = deque()
        self._uncommitted: list[_Answer] = []
        self._committer: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------- reading

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None and self._registered:
            self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.metrics.inc("input_bytes_total", len(data))
        frames: list[bytes] = []
        truncated: list[int] = []
        owed: list[_Answer] = []
        try:
            self._parse(data, frames, truncated, owed)
        except RelpProtocolError as error:
            self.metrics.inc("input_framing_errors_total")
            self.logger.warning(
                "%s: RELP protocol error from %s, closing the session: %s",
                self.owner.context.name,
                self.source,
                error,
            )
            self._drop_session()
            return
        finally:
            if self._discarded:
                self.metrics.inc("input_discarded_bytes_total", self._discarded)
                self._discarded = 0
        if frames:
            self.deliver(frames, truncated, owed)
        self._flush()

    def _parse(
        self, data: bytes, frames: list[bytes], truncated: list[int], owed: list[_Answer]
    ) -> None:
        """Handle every frame that ``data`` completes. Each byte is looked at a bounded number
        of times and at most ``max_message_bytes`` of a frame's DATA is kept, whatever DATALEN
        announces; the rest is skipped as it arrives."""
        if self._head:
            data = self._head + data  # a header cut by the last read: a few bytes
            self._head = b""
        size = len(data)
        pos = 0
        limit = self.limit
        answers = self._answers
        header = _HEADER.match
        while pos < size and not self._closing:
            frame = self._frame
            if frame is None:
                # Between frames: tolerate stray whitespace, then read a header.
                while pos < size and data[pos] in _WHITESPACE:
                    pos += 1
                if pos >= size:
                    return
                match = header(data, pos)
                if match is None:
                    rest = data[pos : pos + _MAX_HEADER + 1]
                    if len(rest) > _MAX_HEADER or not _HEADER_PREFIX.fullmatch(rest):
                        raise RelpProtocolError(f"malformed header {bytes(rest[:40])!r}")
                    self._head = rest  # the rest of the header comes with the next read
                    return
                txnr, command, datalen_text, end = match.groups()
                self._check_txnr(txnr)
                datalen = int(datalen_text)
                pos = match.end()
                stop = pos + datalen
                if (
                    stop < size
                    and command == b"syslog"
                    and end == b" "
                    and 0 < datalen <= limit + 1
                    and self._opened
                ):
                    # The usual frame: a syslog command whole in this read, within the limit.
                    if data[stop] != 0x0A:
                        raise RelpProtocolError(f"no LF after DATA of txnr {txnr.decode()}")
                    body = data[pos:stop]
                    pos = stop + 1
                    if body[-1] == 0x0A:
                        body = body[:-1]
                    elif datalen > limit:
                        self._discarded += 1
                        truncated.append(len(frames))
                        body = body[:limit]
                    frames.append(body)
                    answer = _Answer(b"%s rsp 6 200 OK\n" % txnr, False)
                    owed.append(answer)
                    answers.append(answer)
                    continue
                frame = self._header(txnr, command, datalen, end, frames, truncated, owed)
                if frame is None:  # no DATA and the LF already read
                    continue
            if frame.keep:
                take = min(frame.keep, size - pos)
                frame.parts.append(data[pos : pos + take])
                frame.keep -= take
                pos += take
                if frame.keep:
                    return
            if frame.skip:
                take = min(frame.skip, size - pos)
                frame.skip -= take
                self._discarded += take
                pos += take
                if frame.skip:
                    return
            if pos >= size:
                return
            byte = data[pos]
            pos += 1
            if byte != 0x0A:
                # "TXNR COMMAND 0 LF": some clients put a space (or a CR) before the LF.
                if frame.datalen or byte not in b" \r":
                    raise RelpProtocolError(f"no LF after DATA of txnr {frame.txnr.decode()}")
                continue
            self._frame = None
            parts = frame.parts
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._command(frame, body, frames, truncated, owed)

    def _check_txnr(self, txnr: bytes) -> None:
        number = int(txnr)
        if number:
            # As librelp: each command carries the next transaction number (open has 1); a
            # repeated, lower or skipped one is a protocol error. 0 is for hints.
            expected = self._next_txnr
            if number != expected:
                how = "repeats an earlier one" if number < expected else "skips ahead"
                raise RelpProtocolError(f"txnr {number} {how} ({expected} expected)")
            self._next_txnr = 1 if number >= _MAX_TXNR else number + 1

    def _header(
        self,
        txnr: bytes,
        command: bytes,
        datalen: int,
        end: bytes,
        frames: list[bytes],
        truncated: list[int],
        owed: list[_Answer],
    ) -> _Frame | None:
        """Start reading a frame's DATA; returns that frame, or None once a frame without
        DATA has been handled."""
        if datalen and end != b" ":
            raise RelpProtocolError(f"no space before DATA of txnr {txnr.decode()}")
        # One byte over the limit tells a message whose trailing LF is stripped from one that
        # is too long.
        cap = self.limit + 1 if command == b"syslog" else _MAX_OTHER_DATA
        frame = _Frame(txnr, command, datalen, min(datalen, cap))
        if datalen or end == b" ":
            self._frame = frame
            return frame
        self._command(frame, b"", frames, truncated, owed)
        return None

    def _command(
        self,
        frame: _Frame,
        data: bytes,
        frames: list[bytes],
        truncated: list[int],
        owed: list[_Answer],
    ) -> None:
        txnr, command = frame.txnr, frame.command
        if command == b"syslog":
            if not self._opened:
                raise RelpProtocolError("syslog command before open")
            if data.endswith(b"\n") and not frame.cut:
                data = data[:-1]
            if frame.cut or len(data) > self.limit:
                self._discarded += len(data) - self.limit
                truncated.append(len(frames))
                data = data[: self.limit]
            frames.append(data)
            answer = _Answer(b"%s rsp 6 200 OK\n" % txnr, ready=False)
            owed.append(answer)
            self._answers.append(answer)
        elif command == b"open":
            self._opened = True
            offers = self._offers(data)
            version = offers.get("relp_version", "0")
            if version.strip() not in ("", "0", "1"):
                self.logger.info(
                    "%s: client %s offers relp_version=%s, answering with 0",
                    self.owner.context.name,
                    self.source,
                    version,
                )
            text = f"200 OK\nrelp_version=0\nrelp_software={SOFTWARE}\ncommands=syslog"
            self._answers.append(_Answer(rsp(txnr, text), ready=True))
        elif command == b"close":
            self._closing = True
            if self.transport is not None:
                self.transport.pause_reading()
            self._answers.append(_Answer(rsp(txnr, ""), ready=True, close_after=True))
        elif command == b"rsp":
            pass  # answers to our serverclose: nothing to do
        else:
            self._answers.append(
                _Answer(rsp(txnr, f"500 command {command.decode()} not supported"), ready=True)
            )

    @staticmethod
    def _offers(data: bytes) -> dict[str, str]:
        offers: dict[str, str] = {}
        for line in data.decode(errors="replace").split("\n"):
            name, _, value = line.partition("=")
            if name:
                offers[name.strip()] = value
        return offers

    def eof_received(self) -> bool | None:
        return None

    def may_read(self) -> bool:
        return not self._closing and not self._write_paused

    # ------------------------------------------------------- clients that do not read

    def pause_writing(self) -> None:
        """The answers waiting for the client passed the high-water mark: it does not read
        them. Read nothing more from it until it does, so its unread answers (and what it
        sends meanwhile) cannot grow without bound; TCP flow control then holds it."""
        self._write_paused = True
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()
        self.metrics.inc("input_backpressure_pauses_total", reason="unread_answers")

    def resume_writing(self) -> None:
        self._write_paused = False
        if (
            self.transport is not None
            and not self._closed
            and self._waiting is None
            and not self._yielding
            and self.may_read()
        ):
            self.transport.resume_reading()

    # ----------------------------------------------------------------- acknowledging

    def submitted(self, token: Any) -> None:
        self._uncommitted.extend(token)
        if self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        try:
            while self._uncommitted:
                batch, self._uncommitted = self._uncommitted, []
                await self.sink.commit()
                for answer in batch:
                    answer.ready = True
                self._flush()
        except Exception as error:  # a buffer that cannot commit: answer nothing, let it resend
            self.logger.error(
                "%s: commit failed, closing RELP session from %s unanswered: %s",
                self.owner.context.name,
                self.source,
                error,
            )
            self._drop_session()
        finally:
            self._committer = None

    def _drop_session(self) -> None:
        """Close at once, answering nothing more: the client resends every unanswered command
        on its next session."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        answers = self._answers
        if not answers or not answers[0].ready or self.transport is None or self._closed:
            return
        out: list[bytes] = []
        close = False
        while answers and answers[0].ready:
            answer = answers.popleft()
            out.append(answer.payload)
            if answer.close_after:
                close = True
                break
        self.transport.write(b"".join(out))
        if close:
            self.transport.close()

    # ---------------------------------------------------------------------- shutdown

    async def shutdown(self) -> None:
        """Stop reading, answer what gets committed, then ``serverclose``."""
        self._closing = True
        transport = self.transport
        if transport is None or self._closed:
            return
        transport.pause_reading()
        committer = self._committer
        if committer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(committer), _SHUTDOWN_WAIT)
        if not self._closed:
            transport.write(b"0 serverclose 0\n")
            transport.close()

    def abort(self) -> None:
        self._closing = True
        self._answers.clear()
        self._uncommitted.clear()
        if self._committer is not None:
            self._committer.cancel()
        super().abort()
