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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from agent.inputs.syslog import StreamConnection

if TYPE_CHECKING:
    from agent.inputs.syslog import SyslogInput

SOFTWARE = "container-audit-agent,0.1.0,https://github.com/container-audit-agent"
_MAX_TXNR_DIGITS = 9
_MAX_COMMAND = 32
_MAX_DATALEN_DIGITS = 9
_MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Beyond this a DATALEN is treated as a broken stream rather than buffered."""
_SHUTDOWN_WAIT = 5.0


class RelpProtocolError(Exception):
    pass


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

    def __init__(self, owner: SyslogInput) -> None:
        super().__init__(owner)
        self.limit = int(owner.config.max_message_bytes)
        self._buffer = b""
        self._opened = False
        self._closing = False
        """``close`` received or we are shutting down: read nothing more."""
        self._answers: deque[_Answer] = deque()
        self._uncommitted: list[_Answer] = []
        self._committer: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------- reading

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.metrics.inc("input_bytes_total", len(data))
        buffer = self._buffer + data if self._buffer else data
        frames: list[bytes] = []
        truncated: list[int] = []
        owed: list[_Answer] = []
        try:
            consumed = self._parse(buffer, frames, truncated, owed)
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
        self._buffer = buffer[consumed:]
        if frames:
            self.deliver(frames, truncated, owed)
        self._flush()

    def _parse(
        self, buffer: bytes, frames: list[bytes], truncated: list[int], owed: list[_Answer]
    ) -> int:
        """Handle every complete frame in ``buffer``; return how many bytes were used."""
        size = len(buffer)
        pos = 0
        while pos < size and not self._closing:
            # Tolerate stray whitespace between frames.
            while pos < size and buffer[pos] in b" \r\n":
                pos += 1
            if pos >= size:
                break
            header_end = buffer.find(b"\n", pos, pos + _MAX_TXNR_DIGITS + _MAX_COMMAND + 24)
            head = buffer[pos : header_end if header_end >= 0 else pos + 80]
            parts = head.split(b" ", 3)
            if len(parts) < 3 or (len(parts) == 3 and header_end < 0):
                if size - pos > _MAX_TXNR_DIGITS + _MAX_COMMAND + _MAX_DATALEN_DIGITS + 3:
                    raise RelpProtocolError(f"malformed header {bytes(head[:40])!r}")
                break  # header incomplete
            txnr, command, datalen_text = parts[0], parts[1], parts[2]
            if len(parts) == 3:
                datalen_text = datalen_text.rstrip(b"\r")
            if not (
                txnr.isdigit()
                and len(txnr) <= _MAX_TXNR_DIGITS
                and command.isalpha()
                and len(command) <= _MAX_COMMAND
                and datalen_text.isdigit()
                and len(datalen_text) <= _MAX_DATALEN_DIGITS
            ):
                raise RelpProtocolError(f"malformed header {bytes(head[:40])!r}")
            datalen = int(datalen_text)
            if datalen > _MAX_FRAME_BYTES:
                raise RelpProtocolError(f"DATALEN {datalen} too large")
            data_start = pos + len(txnr) + len(command) + len(datalen_text) + 3
            if datalen == 0:
                # "TXNR COMMAND 0\n", some clients add a space before the LF.
                end = buffer.find(b"\n", data_start - 1)
                if end < 0:
                    break
                data = b""
                pos = end + 1
            else:
                if size < data_start + datalen + 1:
                    break  # data incomplete
                if buffer[data_start - 1] != 0x20:
                    raise RelpProtocolError("no space before DATA")
                data = buffer[data_start : data_start + datalen]
                if buffer[data_start + datalen] != 0x0A:
                    raise RelpProtocolError(f"no LF after DATA of txnr {txnr.decode()}")
                pos = data_start + datalen + 1
            self._command(txnr, command, data, frames, truncated, owed)
        return pos

    def _command(
        self,
        txnr: bytes,
        command: bytes,
        data: bytes,
        frames: list[bytes],
        truncated: list[int],
        owed: list[_Answer],
    ) -> None:
        if command == b"syslog":
            if not self._opened:
                raise RelpProtocolError("syslog command before open")
            if data.endswith(b"\n"):
                data = data[:-1]
            if len(data) > self.limit:
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
        return not self._closing

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
