"""Stream framing: bytes of one connection -> syslog frames (RFC 6587).

Two framings exist on syslog streams:

* newline ("non-transparent framing"): every message ends with LF (a CR before it is dropped too);
* octet-counted: ``MSG-LEN SP MSG``. rsyslog counts a trailing LF into MSG-LEN (we strip one);
  ``logger --octet-count`` sends none.

``auto`` decides per connection on the first frame: digits followed by a space mean
octet-counted. A frame that breaks the octet-counted grammar (no digits, no space, an absurd
length) is not lost: the bytes up to the next LF become one frame, a framing error is counted,
and the next frame is examined again. Frames longer than ``max_message_bytes`` are cut; the
index of a cut frame is reported in ``truncated`` and the bytes beyond the limit are skipped
(and counted in ``discarded_bytes``) up to the end of the message.

The framer works on whole reads: one ``feed`` returns every frame the read completed. A message
that arrives over many reads is collected as a list of reads and joined once it is complete (or
cut at the limit): each byte is copied a bounded number of times, so a sender trickling a long
message costs linear time, never a re-copy of a growing buffer per read.
"""

from __future__ import annotations

from typing import Literal

Framing = Literal["auto", "newline", "octet_counted"]

_MAX_LENGTH_DIGITS = 10
_DIGITS = frozenset(b"0123456789")


