"""Keeping credentials out of everything the agent writes: URLs with ``user:pass@``, and error
bodies quoted from destinations (a proxy that echoes the request leaks ``Authorization`` or
``X-Amz-Security-Token``).

A leaf module (stdlib only): outputs import it; the agent uses it for logs, dead-letter reasons,
metrics labels and ``--check`` output.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

REDACTED = "[redacted]"

MAX_QUOTED_BYTES = 512
"""A destination's error body is quoted at most this long in logs and dead-letter reasons."""

_SECRET_NAMES = (
    r"authorization|proxy-authorization|cookie|set-cookie|x-amz-security-token|"
    r"x-amz-credential|x-amz-signature|x-api-key|api[-_]?key|apikey|x-auth-token|"
    r"password|passwd|secret|access[-_]?key|secret[-_]?access[-_]?key|session[-_]?token|token|credential|signature"
)
# "Name: value" (a header line, up to the end of the line) or name=value / "name":"value" /
# 'name': 'value' (query strings, JSON, Python reprs), case-insensitive.
_HEADER_LINE = re.compile(rf"(?im)^(\s*(?:{_SECRET_NAMES})\s*:\s*)[^\r\n]*")
_ASSIGNMENT = re.compile(
    rf"(?i)((?<![a-z0-9_-])(?:{_SECRET_NAMES})[\"']?\s*[:=]\s*[\"']?)"
    r"(?:Basic |Bearer |ApiKey |AWS4-HMAC-SHA256 )?[^\s\"'&,;}<]+"
)
# scheme://user:pass@host  (also user@host with no password: the user name may be a key id)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]*@")
# A credential in XML as S3 echoes it (<AWSAccessKeyId>...</AWSAccessKeyId>, ...)
_XML_SECRET = re.compile(
    r"(?i)(<(AWSAccessKeyId|SignatureProvided|StringToSign(?:Bytes)?|CanonicalRequest(?:Bytes)?|"
    r"X-Amz-Security-Token|Authorization)>)[^<]*(</\2>)"
)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pass@host:9200/p`` -> (``http://host:9200/p``, ``user``, ``pass``), with
    percent-escapes in the user and password decoded. Without user info: (url, None, None)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit(SplitResult(parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), (unquote(password) if colon else None)


def redact_url(url: str) -> str:
    """A URL fit to show: user info replaced, secret query parameters masked."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """``text`` with user info in URLs, secret header lines, ``name=value`` / ``"name": "value"``
    pairs for secret names, and credentials S3 echoes in XML replaced by ``[redacted]``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    text = _HEADER_LINE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)
    text = _XML_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    return text


def quote_body(body: bytes | str, limit: int = MAX_QUOTED_BYTES) -> str:
    """A destination's answer as it may appear in a log line or a dead-letter reason: decoded
    (invalid UTF-8 replaced), credentials redacted, at most ``limit`` characters (and a note of
    how much was cut)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    # Redact before cutting so a secret cut in half is still recognised.
    text = redact_text(text[: limit * 4])
    if len(text) > limit:
        cut = len(body) - limit
        text = text[:limit] + f"... ({cut} more)"
    return text
