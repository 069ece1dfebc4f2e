"""The Elasticsearch output against a real OpenSearch node (tests/peers/opensearch.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from outputs.base import BlockedError, Chunk, DeadLetterError, RetryableError
from tests.chunks import send_each
from tests.conftest import free_port
from tests.es_helpers import MemoryChunk, make_output, syslog_record
from tests.peers.faultproxy import FaultProxy
from tests.peers.opensearch import OpenSearchNode, java_available, opensearch_fixture  # noqa: F401

pytestmark = [pytest.mark.opensearch, pytest.mark.timeout(600)]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_records_are_searchable_in_indices_named_from_event_time(
    opensearch: OpenSearchNode,
) -> None:
    before = [syslog_record(i, time="2026-11-28T23:59:59.999Z") for i in range(30)]
    after = [syslog_record(i, time="2026-11-29T00:00:00.001+00:00") for i in range(30, 80)]
    chunk = MemoryChunk("Syslog.Auth", before + after)
    output, metrics, dead = make_output(
        hosts=opensearch.url, index="t1-${tag}-%Y.%m.%d", include_tag_key=True
    )

    run(send_each(output, [chunk]))

    assert opensearch.count("t1-syslog.auth-2026.11.28") == 30
    assert opensearch.count("t1-syslog.auth-2026.11.29") == 50
    assert metrics.counter("output_es_items_total", outcome="accepted") == 80
    assert dead.calls == []
    hits = opensearch.search("t1-syslog.auth-*", query={"term": {"seq": 3}})
    assert len(hits) == 1
    source = hits[0]["_source"]
    expected = dict(before[3], tag="Syslog.Auth")
    expected["@timestamp"] = "2026-11-28T23:59:59.999Z"
    assert source == expected
    # fields are indexed as their types: a range query over pid works
    assert opensearch.count("t1-*", {"range": {"pid": {"gte": 1070}}}) == 10
    assert opensearch.count("t1-*", {"match": {"severity": "err"}}) == 10
    assert output.version and output.suppress_type_name is True


def test_logstash_format_and_existing_timestamp_kept(opensearch: OpenSearchNode) -> None:
    records = [syslog_record(i, time="2026-01-02T03:04:05Z") for i in range(5)]
    records[0]["@timestamp"] = "1999-01-01T00:00:00Z"
    output, _, _ = make_output(
        hosts=opensearch.url, logstash_format=True, logstash_prefix="ls-test", compression="gzip"
    )

    run(send_each(output, [MemoryChunk("t", records)]))

    hits = {h["_source"]["seq"]: h["_source"] for h in opensearch.search("ls-test-2026.01.02")}
    assert len(hits) == 5
    assert hits[0]["@timestamp"] == "1999-01-01T00:00:00Z"  # not added twice
    assert hits[1]["@timestamp"] == "2026-01-02T03:04:05.000Z"


def _conflicting_chunk() -> tuple[MemoryChunk, set[bytes]]:
    records = [
        syslog_record(i, pid={"nested": i}) if i % 4 == 1 else syslog_record(i) for i in range(40)
    ]
    chunk = MemoryChunk("conflict", records)
    bad = {
        line for line, record in zip(chunk.lines(), records, strict=True) if record["seq"] % 4 == 1
    }
    return chunk, bad


def test_mapping_conflict_dead_letters_exactly_the_bad_documents(
    opensearch: OpenSearchNode,
) -> None:
    output, metrics, dead = make_output(hosts=opensearch.url, index="conflict-a")
    first = MemoryChunk("conflict", [syslog_record(i) for i in range(1000, 1005)])  # pid: long
    chunk, bad = _conflicting_chunk()

    run(send_each(output, [first, chunk]))

    assert set(dead.lines) == bad and len(dead.lines) == len(bad) == 10
    assert all(chunk_id == chunk.id for chunk_id, _, _ in dead.calls)
    assert all("mapper_parsing_exception" in reason for _, _, reason in dead.calls)
    assert opensearch.count("conflict-a") == 5 + 30
    assert metrics.counter("output_es_items_total", outcome="dead_lettered") == 10
    assert metrics.counter("output_es_items_total", outcome="accepted") == 35


def test_dead_letter_index_holds_refused_documents_with_the_error(
    opensearch: OpenSearchNode,
) -> None:
    output, metrics, dead = make_output(
        hosts=opensearch.url, index="conflict-b", dead_letter_index="dead-letters-%Y"
    )
    first = MemoryChunk("conflict", [syslog_record(i) for i in range(1000, 1005)])
    chunk, bad = _conflicting_chunk()

    run(send_each(output, [first, chunk]))

    assert dead.calls == []
    assert opensearch.count("conflict-b") == 35
    letters = opensearch.search(f"dead-letters-{time.gmtime(chunk.created).tm_year}")
    assert len(letters) == 10
    assert {letter["_source"]["document"].encode() for letter in letters} == bad
    for letter in letters:
        source = letter["_source"]
        assert source["status"] == 400
        assert source["error_type"] == "mapper_parsing_exception"
        assert source["chunk_id"] == chunk.id and source["tag"] == "conflict"
        assert json.loads(source["document"])["pid"] == {"nested": source["position"]}
    assert metrics.counter("output_es_items_total", outcome="dead_lettered") == 10


def test_outage_is_retryable_and_hashed_ids_never_duplicate(opensearch: OpenSearchNode) -> None:
    chunk = MemoryChunk("outage", [syslog_record(i) for i in range(200)])
    output, metrics, _ = make_output(hosts=opensearch.url, index="outage", id_mode="hash")

    async def during_outage() -> None:
        await output.start()
        assert output.ready
        opensearch.stop()
        try:
            with pytest.raises(RetryableError):
                await output.send([chunk])
            assert not output.ready
        finally:
            opensearch.start()
        await output.send([chunk])  # the agent's retry, node back
        assert output.ready
        await output.send([chunk])  # a resend of an acknowledged chunk (crash before the ack)
        await output.stop()

    run(during_outage())
    assert opensearch.count("outage") == 200

    # a new process (kill -9 between request and ack, then restart) sends the chunk again
    again, _, _ = make_output(hosts=opensearch.url, index="outage", id_mode="hash")
    run(send_each(again, [chunk]))
    assert opensearch.count("outage") == 200
    assert metrics.counter("output_es_items_total", outcome="accepted") == 400


def test_create_into_data_stream_counts_409_as_delivered(opensearch: OpenSearchNode) -> None:
    template = {"index_patterns": ["ds-logs-*"], "data_stream": {}, "priority": 500}
    assert opensearch.request("PUT", "/_index_template/ds-logs", template)["acknowledged"]
    chunk = MemoryChunk("app", [syslog_record(i) for i in range(50)])
    output, metrics, dead = make_output(
        hosts=opensearch.url, index="ds-logs-${tag}", op_type="create", id_mode="hash"
    )

    run(send_each(output, [chunk, chunk]))

    streams = opensearch.request("GET", "/_data_stream/ds-logs-app")["data_streams"]
    assert [stream["name"] for stream in streams] == ["ds-logs-app"]
    assert opensearch.count("ds-logs-app") == 50
    assert metrics.counter("output_es_items_total", outcome="accepted") == 50
    assert metrics.counter("output_es_items_total", outcome="conflict") == 50
    assert dead.calls == []


def test_dead_host_is_ejected_and_the_live_one_gets_everything(
    opensearch: OpenSearchNode,
) -> None:
    dead_host = f"http://127.0.0.1:{free_port()}"
    output, metrics, _ = make_output(
        hosts=[dead_host, opensearch.url], index="failover", host_eject_for="10m"
    )
    chunks = [MemoryChunk("f", [syslog_record(i + 10 * k) for i in range(10)]) for k in range(4)]

    run(send_each(output, chunks))

    assert opensearch.count("failover") == 40
    dead_entry, live_entry = output.transport.hosts
    assert dead_entry.ejected_until > time.monotonic() + 60
    assert dead_entry.failures == 1  # ejected once, then skipped
    assert metrics.counter("output_es_host_ejections_total", host=dead_host) == 1
    assert live_entry.ejected_until == 0.0
    assert output.ready


def test_ingest_pipeline_applies(opensearch: OpenSearchNode) -> None:
    pipeline = {"processors": [{"set": {"field": "enriched", "value": "yes"}}]}
    assert opensearch.request("PUT", "/_ingest/pipeline/add-enriched", pipeline)["acknowledged"]
    output, _, _ = make_output(hosts=opensearch.url, index="piped", pipeline="add-enriched")

    run(send_each(output, [MemoryChunk("p", [syslog_record(i) for i in range(3)])]))

    assert opensearch.count("piped", {"term": {"enriched": "yes"}}) == 3


def test_replace_dots_and_record_field_in_index_name(opensearch: OpenSearchNode) -> None:
    records = [syslog_record(i, **{"k8s.pod": f"pod-{i}"}) for i in range(4)]
    output, _, _ = make_output(hosts=opensearch.url, index="byhost-${host}-%Y", replace_dots=True)

    run(send_each(output, [MemoryChunk("d", records)]))

    assert opensearch.count("byhost-node-0-2026") == 2
    assert opensearch.count("byhost-node-1-2026") == 1
    hit = opensearch.search("byhost-node-1-2026")[0]["_source"]
    assert hit["k8s_pod"] == "pod-1" and "k8s" not in hit


# ------------------------------------------------------------- a node that pushes back


@pytest.fixture(scope="module")
def constrained() -> Iterator[OpenSearchNode]:
    """A node with one write thread and a queue of one (real 429s under concurrent bulks) and
    a 1 MB request limit (real 413s)."""
    if not java_available():
        pytest.skip("java is not installed: the real OpenSearch node cannot run")
    settings = {
        "thread_pool.write.size": "1",
        "thread_pool.write.queue_size": "1",
        "http.max_content_length": "1mb",
    }
    with OpenSearchNode(settings=settings) as node:
        yield node


def test_429_items_are_retried_one_by_one_without_duplicates(constrained: OpenSearchNode) -> None:
    index_settings = {"settings": {"number_of_shards": 4, "number_of_replicas": 0}}
    constrained.request("PUT", "/pressure", index_settings)
    chunks = [
        MemoryChunk("p", [syslog_record(i + 1000 * k) for i in range(1000)]) for k in range(4)
    ]
    # id_mode "none": a duplicate would show in the count, so this also proves that only the
    # rejected items are sent again, in the send and across the agent's retries.
    output, metrics, dead = make_output(
        hosts=constrained.url,
        index="pressure",
        workers=4,
        max_bulk_docs=100,
        item_retry_base="20ms",
        item_retry_max="200ms",
    )

    async def deliver(chunk: MemoryChunk) -> int:
        for attempt in range(50):  # the agent's retry loop
            try:
                await output.send([chunk])
                return attempt
            except RetryableError:
                await asyncio.sleep(0.2)
        raise AssertionError("chunk never delivered")

    async def main() -> None:
        await output.start()
        await asyncio.gather(*(deliver(chunk) for chunk in chunks))
        await output.stop()

    run(main())

    retried = metrics.counter("output_es_items_total", outcome="retried")
    assert retried > 0, "the node never answered 429: nothing was tested"
    assert constrained.count("pressure") == 4000
    assert metrics.counter("output_es_items_total", outcome="accepted") == 4000
    assert dead.calls == []


def test_413_splits_the_bulk_and_dead_letters_a_document_too_big(
    constrained: OpenSearchNode,
) -> None:
    records = [syslog_record(i, message="x" * 2000) for i in range(1500)]  # ~3.4 MB
    records.append(syslog_record(99999, message="y" * 1_100_000))
    chunk = MemoryChunk("big", records)
    output, metrics, dead = make_output(hosts=constrained.url, index="big", max_bulk_bytes="8MiB")

    run(send_each(output, [chunk]))

    assert constrained.count("big") == 1500
    assert len(dead.calls) == 1 and dead.calls[0][1] == [chunk.lines()[-1]]
    assert "413" in dead.calls[0][2]
    assert metrics.counter("output_es_requests_total", result="413") >= 1
    assert output._max_bulk_bytes < 8 * 1024 * 1024  # learned the server's limit


def test_cluster_and_config_refusals_wait_instead_of_dead_lettering(
    opensearch: OpenSearchNode,
) -> None:
    # a write block is what the flood-stage disk watermark puts on every index
    opensearch.request("PUT", "/blocked", {"settings": {"index.blocks.write": True}})
    chunk = MemoryChunk("b", [syslog_record(i) for i in range(20)])
    output, metrics, dead = make_output(hosts=opensearch.url, index="blocked")
    missing_pipeline, _, dead_too = make_output(
        hosts=opensearch.url, index="unblocked", pipeline="does-not-exist"
    )

    async def main() -> None:
        await output.start()
        with pytest.raises(RetryableError, match="cluster_block_exception"):
            await output.send([chunk])
        opensearch.request("PUT", "/blocked/_settings", {"index.blocks.write": False})
        await output.send([chunk])  # the agent's retry once the disk was freed
        await output.stop()
        await missing_pipeline.start()
        with pytest.raises(RetryableError, match=r"pipeline with id \[does-not-exist\]"):
            await missing_pipeline.send([chunk])
        await missing_pipeline.stop()

    run(main())

    assert dead.calls == [] and dead_too.calls == []
    assert metrics.counter("output_es_items_total", outcome="blocked") == 20
    assert opensearch.count("blocked") == 20


def test_unreachable_at_start_is_not_ready_without_raising() -> None:
    output, _, _ = make_output(hosts=f"http://127.0.0.1:{free_port()}")

    async def main() -> None:
        await output.start()
        await output.stop()

    run(main())
    assert output.ready is False


def test_a_retried_chunk_sends_only_what_was_not_accepted(opensearch: OpenSearchNode) -> None:
    # id_mode "none": without the output's memory of accepted positions the retry would
    # index the first day's documents twice
    opensearch.request("PUT", "/partial-2026.11.29", {"settings": {"index.blocks.write": True}})
    records = [syslog_record(i, time=f"2026-11-{28 + i % 2}T08:00:00Z") for i in range(30)]
    chunk = MemoryChunk("partial", records)
    output, metrics, dead = make_output(hosts=opensearch.url, index="partial-%Y.%m.%d")

    async def main() -> None:
        await output.start()
        with pytest.raises(RetryableError):
            await output.send([chunk])
        assert opensearch.count("partial-2026.11.28") == 15
        opensearch.request("PUT", "/partial-2026.11.29/_settings", {"index.blocks.write": False})
        await output.send([chunk])
        await output.stop()

    run(main())

    assert opensearch.count("partial-2026.11.28") == 15
    assert opensearch.count("partial-2026.11.29") == 15
    assert metrics.counter("output_es_items_total", outcome="accepted") == 30 and dead.calls == []


# ------------------------------------------------------------------ not about the data, secrets

ECHOING_401 = (
    b'{"error":{"type":"security_exception","reason":"missing authentication credentials '
    b"for REST request [/_bulk]; request headers: Authorization: Basic ZWxhc3RpYzpzM2NyM3Q=\\n"
    b'X-Amz-Security-Token: SESSIONTOKEN"},"status":401}'
)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_blocked_then_delivered_and_never_leak(
    opensearch: OpenSearchNode, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """401/403 are about the credentials, not the documents: BlockedError (retried for as long
    as it takes, never dead-lettered), with the destination's answer redacted. Credentials
    written in the URL go into the Authorization header and nowhere else."""
    index = f"auth-{status}"
    chunk = MemoryChunk("auth", [syslog_record(i) for i in range(20)])
    seen: list[str] = []

    def bulk(request: Any) -> bool:
        seen.append(request.headers.get("Authorization", ""))
        return request.path == "/_bulk"

    with FaultProxy(opensearch.url) as proxy:
        port = proxy.url.rsplit(":", 1)[1]
        output, metrics, dead = make_output(
            hosts=f"http://elastic:s3cr3t@127.0.0.1:{port}", index=index, id_mode="hash"
        )
        assert output.config.host_list == [proxy.url]

        async def main() -> None:
            await output.start()
            proxy.respond(status, ECHOING_401, when=bulk, content_type="application/json")
            with pytest.raises(BlockedError) as raised:
                await output.send([chunk])
            assert raised.value.cause == "auth"
            text = str(raised.value)
            assert str(status) in text and "security_exception" in text
            for secret in ("s3cr3t", "ZWxhc3RpYzpzM2NyM3Q=", "SESSIONTOKEN"):
                assert secret not in text
            assert not output.ready
            proxy.clear()  # the secret was rotated
            await output.send([chunk])
            await output.stop()

        with caplog.at_level(logging.DEBUG, logger="test.es"):
            run(main())
    assert dead.calls == []
    assert opensearch.count(index) == 20
    assert seen and all(header == "Basic ZWxhc3RpYzpzM2NyM3Q=" for header in seen)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused the credentials" in logged
    assert "s3cr3t" not in logged and "ZWxhc3RpYzpzM2NyM3Q=" not in logged
    assert "SESSIONTOKEN" not in logged
    counters = metrics.registry.counters.values()
    labels = [value for series in counters for key in series for _, value in key]
    assert not any("s3cr3t" in value for value in labels)


def test_dead_letter_index_ids_make_a_resend_overwrite(opensearch: OpenSearchNode) -> None:
    """A crash after the refused documents were indexed into dead_letter_index and before the
    chunk was acknowledged: the resend overwrites the same dead letters."""
    first = MemoryChunk("conflict", [syslog_record(i) for i in range(1000, 1005)])
    chunk, bad = _conflicting_chunk()
    for _ in range(2):  # two processes: the second one resends the chunk
        output, _, dead = make_output(
            hosts=opensearch.url, index="conflict-d", dead_letter_index="dl-resend-%Y"
        )
        run(send_each(output, [first, chunk]))
        assert dead.calls == []
    opensearch.refresh()
    assert opensearch.count(f"dl-resend-{time.gmtime(chunk.created).tm_year}") == len(bad)


def test_chunks_of_one_write_share_a_bulk_request_and_dead_letter_apart(
    opensearch: OpenSearchNode,
) -> None:
    """Delivery hands several small chunks (any tags) to one ``send``: their documents go out in
    one bulk request, and a refused document is dead-lettered under its own chunk."""
    output, metrics, dead = make_output(hosts=opensearch.url, index="merged-${tag}")
    assert output.batch_key(MemoryChunk("a", [])) == output.batch_key(MemoryChunk("b", []))
    assert output.batching.max_chunks > 1
    first = MemoryChunk("first", [syslog_record(i) for i in range(2000, 2005)])
    seed = MemoryChunk("conflict", [syslog_record(i) for i in range(1000, 1005)])  # pid: long
    chunk, bad = _conflicting_chunk()

    async def main() -> None:
        await output.start()
        await output.send([seed])
        requests = metrics.counter("output_es_requests_total", result="200")
        await output.send([first, chunk])
        after = metrics.counter("output_es_requests_total", result="200")
        assert after - requests == 1
        await output.stop()

    run(main())
    assert set(dead.lines) == bad
    assert {chunk_id for chunk_id, _, _ in dead.calls} == {chunk.id}
    opensearch.refresh()
    assert opensearch.count("merged-first") == 5
    assert opensearch.count("merged-conflict") == 5 + 30
    assert metrics.counter("output_es_items_total", outcome="accepted") == 5 + 5 + 30
    assert metrics.counter("output_es_items_total", outcome="dead_lettered") == 10


def test_dead_letters_that_cannot_be_kept_leave_the_chunk_unsettled(
    opensearch: OpenSearchNode,
) -> None:
    """The dead-letter directory refuses (full, not writable): send raises DeadLetterError (the
    agent keeps the chunk); the retry sends only the refused documents and keeps them."""
    output, metrics, dead = make_output(hosts=opensearch.url, index="conflict-e")
    first = MemoryChunk("conflict", [syslog_record(i) for i in range(1000, 1005)])
    chunk, bad = _conflicting_chunk()
    failing = True

    def dead_letter(refused: Chunk, lines: Any, reason: str) -> None:
        if failing:
            raise DeadLetterError("dead-letter directory full", "dead_letter_full")
        dead(refused, lines, reason)

    output.context.dead_letter = dead_letter

    async def main() -> None:
        nonlocal failing
        await output.start()
        await output.send([first])
        with pytest.raises(DeadLetterError):
            await output.send([chunk])
        failing = False
        await output.send([chunk])
        await output.stop()

    run(main())
    assert set(dead.lines) == bad and len(dead.lines) == len(bad)
    assert opensearch.count("conflict-e") == 5 + 30
    assert metrics.counter("output_es_items_total", outcome="accepted") == 35
