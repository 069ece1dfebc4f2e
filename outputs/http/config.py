"""``[[outputs]] type = "http"``: POSTs records to an HTTP endpoint (a log collector, a webhook,
Loki's or Splunk's JSON APIs behind a proxy, Vector's or fluent-bit's http input). Keys follow
fluent-bit's ``http`` output where they mean the same: ``http_user``, ``http_passwd``,
``compress``, ``format``, ``header`` (here a table, ``headers``)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import msgspec

from common.redact import redact_url, split_credentials
from common.units import Duration, Size
from outputs.base import OutputConfig


class HttpConfig(
    OutputConfig, tag_field="type", tag="http", kw_only=True, forbid_unknown_fields=True
):
    """POSTs each chunk's records to an HTTP endpoint as NDJSON (or a JSON array), gzip
    optional. 2xx delivers; 408, 429 and 5xx are retried; 401, 403 and 407 hold the records
    until the credentials work; any other status dead-letters the chunk with the answer."""

    url: str
    """The endpoint, ``http://`` or ``https://`` (``https://logs.example.com/ingest``). User
    info in it (``https://user:pass@host/``) is taken as ``http_user``/``http_passwd``."""
    method: Literal["POST", "PUT"] = "POST"
    """The request method."""
    format: Literal["ndjson", "json_lines", "json"] = "ndjson"
    """``ndjson`` (fluent-bit's ``json_lines``, also accepted): one JSON object per line,
    ``Content-Type: application/x-ndjson``. ``json``: one JSON array of the records,
    ``Content-Type: application/json``."""
    compress: Literal["none", "gzip"] = "none"
    """``gzip`` compresses the body and sends ``Content-Encoding: gzip``."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra request headers (``{ "X-Tenant" = "team-a", Authorization = "Bearer ${TOKEN}" }``);
    they replace the output's own (``Content-Type``). Never written to logs."""
    http_user: str | None = None
    """User name for HTTP basic authentication."""
    http_passwd: str | None = None
    """Password for HTTP basic authentication; never written to logs, metrics or dead-letter
    reasons (take it from the environment: ``"${HTTP_PASSWORD}"``)."""
    tls_verify: bool = True
    """Verify the server's certificate and name (``https://`` only)."""
    ca_file: str | None = None
    """CA bundle that signed the server's certificate; unset: the system's CAs."""
    timeout: Duration = Duration(30.0)
    """Longest time for one request, connecting and reading the answer included; a request that
    takes longer is retried."""
    max_batch_bytes: Size = Size(5 * 1024 * 1024)
    """Chunks ready at the same time share one request up to this many bytes of records (before
    compression), whatever their tags (the body does not carry the tag); a larger chunk goes
    alone. Nothing waits for more chunks. 0: one request per chunk."""

    def __post_init__(self) -> None:
        super().__post_init__()
        clean, user, password = split_credentials(self.url)
        parts = urlsplit(clean)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                'url: expected "http://host[:port]/path" or "https://...", got '
                f"{redact_url(self.url)!r}"
            )
        if user is not None:
            if self.http_user is not None:
                raise ValueError("url: holds a user name and http_user is set too; use one")
            self.url, self.http_user, self.http_passwd = clean, user, password
        if self.http_passwd is not None and self.http_user is None:
            raise ValueError("http_passwd: needs http_user")
        if self.timeout <= 0:
            raise ValueError("timeout: must be more than 0 seconds")
        for name, value in self.headers.items():
            if not name or any(c in name + value for c in "\r\n"):
                raise ValueError(f"headers: invalid header {name!r}")

    @property
    def content_type(self) -> str:
        return "application/json" if self.format == "json" else "application/x-ndjson"
