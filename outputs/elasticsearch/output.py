"""The Elasticsearch / OpenSearch output: chunks -> ``_bulk`` requests, every item accounted for.

Compatible with Elasticsearch 6 to 9 and OpenSearch 1 to 3 (and Amazon OpenSearch Service with
SigV4). Delivery hands ``send`` the chunks that are ready at once (``batching``: up to
``max_bulk_bytes`` of them, any tags), whose documents go out together in as few bulk requests
as ``max_bulk_bytes`` and ``max_bulk_docs`` allow. ``send`` returns when every record of every
chunk was accepted by the server (or already there: a 409 on ``create``) or dead-lettered because
the server refused the document itself (mapping conflict, parse error). Items rejected with 429 or
5xx are retried, only those, a bounded number of times inside ``send``; then ``send`` raises
RetryableError and the agent retries the chunks later (idempotent with ``id_mode = "hash"``;
without it, items the server already accepted in this process are remembered per chunk and not
sent twice, so a chunk whose items were all accepted or dead-lettered is not sent again). See
docs/elasticsearch.md."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any
from urllib.parse import quote

import msgspec

from common.redact import quote_body, redact_text
from outputs.base import (
    Batching,
    BlockedError,
    Chunk,
    Output,
    OutputContext,
    RetryableError,
)
from outputs.elasticsearch.bulk import (
    BulkItem,
    IndexNamer,
    ItemResult,
    Outcome,
    TimeMembers,
    bulk_body,
    classify,
    decode_record,
    describe_error,
    document_id,
    encode,
    error_type,
    parse_bulk_response,
    replace_dots,
    rfc3339_millis,
    splice,
    split_bulks,
)
from outputs.elasticsearch.config import ElasticsearchConfig
from outputs.elasticsearch.transport import Transport, TransportError

_BULK_FILTER = "filter_path=errors,items.*.status,items.*.error"


class ElasticsearchOutput(Output):
    type_name = "elasticsearch"
    config: ElasticsearchConfig

    def __init__(self, config: ElasticsearchConfig, context: OutputContext) -> None:
        super().__init__(config, context)
        self.log = context.logger
        self.metrics = context.metrics
        self.transport = Transport(
            config,
            context.logger,
            on_eject=lambda url: self.metrics.inc("output_es_host_ejections_total", host=url),
        )
        self.namer = IndexNamer(config.index_template)
        self.dead_letter_namer = (
            IndexNamer(config.dead_letter_index) if config.dead_letter_index else None
        )
        self.suppress_type_name = config.suppress_type_name
        self.version: str | None = None
        self.distribution: str | None = None
        self._requests = asyncio.Semaphore(config.workers)
        self._max_bulk_bytes = int(config.max_bulk_bytes)
        # chunk id -> positions already delivered or dead-lettered, for chunks whose send raised
        # RetryableError: the agent's retry then sends only the rest (no duplicates, no second
        # dead letter). Bounded: chunks given up by the agent fall out.
        self._progress: OrderedDict[str, set[int]] = OrderedDict()
        query = [_BULK_FILTER]
        if config.pipeline:
            query.append("pipeline=" + quote(config.pipeline, safe=""))
        self._bulk_path = "/_bulk?" + "&".join(query)
        self._time_key = encode(config.time_key)[:-1] + b'":"' if config.time_key else b""
        self._time_probe = encode(config.time_key) + b":" if config.time_key else b""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.detect_version()

    async def detect_version(self) -> bool:
        """``GET /``: distribution and version set defaults (``_type`` for Elasticsearch 6)."""
        try:
            response = await self.transport.request("GET", "/")
        except TransportError as exc:
            self._not_ready(f"no host answered GET /: {exc}")
            return False
        if response.status in (401, 403):
            self._not_ready(
                f"GET / on {response.host}: HTTP {response.status} (credentials?): "
                + _error_text(response.body)
            )
            return False
        if response.status != 200:
            self._not_ready(f"GET / on {response.host}: HTTP {response.status}")
            return False
        try:
            info = msgspec.json.decode(response.body)
            version = info["version"]
            number = str(version["number"])
            distribution = str(version.get("distribution") or "elasticsearch")
        except (msgspec.DecodeError, KeyError, TypeError):
            # AOSS and some proxies answer GET / differently: keep the defaults
            self.ready = True
            return True
        self.version, self.distribution = number, distribution
        if self.config.suppress_type_name is None:
            major = int(number.split(".")[0]) if number.split(".")[0].isdigit() else 7
            self.suppress_type_name = not (distribution == "elasticsearch" and major < 7)
        if not self.ready:
            self.log.info("%s %s reachable again", distribution, number)
        else:
            self.log.info("connected to %s %s at %s", distribution, number, response.host)
        self.ready = True
        return True

    def _not_ready(self, reason: str) -> None:
        self.ready = False
        self.log.warning("not ready: %s", redact_text(reason))

    async def stop(self) -> None:
        await self.transport.close()

    @property
    def batching(self) -> Batching:
        """Small chunks ready at once share bulk requests; nothing waits for more chunks."""
        return Batching(max_chunks=64, max_bytes=int(self.config.max_bulk_bytes))

    def batch_key(self, chunk: Chunk) -> Hashable:
        return None  # every document names its own index: tags mix freely in a bulk

    # ------------------------------------------------------------------ building

    def _build_items(self, chunk: Chunk, skip: set[int], offset: int = 0) -> list[BulkItem]:
        """The chunk's documents but those at ``skip``; an item's position is ``offset`` plus
        the record's position in the chunk (unique across the chunks of one write)."""
        config = self.config
        lines = chunk.lines()
        times = chunk.times()
        name_index = self.namer.for_chunk(chunk.tag)
        needs_record = self.namer.needs_record or config.replace_dots
        tag_member = (
            encode(config.tag_key) + b":" + encode(chunk.tag) + b","
            if config.include_tag_key
            else b""
        )
        tag_probe = encode(config.tag_key) + b":"
        op = config.op_type.encode()
        type_part = (
            b""
            if self.suppress_type_name is not False
            else (b',"_type":' + encode(config.type_name))
        )
        hashed = config.id_mode == "hash"
        replace = config.replace_dots
        time_key, time_probe = self._time_key, self._time_probe
        # Per index, the action line (its prefix when each action adds an _id): most records
        # of a chunk share one, so it is not formatted per record.
        actions: dict[str, bytes] = {}
        time_members = TimeMembers(time_key)
        items: list[BulkItem] = []
        append = items.append
        for position, line in enumerate(lines):
            if skip and position in skip:
                continue
            event_time = times[position]
            record = decode_record(line) if needs_record else None
            index = name_index(event_time, record)
            action = actions.get(index)
            if action is None:
                action = b'{"' + op + b'":{"_index":' + encode(index) + type_part
                if not hashed:
                    action += b"}}"
                actions[index] = action
            if hashed:
                action = action + b',"_id":"' + document_id(chunk.id, position).encode() + b'"}}'
            if replace and record is not None:
                line = encode(replace_dots(record))
            # A duplicate key would make the server refuse the document: never add one.
            added = tag_member if tag_member and tag_probe not in line else b""
            if time_key and time_probe not in line:
                added = time_members.member(event_time) + added
            append(BulkItem(offset + position, action, splice(line, added)))
        return items

    # ------------------------------------------------------------------ sending

    async def send(self, chunks: Sequence[Chunk]) -> None:
        if self.version is None and not self.ready:
            await self.detect_version()  # settles _type before the first bulk
        spans: list[tuple[int, int, Chunk, set[int]]] = []
        items: list[BulkItem] = []
        offset = 0
        for chunk in chunks:
            done = self._progress.get(chunk.id, set())
            items += self._build_items(chunk, done, offset)
            count = len(chunk.lines())
            spans.append((offset, offset + count, chunk, done))
            offset += count
        settled: set[int] = set()
        try:
            try:
                rejected = await self._deliver(items, settled)
            finally:
                for start, end, _, done in spans:
                    done.update(p - start for p in settled if start <= p < end)
            for start, end, chunk, done in spans:
                mine = [
                    (BulkItem(item.position - start, item.action, item.document), result)
                    for item, result in rejected
                    if start <= item.position < end
                ]
                if mine:
                    await self._dead_letter(chunk, mine, done)
        except RetryableError:
            for _, _, chunk, done in spans:
                self._remember(chunk.id, done)
            raise
        for chunk in chunks:
            self._progress.pop(chunk.id, None)

    def _remember(self, chunk_id: str, done: set[int]) -> None:
        if not done:
            return
        self._progress[chunk_id] = done
        self._progress.move_to_end(chunk_id)
        while len(self._progress) > 1024:
            self._progress.popitem(last=False)

    async def _deliver(
        self, items: list[BulkItem], done: set[int] | None = None
    ) -> list[tuple[BulkItem, ItemResult]]:
        """Send items until each is accepted or refused for good; returns the refused ones.
        ``done`` collects the positions accepted so far (kept if this raises)."""
        pending = items
        rejected: list[tuple[BulkItem, ItemResult]] = []
        attempt = 0
        while pending:
            outcome = Outcome()
            groups = split_bulks(pending, self._max_bulk_bytes, self.config.max_bulk_docs)
            results = await asyncio.gather(
                *(self._bulk(group, outcome) for group in groups), return_exceptions=True
            )
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if done is not None:
                done.update(outcome.settled)
            rejected.extend(outcome.rejected)
            self._count("accepted", outcome.accepted)
            self._count("conflict", outcome.conflicts)
            if failure is not None:
                raise failure
            if outcome.blocked:
                self._count("blocked", len(outcome.blocked))
                reasons = "; ".join(outcome.blocked_reasons)
                self.log.error(
                    "%d documents refused for a reason of the cluster or the configuration, "
                    "not the documents (kept, retried later): %s",
                    len(outcome.blocked),
                    reasons,
                )
                raise BlockedError(
                    f"{len(outcome.blocked)} documents blocked: {reasons}", "cluster"
                )
            if not outcome.retry:
                break
            attempt += 1
            self._count("retried", len(outcome.retry))
            if attempt > self.config.item_retry_limit:
                raise RetryableError(
                    f"{len(outcome.retry)} documents still rejected after {attempt} attempts: "
                    + "; ".join(outcome.retry_reasons)
                )
            delay = min(
                float(self.config.item_retry_max),
                float(self.config.item_retry_base) * 2 ** (attempt - 1),
            )
            await asyncio.sleep(random.uniform(delay / 2, delay))
            pending = outcome.retry
        return rejected

    async def _bulk(self, items: list[BulkItem], outcome: Outcome) -> None:
        """One bulk request; results are added to ``outcome``. A 413 splits the request in two;
        429/5xx on the whole request marks every item for retry; other errors raise."""
        body = bulk_body(items)
        async with self._requests:
            started = time.monotonic()
            try:
                response = await self.transport.request(
                    "POST",
                    self._bulk_path,
                    body,
                    content_type="application/x-ndjson",
                    compress=self.config.compression == "gzip",
                )
            except TransportError as exc:
                self.metrics.inc("output_es_requests_total", result="unreachable")
                self._not_ready(str(exc))
                raise RetryableError(f"no Elasticsearch host answered: {exc}") from None
            finally:
                self.metrics.observe("output_es_request_seconds", time.monotonic() - started)
        status = response.status
        self.metrics.inc("output_es_requests_total", result=str(status))
        if 200 <= status < 300:
            self.ready = True
            try:
                classify(items, parse_bulk_response(response.body), self.config.op_type, outcome)
            except ValueError as exc:
                raise RetryableError(f"{response.host}: {exc}") from None
            return
        reason = _error_text(response.body)
        if status == 413:
            if len(items) == 1:
                error = f"document too large for the server ({len(body)} bytes) {reason}"
                outcome.rejected.append((items[0], ItemResult(status=413, error=error.strip())))
                return
            # Learn the server's limit so later chunks do not split from the top again.
            limit = max(64 * 1024, len(body) // 2)
            if limit < self._max_bulk_bytes:
                self._max_bulk_bytes = limit
                self.log.warning(
                    "%s refused a %d-byte bulk (413): bulks now limited to %d bytes",
                    response.host,
                    len(body),
                    limit,
                )
            half = len(items) // 2
            halves = await asyncio.gather(
                self._bulk(items[:half], outcome),
                self._bulk(items[half:], outcome),
                return_exceptions=True,
            )
            for result in halves:
                if isinstance(result, BaseException):
                    raise result
            return
        if status == 429 or status >= 500:
            outcome.retry.extend(items)
            if len(outcome.retry_reasons) < 3:
                outcome.retry_reasons.append(f"HTTP {status} from {response.host}: {reason}")
            return
        if status in (401, 403):
            # Credentials can be fixed (a rotated secret, a new role mapping) without losing the
            # data: retried for as long as it takes (not bounded by retry_limit), loudly.
            self.ready = False
            self.log.error(
                "%s refused the credentials (HTTP %d): %s", response.host, status, reason
            )
            raise BlockedError(
                f"HTTP {status} from {response.host} (credentials or permissions): {reason}",
                "auth",
            )
        raise RetryableError(f"bulk request failed with HTTP {status} on {response.host}: {reason}")

    def _count(self, outcome: str, value: int) -> None:
        if value:
            self.metrics.inc("output_es_items_total", value, outcome=outcome)

    # ------------------------------------------------------------------ dead letters

    async def _dead_letter(
        self, chunk: Chunk, rejected: list[tuple[BulkItem, ItemResult]], done: set[int]
    ) -> None:
        lines = chunk.lines()
        if self.dead_letter_namer is not None:
            rejected = await self._index_dead_letters(chunk, rejected, done)
        groups: dict[tuple[int, str], list[tuple[BulkItem, ItemResult]]] = {}
        for item, result in rejected:
            groups.setdefault((result.status, error_type(result)), []).append((item, result))
        for group in groups.values():
            reason = describe_error(group[0][1])
            if len(group) > 1:
                reason += f" (and {len(group) - 1} more documents with this error)"
            # Raises DeadLetterError if they could not be kept: the positions stay unsettled
            # and the chunk unacknowledged (the agent logs the dead letter, once).
            self.context.dead_letter(chunk, [lines[item.position] for item, _ in group], reason)
            done.update(item.position for item, _ in group)
        self._count("dead_lettered", len(rejected))

    async def _index_dead_letters(
        self, chunk: Chunk, rejected: list[tuple[BulkItem, ItemResult]], done: set[int]
    ) -> list[tuple[BulkItem, ItemResult]]:
        """Index refused documents into dead_letter_index as strings with the error; returns
        those that could not be indexed there either (they go to the agent's dead letters)."""
        assert self.dead_letter_namer is not None
        now = time.time()
        # Named from the chunk, not the clock, and with ids from the chunk and position: a
        # resend after a crash (written, not yet acknowledged) overwrites the same documents.
        index = self.dead_letter_namer.for_chunk(chunk.tag)(chunk.created, None)
        lines = chunk.lines()
        times = chunk.times()
        stamp = rfc3339_millis(now)
        action_prefix = b'{"index":{"_index":' + encode(index)
        if self.suppress_type_name is False:
            action_prefix += b',"_type":' + encode(self.config.type_name)
        letters: list[BulkItem] = []
        by_position: dict[int, tuple[BulkItem, ItemResult]] = {}
        for item, result in rejected:
            letter = {
                "@timestamp": stamp,
                "event_time": rfc3339_millis(times[item.position]),
                "tag": chunk.tag,
                "chunk_id": chunk.id,
                "position": item.position,
                "status": result.status,
                "error_type": error_type(result),
                "error": describe_error(result),
                "document": lines[item.position].decode("utf-8", "replace"),
            }
            action = (
                action_prefix
                + b',"_id":"'
                + document_id(chunk.id, item.position).encode()
                + b'-dead-letter"}}'
            )
            letters.append(BulkItem(item.position, action, encode(letter)))
            by_position[item.position] = (item, result)
        refused = await self._deliver(letters)
        refused_positions = {letter.position for letter, _ in refused}
        indexed = len(letters) - len(refused_positions)
        self._count("dead_lettered", indexed)
        if indexed:
            self.context.dead_lettered(chunk, indexed, "dead_letter_index")
            self.log.warning(
                "chunk %s: %d refused documents indexed into %s", chunk.id, indexed, index
            )
        done.update(p for p in by_position if p not in refused_positions)
        return [by_position[p] for p in refused_positions]


def _error_text(body: bytes) -> str:
    """What an error answer says, fit for a log line or a dead-letter reason: credentials a
    proxy may echo redacted, size capped."""
    try:
        value: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return quote_body(body, 300)
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict):
            return quote_body(f"{error.get('type', '')}: {error.get('reason', '')}", 300)
        if error is not None:
            return quote_body(str(error), 300)
    return quote_body(body, 300)


__all__ = ["ElasticsearchOutput"]