class StreamFramer:
    """Framing state of one connection. ``feed`` returns ``(frames, truncated_indexes)``;
    ``framing_errors`` and ``discarded_bytes`` grow as it meets bad input (the caller reports
    and resets them)."""

    def __init__(self, framing: Framing, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self.octet_counted: bool | None = {"auto": None, "newline": False, "octet_counted": True}[
            framing
        ]
        self._parts: list[bytes] = []
        """Reads of an unfinished message (never more than about ``max_message_bytes``)."""
        self._pending_len = 0
        self._need = 0
        """Octet-counted: bytes the unfinished frame needs before it is worth parsing again."""
        self._skip_to_newline = False
        """Dropping the rest of a cut newline-framed message."""
        self._skip_bytes = 0
        """Bytes of a cut octet-counted message still to drop."""
        self.framing_errors = 0
        self.discarded_bytes = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_len

    @property
    def _pending(self) -> bytes:
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @_pending.setter
    def _pending(self, rest: bytes) -> None:
        self._parts = [rest] if rest else []
        self._pending_len = len(rest)

    def feed(self, data: bytes) -> tuple[list[bytes], list[int]]:
        frames: list[bytes] = []
        truncated: list[int] = []
        if self._skip_bytes:
            if len(data) <= self._skip_bytes:
                self._skip_bytes -= len(data)
                self.discarded_bytes += len(data)
                return frames, truncated
            self.discarded_bytes += self._skip_bytes
            data = data[self._skip_bytes :]
            self._skip_bytes = 0
        if self._skip_to_newline:
            end = data.find(b"\n")
            if end < 0:
                self.discarded_bytes += len(data)
                return frames, truncated
            self.discarded_bytes += end
            data = data[end + 1 :]
            self._skip_to_newline = False
        if self._parts:
            self._parts.append(data)
            self._pending_len += len(data)
            if self.octet_counted is False:
                if self._pending_len <= self.max_message_bytes and b"\n" not in data:
                    return frames, truncated  # the message goes on: nothing to parse yet
            elif self._pending_len < self._need:
                return frames, truncated  # the frame is not complete yet
            buffer = self._pending
        else:
            buffer = data
        self._pending = b""
        self._need = 0
        if not buffer:
            return frames, truncated
        if self.octet_counted is None:
            self.octet_counted = buffer[:1].isdigit()
        if self.octet_counted:
            self._feed_octet_counted(buffer, frames, truncated)
        else:
            self._feed_newline(buffer, 0, frames, truncated)
        return frames, truncated

    def finish(self) -> tuple[list[bytes], list[int]]:
        """The connection ended: what is left becomes a last frame. An unfinished newline frame
        is a whole message whose sender omitted the LF; an unfinished octet-counted frame is
        cut (flagged truncated and counted as a framing error)."""
        rest, self._pending = self._pending, b""
        if not rest or self._skip_bytes or self._skip_to_newline:
            return [], []
        if self.octet_counted and rest[:1].isdigit():
            space = rest.find(b" ")
            self.framing_errors += 1
            if 0 < space <= _MAX_LENGTH_DIGITS and rest[:space].isdigit():
                body = rest[space + 1 :]
                return ([body], [0]) if body else ([], [])
            return [rest[: self.max_message_bytes]], [0]
        frame = rest[:-1] if rest.endswith(b"\r") else rest
        if len(frame) > self.max_message_bytes:
            self.discarded_bytes += len(frame) - self.max_message_bytes
            return [frame[: self.max_message_bytes]], [0]
        return ([frame], []) if frame else ([], [])

    # ------------------------------------------------------------------------ newline

    def _feed_newline(
        self, buffer: bytes, start: int, frames: list[bytes], truncated: list[int]
    ) -> None:
        limit = self.max_message_bytes
        if start:
            buffer = buffer[start:]
        lines = buffer.split(b"\n")
        rest = lines.pop()
        if (
            b"\r" not in buffer
            and b"" not in lines
            and (len(buffer) <= limit or max(map(len, lines), default=0) <= limit)
        ):
            # The usual read: no CR, no empty line, nothing too long. C-level scans instead
            # of a Python loop over every line.
            frames.extend(lines)
            lines = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                continue
            if len(line) > limit:
                self.discarded_bytes += len(line) - limit
                truncated.append(len(frames))
                line = line[:limit]
            frames.append(line)
        if len(rest) > limit:
            # No LF within the limit: cut here, drop the rest of the message as it arrives.
            self.discarded_bytes += len(rest) - limit
            truncated.append(len(frames))
            frames.append(rest[:limit])
            self._skip_to_newline = True
        else:
            self._pending = rest

    # ------------------------------------------------------------------- octet counted

    def _feed_octet_counted(self, buffer: bytes, frames: list[bytes], truncated: list[int]) -> None:
        limit = self.max_message_bytes
        size = len(buffer)
        pos = 0
        while pos < size:
            space = buffer.find(b" ", pos, pos + _MAX_LENGTH_DIGITS + 1)
            if space < 0 and size - pos <= _MAX_LENGTH_DIGITS and buffer[pos:].isdigit():
                self._need = 0
                break  # the length itself is split across reads
            if space < 0 or not buffer[pos:space].isdigit():
                # Not ``MSG-LEN SP``: keep the bytes up to the next LF as one message so
                # nothing is lost, count the error, and look at the frame after it afresh.
                self.framing_errors += 1
                end = buffer.find(b"\n", pos)
                if end < 0:
                    # No LF yet either: the sender is evidently newline-framing; follow it.
                    self.octet_counted = False
                    self._feed_newline(buffer, pos, frames, truncated)
                    return
                line = buffer[pos:end]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > limit:
                    self.discarded_bytes += len(line) - limit
                    truncated.append(len(frames))
                    line = line[:limit]
                if line:
                    frames.append(line)
                pos = end + 1
                continue
            length = int(buffer[pos:space])
            body_start = space + 1
            body_end = body_start + length
            if length > limit:
                # Cut at the limit; the rest is skipped, now or as it arrives.
                if size - body_start < limit:
                    self._need = body_start + limit - pos
                    break
                truncated.append(len(frames))
                frames.append(buffer[body_start : body_start + limit])
                self.discarded_bytes += min(size, body_end) - (body_start + limit)
                if body_end > size:
                    self._skip_bytes = body_end - size
                    return
                pos = body_end
                continue
            if body_end > size:
                self._need = body_end - pos
                break
            if length and buffer[body_end - 1] == 0x0A:
                frame = buffer[body_start : body_end - 1]
            else:
                frame = buffer[body_start:body_end]
            if frame:
                frames.append(frame)
            pos = body_end
            # Between frames some senders put an LF of their own; it is not part of a message.
            while pos < size and buffer[pos] in b"\r\n":
                pos += 1
        need = self._need
        self._pending = buffer[pos:]
        self._need = need
