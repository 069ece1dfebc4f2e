"""Container log files written byte for byte as the runtimes write them, for the tail tests.

* containerd and CRI-O (CRI format): ``<time> <stream> <P|F> <text>\\n``, one ``write`` per line,
  a line longer than 16 KiB cut into ``P`` pieces of 16 KiB (cut by bytes, inside a UTF-8
  character if it falls there) and a last ``F`` piece; times in Go's ``RFC3339Nano``: trailing
  zeros of the fraction dropped (the dot too when it is all zeros); containerd writes UTC (``Z``),
  CRI-O wrote the node's local offset (``+02:00``) for years.
* Docker's json-file driver: ``{"log":"<text>\\n","stream":"stdout","time":"<RFC3339Nano>"}``,
  Go's JSON escaping (``<``, ``>``, ``&`` as ``\\u003c``...), a line longer than 16 KiB as pieces
  whose ``log`` has no trailing newline.

Every line carries ``seq=N end`` (tests/numbered.py) so a loss or a duplicate shows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

PIECE = 16 * 1024
"""containerd's and Docker's maximum bytes of text per written line."""


def go_rfc3339nano(epoch_ns: int, offset_minutes: int = 0) -> str:
    """Go's ``time.RFC3339Nano`` of ``epoch_ns`` in a zone ``offset_minutes`` east of UTC."""
    local_ns = epoch_ns + offset_minutes * 60 * 1_000_000_000
    seconds, nanos = divmod(local_ns, 1_000_000_000)
    parts = time.gmtime(seconds)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", parts)
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _go_json_string(text: str) -> str:
    """Go's encoding/json for a string: HTML characters and U+2028/9 escaped."""
    out = json.dumps(text, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        out = out.replace(char, escape)
    return out


class RuntimeWriter:
    """Appends a container's output to ``path`` as a runtime does; ``reopen`` after a rotation
    (what kubelet asks the runtime to do, and what logrotate's ``create`` expects)."""

    def __init__(self, path: Path, style: str = "containerd") -> None:
        assert style in ("containerd", "crio", "docker")
        self.path = path
        self.style = style
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._clock = time.time_ns()

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def close(self) -> None:
        os.close(self.fd)

    def _stamp(self) -> str:
        # strictly increasing, with every kind of trailing-zero pattern over time
        self._clock = max(self._clock + 1, time.time_ns())
        return go_rfc3339nano(self._clock, 120 if self.style == "crio" else 0)

    def pieces(self, text: str, stream: str = "stdout") -> list[bytes]:
        """The physical lines one line of output becomes."""
        data = text.encode()
        cut = [data[i : i + PIECE] for i in range(0, len(data), PIECE)] or [b""]
        lines = []
        for index, piece in enumerate(cut):
            final = index == len(cut) - 1
            if self.style == "docker":
                log = piece.decode("utf-8", "replace") + ("\n" if final else "")
                lines.append(
                    (
                        '{"log":' + _go_json_string(log) + ',"stream":"' + stream
                        + '","time":"' + self._stamp() + '"}\n'
                    ).encode()
                )  # fmt: skip
            else:
                flag = b"F" if final else b"P"
                stamp = self._stamp().encode()
                lines.append(stamp + b" " + stream.encode() + b" " + flag + b" " + piece + b"\n")
        return lines

    def write(self, text: str, stream: str = "stdout") -> None:
        for line in self.pieces(text, stream):
            os.write(self.fd, line)  # one write per physical line, as the runtimes do


def kubelet_rotate(path: Path) -> Path:
    """kubelet's rotation: rename ``0.log`` to ``0.log.<timestamp>`` (the runtime is then asked
    to reopen; until it does it still writes to the renamed file)."""
    rotated = path.with_name(
        path.name + "." + time.strftime("%Y%m%d-%H%M%S") + f"{time.time_ns() % 10**6}"
    )
    os.rename(path, rotated)
    return rotated
