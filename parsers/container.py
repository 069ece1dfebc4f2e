"""Container log lines (CRI, Docker json-file, raw) to records.

Pure functions over bytes: the tail input reads a file, splits it into lines (the newline removed)
and hands them here in batches. Nothing here raises for any input bytes: a line that matches no
format becomes a record whose ``message`` is the raw text and whose ``parse_error`` says why,
counted in ``ContainerLogParser.parse_errors``.

* CRI (containerd, CRI-O): ``<RFC3339Nano> <stdout|stderr> <tags> <text>``; the first ``:``-
  separated tag is ``P`` (a partial piece: containerd cuts long lines every 16 KiB) or ``F``
  (the piece that ends the line). The text is kept exactly; no whitespace is stripped.
* Docker json-file: ``{"log":"text\\n","stream":"stdout","time":"..."}``; a ``log`` value
  without a trailing newline is a partial piece (Docker cuts lines at 16 KiB too).
* raw: one record per line, ``{"message": line, "time": <read time>}``.

Partial pieces are joined per stream (stdout and stderr share a file, and the other stream's
lines can sit between one line's pieces) up to ``max_line_bytes``: a longer line is emitted cut
at that size and flagged ``truncated``, and its further pieces are skipped (bytes counted).

``time`` is the line's own timestamp as UTC RFC 3339 with the runtime's fraction digits kept as
written (nanoseconds; runtimes drop trailing zeros). A local offset (``+02:00``) is converted to
UTC by integer arithmetic on the seconds; the fraction is never rounded through ``datetime``.
The epoch beside each record is exactly ``timeutil.rfc3339_to_epoch(record["time"])``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from parsers.container_time import CACHE_LIMIT, cri_time_to_utc, utc_second
from parsers.timeutil import format_epoch, rfc3339_to_epoch

__all__ = ["FORMATS", "ContainerLogParser", "cri_time_to_utc", "detect_format"]

FORMATS = ("auto", "cri", "docker", "raw")
_STREAMS = {"stdout": "stdout", "stderr": "stderr"}
_BYTE_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
_NAN = float("nan")


class _DockerLine(msgspec.Struct):
    log: str = ""
    stream: str = ""
    time: str = ""


_decode_docker = msgspec.json.Decoder(_DockerLine).decode

# b"YYYY-MM-DDTHH:MM:SS" of a UTC stamp -> (the same as text, its epoch as a float)
_utc_seconds: dict[bytes, tuple[str, float]] = {}
_POWERS_OF_TEN = [10**n for n in range(19)]


def detect_format(line: bytes) -> str | None:
    """``"docker"`` or ``"cri"`` if ``line`` is one, else None (undecided)."""
    if line[:1] == b"{":
        try:
            item = _decode_docker(line)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        return "docker" if item.stream and item.time else None
    head = line[:64].split(b" ", 3)
    if len(head) >= 3 and head[1] in (b"stdout", b"stderr") and head[2][:1] in (b"P", b"F"):
        try:
            text = head[0].decode("ascii")
        except UnicodeDecodeError:
            return None
        if cri_time_to_utc(text) is not None:
            return "cri"
    return None


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


class _Pending:
    """The pieces of one stream's unfinished line."""

    __slots__ = ("epoch", "first_line", "pieces", "size", "skipping", "time")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0
        self.time = ""
        self.epoch = 0.0
        self.first_line = -1
        """Line number (``ContainerLogParser.lines_seen`` count) of the first piece held."""
        self.skipping = False
        """The line was already emitted cut at max_line_bytes: drop pieces up to its end."""


