"""Building Elasticsearch/OpenSearch bulk bodies from encoded records, and reading the answers.

Pure functions over bytes, no I/O. A record line is never decoded on the default path: the fields
the output adds (``@timestamp``, the tag key) are spliced in after the line's opening ``{``, and
index names and ``@timestamp`` come from the event times the buffer computed at ingestion. Only
``replace_dots`` and index templates naming record fields other than ``${tag}`` decode a record.
"""

from __future__ import annotations

import hashlib
import re
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from common.redact import quote_body

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
# Characters an index name may not hold (Elasticsearch and OpenSearch rules), and ':' which
# would address a remote cluster.
_BAD_INDEX_CHARS = re.compile(r'[\\/*?"<>| ,#:]')

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def sanitize_index(name: str) -> str:
    """Lowercase, forbidden characters -> ``_``, no leading ``-_+``: what the server accepts."""
    name = _BAD_INDEX_CHARS.sub("_", name.lower()).lstrip("-_+")
    return name or "unknown"


def get_path(record: Any, parts: tuple[str, ...]) -> Any:
    value = record
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class IndexNamer:
    """Renders the index template for each record: strftime fields from the record's event time
    (UTC), ``${tag}`` from the chunk, other ``${a.b}`` from the record (which costs a decode)."""

    def __init__(self, template: str) -> None:
        self.template = template
        fields = [m.group(1).strip() for m in _PLACEHOLDER.finditer(template)]
        for name in fields:
            if not name or any(not part for part in name.split(".")):
                raise ValueError(f"invalid placeholder ${{{name}}} in index {template!r}")
        self.record_fields = [name for name in fields if name != "tag"]
        self.needs_record = bool(self.record_fields)

    def for_chunk(self, tag: str) -> Callable[[float, dict[str, Any] | None], str]:
        """A function (event time, decoded record or None) -> index name, for one chunk."""
        # ${tag} is the same for the whole chunk: substitute it before strftime, escaping '%'.
        template = self.template.replace("${tag}", tag.replace("%", "%%"))
        template = _PLACEHOLDER.sub(lambda m: "${" + m.group(1).strip() + "}", template)
        cache: dict[int, str] = {}

        if not self.needs_record:

            def by_time(event_time: float, record: dict[str, Any] | None) -> str:
                second = int(event_time)
                name = cache.get(second)
                if name is None:
                    if len(cache) > 4096:
                        cache.clear()
                    name = sanitize_index(time.strftime(template, time.gmtime(second)))
                    cache[second] = name
                return name

            return by_time

        def by_record(event_time: float, record: dict[str, Any] | None) -> str:
            second = int(event_time)
            dated = cache.get(second)
            if dated is None:
                if len(cache) > 4096:
                    cache.clear()
                dated = time.strftime(template, time.gmtime(second))
                cache[second] = dated

            def value(match: re.Match[str]) -> str:
                found = get_path(record, tuple(match.group(1).split(".")))
                return "" if found is None else str(found)

            return sanitize_index(_PLACEHOLDER.sub(value, dated))

        return by_record


STAMP_SECOND = "%Y-%m-%dT%H:%M:%S"
MILLIS_MEMBER_TAILS = tuple(b'.%03dZ",' % millis for millis in range(1000))
"""What follows a time member's second: ``.652Z",`` for 652 ms (the member's closing quote and
the comma before the document's own members)."""


def second_and_millis(event_time: float) -> tuple[int, int]:
    """The UTC second and the millisecond of an event time, rounded to the nearest millisecond
    (so 23:59:59.9996 is the next day's 00:00:00.000)."""
    return divmod(round(event_time * 1000), 1000)


def rfc3339_millis(event_time: float) -> str:
    """RFC3339 UTC with milliseconds: ``2026-11-29T21:30:20.652Z``."""
    second, millis = second_and_millis(event_time)
    return f"{time.strftime(STAMP_SECOND, time.gmtime(second))}.{millis:03d}Z"


class TimeMembers:
    """Documents' time members (``"@timestamp":"2026-11-29T21:30:20.652Z",``) as
    ``rfc3339_millis`` writes the time, each second formatted once: most records of a chunk
    share a few seconds, so one of these serves a chunk."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        """The member's name, colon and opening quote: ``"@timestamp":"``."""
        self._heads: dict[int, bytes] = {}

    def member(self, event_time: float) -> bytes:
        second, millis = second_and_millis(event_time)
        head = self._heads.get(second)
        if head is None:
            head = self._key + time.strftime(STAMP_SECOND, time.gmtime(second)).encode()
            self._heads[second] = head
        return head + MILLIS_MEMBER_TAILS[millis]


def document_id(chunk_id: str, position: int) -> str:
    """Deterministic ``_id`` for record ``position`` of chunk ``chunk_id``: 20 URL-safe characters
    (120 bits of BLAKE2b), so a resend of the same chunk overwrites instead of duplicating."""
    digest = hashlib.blake2b(f"{chunk_id}:{position}".encode(), digest_size=15).digest()
    return urlsafe_b64encode(digest).decode()


