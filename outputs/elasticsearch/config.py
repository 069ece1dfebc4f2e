"""The Elasticsearch / OpenSearch output's configuration: every key, its default and its checks.

Imports nothing that needs the ``elasticsearch`` extra, so a config validates without aiohttp.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import msgspec

from common.redact import redact_url, split_credentials
from common.units import Duration, Size
from outputs.base import OutputConfig
from outputs.elasticsearch.bulk import IndexNamer


class ElasticsearchConfig(
    OutputConfig, tag_field="type", tag="elasticsearch", kw_only=True, forbid_unknown_fields=True
):
    hosts: str | list[str] = "http://127.0.0.1:9200"
    """One URL or a list; requests go round-robin, a failing host is skipped for host_eject_for."""
    index: str = "agent-%Y.%m.%d"
    """Index (or data stream) name: strftime fields from the record's event time (UTC),
    ``${tag}``, and ``${field.path}`` from the record (costs a decode per record)."""
    logstash_format: bool = False
    """Index = logstash_prefix + logstash_prefix_separator + logstash_dateformat (as fluent-bit)."""
    logstash_prefix: str = "logstash"
    """First part of the index name with logstash_format."""
    logstash_prefix_separator: str = "-"
    """Between logstash_prefix and the date with logstash_format."""
    logstash_dateformat: str = "%Y.%m.%d"
    """strftime fields from the record's event time (UTC), the last part of the index name
    with logstash_format."""
    op_type: Literal["index", "create"] = "index"
    """``create`` for data streams; a 409 (already exists) then counts as delivered."""
    pipeline: str | None = None
    """Ingest pipeline applied by the server."""
    suppress_type_name: bool | None = None
    """Leave ``_type`` out of action lines. Unset: decided from the server's version (only
    Elasticsearch 6 gets ``_type``)."""
    type_name: str = "_doc"
    """``_type`` sent to Elasticsearch 6 (or when suppress_type_name = false)."""
    time_key: str = "@timestamp"
    """Field added with the event time (RFC3339 UTC, milliseconds); "" adds none. Not added when
    the record already has this key."""
    include_tag_key: bool = False
    """Add the chunk's tag to each document (not when the record already has tag_key)."""
    tag_key: str = "tag"
    """Field name of the tag added by include_tag_key."""
    replace_dots: bool = False
    """Dots in field names -> underscores. Costs a decode and an encode per record."""
    id_mode: Literal["none", "hash"] = "none"
    """``hash``: ``_id`` derived from the chunk id and record position, so a resend overwrites."""
    max_bulk_bytes: Size = Size(5 * 1024 * 1024)
    """Bound of one bulk request body (before gzip): small chunks ready at once share a request
    up to this, a chunk larger than that is split into several requests. Lowered at run time
    when the server answers 413."""
    max_bulk_docs: int = 10000
    """Bound of documents per bulk request."""
    workers: int = 2
    """Bulk requests in flight for this output (and writes, each a group of chunks, at once)."""
    timeout: Duration = Duration(60.0)
    """Per HTTP request."""
    item_retry_limit: int = 3
    """In-send retries of items rejected with 429/5xx before send gives the chunk back."""
    item_retry_base: Duration = Duration(0.5)
    """First backoff of the in-send retries, doubled each time, jittered."""
    item_retry_max: Duration = Duration(10.0)
    """Cap of the in-send retry backoff."""
    host_eject_for: Duration = Duration(30.0)
    """How long a host that failed to connect (or answered 502/503/504 when there are several)
    is skipped."""
    dead_letter_index: str | None = None
    """Refused documents are indexed here (original as a string, with the error) instead of the
    agent's dead-letter directory; strftime fields from the chunk's creation time. Their ``_id``
    comes from the chunk and position, so a resend after a crash overwrites, never duplicates."""

    user: str | None = None
    """Basic authentication. ``http://user:password@host:9200`` in ``hosts`` is taken out of the
    URL into ``user`` and ``password`` (URLs are shown in logs and metrics)."""
    password: str | None = None
    """Basic authentication password; needs user."""
    api_key: str | None = None
    """Base64 ``id:key`` (as returned by the create API key call) or the raw ``id:key``."""
    token: str | None = None
    """Bearer token."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra HTTP headers on every request."""
    ca_file: str | None = None
    """CA bundle (PEM) to verify the servers; unset: the system's."""
    cert_file: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    key_file: str | None = None
    """Private key of cert_file, when not in the same file; needs cert_file."""
    verify_tls: bool = True
    """``false`` accepts any certificate (testing only)."""
    compression: Literal["none", "gzip"] = "none"
    """``gzip`` compresses request bodies."""
    aws_auth: bool = False
    """Sign requests with AWS SigV4 (botocore credential chain: environment, shared files, IRSA
    web identity, instance role); needs the ``s3`` extra."""
    aws_region: str | None = None
    """Region of the domain; unset: ``AWS_REGION`` / the AWS config."""
    aws_service: Literal["es", "aoss"] = "es"
    """``es`` for OpenSearch Service domains, ``aoss`` for Serverless."""

    def __post_init__(self) -> None:
        super().__post_init__()
        hosts = [self.hosts] if isinstance(self.hosts, str) else list(self.hosts)
        if not hosts:
            raise ValueError("hosts must name at least one URL")
        self._take_credentials_from_urls(hosts)
        for url in self.host_list:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"hosts: expected http(s)://host[:port], got {redact_url(url)!r}")
            if parts.query or parts.fragment:
                raise ValueError(f"hosts: {redact_url(url)!r} must not have a query or fragment")
        if not self.index and not self.logstash_format:
            raise ValueError("index must not be empty")
        if self.max_bulk_bytes < 1024:
            raise ValueError("max_bulk_bytes must be at least 1KiB")
        if self.max_bulk_docs < 1:
            raise ValueError("max_bulk_docs must be at least 1")
        if self.item_retry_limit < 0:
            raise ValueError("item_retry_limit cannot be negative")
        if self.password is not None and not self.user:
            raise ValueError("password needs user")
        schemes = [self.user is not None, self.api_key is not None, self.token is not None]
        if sum(schemes) + self.aws_auth > 1:
            raise ValueError("use only one of user/password, api_key, token and aws_auth")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.include_tag_key and not self.tag_key:
            raise ValueError("tag_key must not be empty when include_tag_key is true")
        if '"' in self.time_key or '"' in self.tag_key:
            raise ValueError("time_key and tag_key cannot contain a double quote")
        IndexNamer(self.index_template)  # validates the placeholders

    def _take_credentials_from_urls(self, hosts: list[str]) -> None:
        """``http://user:pass@host`` -> the URL without them, and ``user``/``password``."""
        found: set[tuple[str, str | None]] = set()
        clean: list[str] = []
        for url in hosts:
            bare, user, password = split_credentials(url)
            clean.append(bare)
            if user is not None:
                found.add((user, password))
        if not found:
            return
        if len(found) > 1:
            raise ValueError("hosts: the URLs carry different user:password credentials")
        user, password = found.pop()
        if (self.user is not None and (self.user, self.password) != (user, password)) or (
            self.api_key is not None or self.token is not None or self.aws_auth
        ):
            raise ValueError(
                "hosts: credentials in a URL and in user/password, api_key, token or aws_auth: "
                "use one"
            )
        self.user, self.password = user, password
        self.hosts = clean[0] if isinstance(self.hosts, str) else clean

    @property
    def host_list(self) -> list[str]:
        return [self.hosts] if isinstance(self.hosts, str) else list(self.hosts)

    @property
    def index_template(self) -> str:
        if self.logstash_format:
            return self.logstash_prefix + self.logstash_prefix_separator + self.logstash_dateformat
        return self.index


class OpenSearchConfig(ElasticsearchConfig, tag="opensearch"):
    """The same output under ``type = "opensearch"``."""


__all__ = ["ElasticsearchConfig", "OpenSearchConfig"]
