"""Object keys from a template: ``prefix`` + ``key_format``.

Placeholders: ``${tag}``, ``${tag[N]}`` (N-th dot-separated part of the tag, from 0), ``${host}``
(the node name), ``${chunk_id}`` (id of the object's first chunk), ``${index}`` (the object's
sequence number, persisted), ``${ext}`` (the compression's suffix: ".gz", ".zst" or "");
strftime fields (``%Y``, ``%m``, ...) take the UTC creation time of the object's first chunk.
Substituted values are made key-safe: characters outside ``A-Za-z0-9._-`` become ``_``.

The *group* of a chunk is the rendered key without ``${chunk_id}`` and ``${index}``: chunks
of one tag with the same group go into one object.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_TAG_PART = re.compile(r"^tag\[(\d+)\]$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_STRFTIME = re.compile(r"%.")
_VARYING = ("chunk_id", "index")
KNOWN = ("tag", "tag[N]", "host", "chunk_id", "index", "ext")


def safe(value: str) -> str:
    """A value made safe inside an S3 key (no "/", no spaces, nothing that needs encoding)."""
    cleaned = _UNSAFE.sub("_", value)
    return cleaned if cleaned.strip(".") else cleaned.replace(".", "_") or "_"


class KeyTemplate:
    """A parsed key template: literal segments (strftime applied) and placeholders."""

    def __init__(self, template: str, *, ext: str, host: str) -> None:
        self.template = template
        self.ext = ext
        self.host = safe(host) if host else "unknown-host"
        self._segments: list[tuple[bool, str]] = []  # (is_placeholder, text)
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            if match.start() > pos:
                self._segments.append((False, template[pos : match.start()]))
            name = match.group(1)
            if name not in ("tag", "host", "chunk_id", "index", "ext") and not _TAG_PART.match(
                name
            ):
                raise ValueError(
                    f"unknown placeholder ${{{name}}} in key_format; known: "
                    + ", ".join(f"${{{k}}}" for k in KNOWN)
                )
            self._segments.append((True, name))
            pos = match.end()
        if pos < len(template):
            self._segments.append((False, template[pos:]))
        names = {text for is_placeholder, text in self._segments if is_placeholder}
        if "chunk_id" not in names:
            raise ValueError(
                "key_format must contain ${chunk_id}: it makes every object key unique and lets "
                "a retried upload overwrite its own object instead of adding a duplicate"
            )
        if "host" not in names:
            raise ValueError(
                "key_format (or prefix) must contain ${host}: chunk ids are unique per node only, "
                "so without the node name two nodes could overwrite each other's objects"
            )
        self._has_time = any(
            _STRFTIME.search(text) for is_placeholder, text in self._segments if not is_placeholder
        )

    def group(self, tag: str, created: float) -> tuple[str, ...]:
        """The rendered key with ``${chunk_id}`` and ``${index}`` left as empty markers."""
        when = time.gmtime(created) if self._has_time else None
        parts: list[str] = []
        for is_placeholder, text in self._segments:
            if not is_placeholder:
                parts.append(time.strftime(text, when) if when is not None else text)
            elif text in _VARYING:
                parts.append("\0" + text)
            else:
                parts.append(self._value(text, tag))
        return tuple(parts)

    def key(self, group: Sequence[str], chunk_id: str, index: int) -> str:
        values = {"\0chunk_id": safe(chunk_id), "\0index": f"{index:06d}"}
        return "".join(values.get(part, part) for part in group)

    def _value(self, name: str, tag: str) -> str:
        if name == "tag":
            return safe(tag)
        if name == "host":
            return self.host
        if name == "ext":
            return self.ext
        match = _TAG_PART.match(name)
        assert match is not None
        parts = tag.split(".")
        position = int(match.group(1))
        return safe(parts[position]) if position < len(parts) else "_"

    def static_prefix(self) -> str:
        """The literal start of every key, up to its last "/" (for listing and IAM scoping)."""
        first = self._segments[0] if self._segments else (True, "")
        literal = "" if first[0] else first[1]
        cut = _STRFTIME.search(literal)
        if cut:
            literal = literal[: cut.start()]
        return literal[: literal.rfind("/") + 1]

    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching every key this template renders for this host."""
        out: list[str] = []
        for is_placeholder, text in self._segments:
            if is_placeholder:
                if text == "host":
                    out.append(re.escape(self.host))
                elif text == "ext":
                    out.append(re.escape(self.ext))
                else:
                    out.append(r"[A-Za-z0-9._-]+")
            else:
                pos = 0
                for directive in _STRFTIME.finditer(text):
                    out.append(re.escape(text[pos : directive.start()]))
                    out.append("%" if directive.group() == "%%" else r".+?")
                    pos = directive.end()
                out.append(re.escape(text[pos:]))
        return re.compile("".join(out) + r"\Z")