def replace_dots(value: Any) -> Any:
    """Keys with dots -> underscores, recursively (``a.b`` would otherwise become an object)."""
    if isinstance(value, dict):
        return {
            (key.replace(".", "_") if "." in key else key): replace_dots(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [replace_dots(item) for item in value]
    return value


def splice(line: bytes, prefix: bytes) -> bytes:
    """Insert ``prefix`` (``"k":v,`` members) right after the opening brace of a JSON object."""
    if not prefix or line[:1] != b"{":
        return line  # not an object: sent as is, the server's per-item error dead-letters it
    if line[1:2] == b"}":
        return b"{" + prefix[:-1] + line[1:]
    return b"{" + prefix + line[1:]


@dataclass(slots=True)
class BulkItem:
    """One document of a bulk request: the record's position in the chunk, the action line and
    the document line (both without newline)."""

    position: int
    action: bytes
    document: bytes

    @property
    def size(self) -> int:
        return len(self.action) + len(self.document) + 2


def bulk_body(items: Sequence[BulkItem]) -> bytes:
    parts: list[bytes] = []
    for item in items:
        parts.append(item.action)
        parts.append(item.document)
    parts.append(b"")
    return b"\n".join(parts)


def split_bulks(items: Sequence[BulkItem], max_bytes: int, max_docs: int) -> list[list[BulkItem]]:
    """Consecutive groups within ``max_bytes`` and ``max_docs`` (a single oversized document is
    a group of its own: the server decides; a 413 then dead-letters it)."""
    groups: list[list[BulkItem]] = []
    current: list[BulkItem] = []
    size = 0
    for item in items:
        item_size = item.size
        if current and (size + item_size > max_bytes or len(current) >= max_docs):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        groups.append(current)
    return groups


# ------------------------------------------------------------------------------- responses


class ItemError(msgspec.Struct):
    type: str = ""
    reason: str | None = None
    caused_by: dict[str, Any] | None = None


class ItemResult(msgspec.Struct):
    status: int = 0
    error: ItemError | str | None = None


class BulkResponse(msgspec.Struct):
    errors: bool = False
    items: list[dict[str, ItemResult]] = msgspec.field(default_factory=list)


_decode_bulk = msgspec.json.Decoder(BulkResponse).decode


def parse_bulk_response(body: bytes) -> BulkResponse:
    """Raises ValueError when the body is not a bulk answer."""
    try:
        return _decode_bulk(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a bulk response: {exc}: {body[:200]!r}") from None


def describe_error(result: ItemResult) -> str:
    error = result.error
    if error is None:
        return f"status {result.status}"
    if isinstance(error, str):
        return f"status {result.status}: {quote_body(error)}"
    text = f"status {result.status} {error.type}: {error.reason or ''}".rstrip(": ")
    cause = error.caused_by
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type', '')}: {cause['reason']})"
    return quote_body(text)


def error_type(result: ItemResult) -> str:
    error = result.error
    if isinstance(error, ItemError):
        return error.type
    return ""


@dataclass
class Outcome:
    """Classified results of one round of bulk requests."""

    accepted: int = 0
    conflicts: int = 0
    settled: list[int] = field(default_factory=list)
    """Positions accepted or already there."""
    retry: list[BulkItem] = field(default_factory=list)
    retry_reasons: list[str] = field(default_factory=list)
    rejected: list[tuple[BulkItem, ItemResult]] = field(default_factory=list)
    blocked: list[BulkItem] = field(default_factory=list)
    blocked_reasons: list[str] = field(default_factory=list)


# Per-item 4xx answers that are about the cluster or the configuration, not the document: a
# read-only index (flood-stage disk watermark), a closed or missing index, missing permissions,
# a pipeline that does not exist, `index` into a data stream. Dead-lettering would throw away
# good data; the chunk waits instead (RetryableError, bounded by the agent's retry_limit).
_BLOCKING_TYPES = frozenset(
    {
        "cluster_block_exception",
        "index_closed_exception",
        "index_not_found_exception",
        "security_exception",
        "authorization_exception",
        "authentication_exception",
        "no_such_index_exception",
    }
)
_BLOCKING_REASONS = (
    "pipeline with id [",
    "only write ops with an op_type of create are allowed in data streams",
    "no write index is defined for alias",
)


def is_blocking(result: ItemResult) -> bool:
    """True when a 4xx item answer is about the cluster or the config (see _BLOCKING_TYPES)."""
    if result.status in (401, 403, 404):
        return True
    error = result.error
    if isinstance(error, ItemError):
        if error.type in _BLOCKING_TYPES:
            return True
        reason = error.reason or ""
        return any(marker in reason for marker in _BLOCKING_REASONS)
    return False


def classify(
    items: Sequence[BulkItem], response: BulkResponse, op_type: str, outcome: Outcome
) -> None:
    """Sort the items of one bulk request by their result. Raises ValueError when the answer
    does not hold one result per item."""
    if not response.errors and not response.items:
        # filter_path drops "items" from a fully successful answer on some servers
        outcome.accepted += len(items)
        outcome.settled.extend(item.position for item in items)
        return
    if len(response.items) != len(items):
        raise ValueError(
            f"bulk answer has {len(response.items)} results for {len(items)} documents"
        )
    for item, entry in zip(items, response.items, strict=True):
        result = next(iter(entry.values()), ItemResult())
        status = result.status
        if 200 <= status < 300:
            outcome.accepted += 1
            outcome.settled.append(item.position)
        elif status == 409 and op_type == "create":
            outcome.conflicts += 1  # already there: a resend of a delivered document
            outcome.settled.append(item.position)
        elif status == 429 or status >= 500 or status == 0:
            outcome.retry.append(item)
            reason = describe_error(result)
            if len(outcome.retry_reasons) < 3 and reason not in outcome.retry_reasons:
                outcome.retry_reasons.append(reason)
        elif is_blocking(result):
            outcome.blocked.append(item)
            reason = describe_error(result)
            if len(outcome.blocked_reasons) < 3 and reason not in outcome.blocked_reasons:
                outcome.blocked_reasons.append(reason)
        else:
            outcome.rejected.append((item, result))


def decode_record(line: bytes) -> dict[str, Any] | None:
    try:
        value = _json_decode(line)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def encode(value: Any) -> bytes:
    return _json_encode(value)