class ContainerLogParser:
    """Lines of one file to records, keeping partial lines between batches. ``format`` is
    ``auto`` (decided by the first line that is CRI or Docker; lines before that are kept as
    ``parse_error`` records), ``cri``, ``docker`` or ``raw``."""

    def __init__(self, format: str = "auto", max_line_bytes: int = 1 << 20) -> None:
        if format not in FORMATS:
            raise ValueError(
                f"format: unknown container log format {format!r}; expected one of {FORMATS}"
            )
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1 byte")
        self.format = format
        self.detected: str | None = None if format == "auto" else format
        self.max_line_bytes = max_line_bytes
        self.parse_errors = 0
        self.truncated = 0
        """Lines emitted cut at max_line_bytes."""
        self.discarded_bytes = 0
        """Bytes of pieces skipped after a line was cut."""
        self.lines_seen = 0
        self._pending: dict[str, _Pending] = {}
        self._received = _NAN
        self._received_text = ""
        self._received_epoch = _NAN

    # --------------------------------------------------------------------------- state

    def pending_first_line(self) -> int | None:
        """The line number of the oldest piece still held for an unfinished line (not yet in
        any record), or None: a reader must not forget the bytes from that line on."""
        first: int | None = None
        for pending in self._pending.values():
            if pending.pieces and (first is None or pending.first_line < first):
                first = pending.first_line
        return first

    def flush(self) -> tuple[list[dict[str, Any]], list[float]]:
        """Records for the unfinished lines held (the file ends without their last piece)."""
        records: list[dict[str, Any]] = []
        times: list[float] = []
        for stream, pending in self._pending.items():
            if pending.pieces:
                message = _text(b"".join(pending.pieces))
                records.append({"time": pending.time, "stream": stream, "message": message})
                times.append(pending.epoch)
        self._pending.clear()
        return records, times

    def _set_received(self, received: float) -> None:
        self._received = received
        self._received_text = format_epoch(received, 6)
        # the epoch of that text, as rfc3339_to_epoch reads it back
        self._received_epoch = rfc3339_to_epoch(self._received_text)

    def _error(self, line: bytes, reason: str) -> dict[str, Any]:
        self.parse_errors += 1
        return {"time": self._received_text, "message": _text(line), "parse_error": reason}

    # --------------------------------------------------------------------------- parsing

    def parse_batch_with_times(
        self, lines: list[bytes], received: float
    ) -> tuple[list[dict[str, Any]], list[float]]:
        """Records for ``lines`` (each without its newline) and each record's ``time`` as
        seconds since the epoch. ``received``: when the batch was read (the ``time`` of raw
        lines and of lines that could not be parsed). A partial line gives no record until
        its last piece; the records come out in the order their lines ended."""
        if received != self._received:
            self._set_received(received)
        fmt = self.detected
        if fmt is None:
            return self._parse_undecided(lines)
        if fmt == "cri":
            return self._parse_cri(lines)
        if fmt == "docker":
            return self._parse_docker(lines)
        return self._parse_raw(lines)

    def _parse_undecided(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[float]]:
        records: list[dict[str, Any]] = []
        times: list[float] = []
        for index, line in enumerate(lines):
            found = detect_format(line)
            if found is not None:
                self.detected = found
                rest = self.parse_batch_with_times(lines[index:], self._received)
                records += rest[0]
                times += rest[1]
                return records, times
            self.lines_seen += 1
            records.append(self._error(line, "not a CRI or Docker json-file line"))
            times.append(self._received_epoch)
        return records, times

    def _parse_raw(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[float]]:
        self.lines_seen += len(lines)
        received_text = self._received_text
        records: list[dict[str, Any]] = [
            {"message": _text(line), "time": received_text} for line in lines
        ]
        limit = self.max_line_bytes
        if max(map(len, lines), default=0) > limit:
            for record, line in zip(records, lines, strict=True):
                if len(line) > limit:
                    record["message"] = line[:limit].decode("utf-8", "ignore")
                    record["truncated"] = True
                    self.truncated += 1
                    self.discarded_bytes += len(line) - limit
        return records, [self._received_epoch] * len(records)

    def _piece(
        self,
        records: list[dict[str, Any]],
        times: list[float],
        stream: str,
        utc: str,
        epoch: float,
        data: bytes,
        final: bool,
    ) -> None:
        """One piece of a line that is partial (``final`` False) or ends a partial line. Pieces
        are joined as bytes and decoded once: a runtime cuts at a byte count, inside a UTF-8
        character if it falls there."""
        pending = self._pending.get(stream)
        if pending is None:
            pending = self._pending[stream] = _Pending()
        if pending.skipping:
            self.discarded_bytes += len(data)
            if final:
                pending.skipping = False
            return
        if not pending.pieces:
            pending.time = utc
            pending.epoch = epoch
            pending.first_line = self.lines_seen
            pending.size = 0
        if pending.size + len(data) > self.max_line_bytes:
            room = self.max_line_bytes - pending.size
            pending.pieces.append(data[:room])
            self.discarded_bytes += len(data) - room
            self.truncated += 1
            records.append(
                {
                    "time": pending.time,
                    "stream": stream,
                    "message": b"".join(pending.pieces).decode("utf-8", "ignore"),
                    "truncated": True,
                }
            )
            times.append(pending.epoch)
            pending.pieces = []
            pending.skipping = not final
            return
        pending.pieces.append(data)
        pending.size += len(data)
        if final:
            records.append(
                {"time": pending.time, "stream": stream, "message": _text(b"".join(pending.pieces))}
            )
            times.append(pending.epoch)
            pending.pieces = []

    def _cut(
        self,
        records: list[dict[str, Any]],
        times: list[float],
        utc: str,
        epoch: float,
        stream: str,
        data: bytes,
    ) -> None:
        """A line in one piece that is longer than max_line_bytes."""
        self.truncated += 1
        self.discarded_bytes += len(data) - self.max_line_bytes
        cut = data[: self.max_line_bytes].decode("utf-8", "ignore")
        records.append({"time": utc, "stream": stream, "message": cut, "truncated": True})
        times.append(epoch)

    def _parse_cri(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[float]]:
        records: list[dict[str, Any]] = []
        times: list[float] = []
        append = records.append
        times_append = times.append
        streams = _BYTE_STREAMS
        pending = self._pending
        limit = self.max_line_bytes
        seconds = _utc_seconds
        first_line = self.lines_seen
        self.lines_seen += len(lines)
        for index, line in enumerate(lines):
            parts = line.split(b" ", 3)
            if len(parts) == 4:
                stamp, stream_bytes, tags, data = parts
            elif len(parts) == 3:
                stamp, stream_bytes, tags = parts
                data = b""
            else:
                append(self._error(line, "not a CRI log line"))
                times_append(self._received_epoch)
                continue
            stream = streams.get(stream_bytes)
            if tags == b"F":
                final = True
            elif tags == b"P":
                final = False
            elif tags[:1] in (b"F", b"P") and tags[1:2] == b":":
                final = tags[:1] == b"F"
            else:
                stream = None
            if stream is None:
                append(self._error(line, "not a CRI log line"))
                times_append(self._received_epoch)
                continue
            # UTC stamps (containerd) in one lookup per distinct second; the epoch is the sum
            # rfc3339_to_epoch computes from the text, so both agree exactly. The fraction's
            # value is int(digits) / 10**n: the double nearest to it, as float(b".digits") is
            # (both round correctly), without strtod's cost.
            second = seconds.get(stamp[:19])
            size = len(stamp)
            if second is None or stamp[-1] != 90:  # 90: b"Z" (a found second has 19 bytes)
                second = None
            elif size == 20:
                utc, epoch = second[0] + "Z", second[1]
            elif stamp[19] == 46 and size <= 39 and (digits := stamp[20:-1]).isdigit():  # "."
                utc = second[0] + stamp[19:].decode()
                epoch = second[1] + int(digits) / _POWERS_OF_TEN[size - 21]
            else:
                second = None
            if second is None:
                converted = cri_time_to_utc(stamp.decode("latin-1"))
                if converted is None:
                    append(self._error(line, "invalid timestamp"))
                    times_append(self._received_epoch)
                    continue
                utc, epoch = converted
                if stamp[-1:] == b"Z" and len(seconds) < CACHE_LIMIT:
                    found = utc_second(stamp[:19].decode("latin-1"), "Z")
                    if found is not None:
                        seconds[stamp[:19]] = (found[0], float(found[1]))
            if final and stream not in pending:
                if len(data) > limit:
                    self._cut(records, times, utc, epoch, stream, data)
                else:
                    try:
                        message = data.decode()
                    except UnicodeDecodeError:
                        message = data.decode("utf-8", "replace")
                    append({"time": utc, "stream": stream, "message": message})
                    times_append(epoch)
            else:
                self.lines_seen = first_line + index
                self._piece(records, times, stream, utc, epoch, data, final)
                self.lines_seen = first_line + len(lines)
                held = pending[stream]
                if not held.pieces and not held.skipping:
                    del pending[stream]
        return records, times

    def _parse_docker(self, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[float]]:
        records: list[dict[str, Any]] = []
        times: list[float] = []
        append = records.append
        times_append = times.append
        streams = _STREAMS
        pending = self._pending
        limit = self.max_line_bytes
        decode = _decode_docker
        stamp_cache: dict[str, tuple[str, float] | None] = {}
        for line in lines:
            try:
                item = decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError):
                append(self._error(line, "not a Docker json-file line"))
                times_append(self._received_epoch)
                self.lines_seen += 1
                continue
            stream = streams.get(item.stream)
            if stream is None:
                append(self._error(line, "not a Docker json-file line"))
                times_append(self._received_epoch)
                self.lines_seen += 1
                continue
            converted = stamp_cache.get(item.time)
            if converted is None:
                converted = cri_time_to_utc(item.time)
                if converted is None:
                    append(self._error(line, "invalid timestamp"))
                    times_append(self._received_epoch)
                    self.lines_seen += 1
                    continue
                stamp_cache[item.time] = converted
            utc, epoch = converted
            message = item.log
            final = message[-1:] == "\n"
            if final:
                message = message[:-1]
            if final and stream not in pending:
                if len(message) > limit and len(data := message.encode()) > limit:
                    self._cut(records, times, utc, epoch, stream, data)
                else:
                    append({"time": utc, "stream": stream, "message": message})
                    times_append(epoch)
            else:
                self._piece(records, times, stream, utc, epoch, message.encode(), final)
                held = pending[stream]
                if not held.pieces and not held.skipping:
                    del pending[stream]
            self.lines_seen += 1
        return records, times
