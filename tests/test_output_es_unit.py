"""The Elasticsearch output without a server: config validation, bulk bodies, result sorting."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import msgspec
import pytest

from common.units import config_dec_hook
from outputs.elasticsearch import ElasticsearchConfig, OpenSearchConfig
from outputs.elasticsearch.bulk import (
    BulkItem,
    IndexNamer,
    Outcome,
    bulk_body,
    classify,
    document_id,
    parse_bulk_response,
    rfc3339_millis,
    sanitize_index,
    splice,
    split_bulks,
)
from outputs.elasticsearch.transport import SigV4Signer, Transport
from tests.chunks import TestChunk
from tests.es_helpers import MemoryChunk, make_output, syslog_record


def config(**settings: Any) -> ElasticsearchConfig:
    return msgspec.convert(
        {"type": "elasticsearch", **settings}, ElasticsearchConfig, dec_hook=config_dec_hook
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"hosts": []}, "hosts must name at least one URL"),
        ({"hosts": "localhost:9200"}, "hosts: expected http(s)://host[:port]"),
        ({"hosts": ["http://h:9200?x=1"]}, "must not have a query"),
        ({"user": "u", "api_key": "k"}, "only one of"),
        ({"token": "t", "aws_auth": True}, "only one of"),
        ({"password": "p"}, "password needs user"),
        ({"key_file": "/k.pem"}, "key_file needs cert_file"),
        ({"index": "x-${a..b}"}, "invalid placeholder"),
        ({"max_bulk_docs": 0}, "max_bulk_docs must be at least 1"),
        ({"max_bulk_bytes": "10"}, "max_bulk_bytes must be at least 1KiB"),
    ],
)
def test_config_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        config(**settings)


def test_config_units_and_types() -> None:
    cfg = config(hosts="https://es:9200", max_bulk_bytes="2MiB", timeout="500ms")
    assert cfg.host_list == ["https://es:9200"]
    assert cfg.max_bulk_bytes == 2 * 1024 * 1024 and cfg.timeout == 0.5
    with pytest.raises(msgspec.ValidationError, match="op_type"):
        config(op_type="update")
    alias = msgspec.convert({"type": "opensearch"}, OpenSearchConfig)
    assert isinstance(alias, ElasticsearchConfig)


def test_config_validates_through_the_agent_loader() -> None:
    pytest.importorskip("agent.inputs.syslog", reason="the agent's config needs an input type")
    from agent.config import parse_config

    parsed = parse_config(
        '[[inputs]]\ntype = "syslog"\nmode = "udp"\nlisten = "127.0.0.1:5514"\n'
        '[[outputs]]\ntype = "elasticsearch"\nhosts = ["http://127.0.0.1:9200"]\n'
        'index = "audit-${tag}-%Y.%m.%d"\nid_mode = "hash"\nmax_bulk_bytes = "1MiB"\n'
    )
    output = parsed.outputs[0]
    assert isinstance(output, ElasticsearchConfig)
    assert output.id_mode == "hash" and output.max_bulk_bytes == 1024 * 1024
    assert output.index == "audit-${tag}-%Y.%m.%d"  # a record placeholder, not the environment


def test_index_names_from_event_time_tag_and_fields() -> None:
    namer = IndexNamer("logs-${tag}-%Y.%m.%d")
    assert not namer.needs_record
    name = namer.for_chunk("Syslog.Auth%d")
    assert name(1795910399.9, None) == "logs-syslog.auth%d-2026.11.28"  # '%' in a tag is literal
    assert name(1795910400.0, None) == "logs-syslog.auth%d-2026.11.29"
    by_field = IndexNamer("k8s-${ kubernetes.namespace }-%Y")
    assert by_field.needs_record
    render = by_field.for_chunk("t")
    assert render(0.0, {"kubernetes": {"namespace": "Kube System"}}) == "k8s-kube_system-1970"
    assert render(0.0, {}) == "k8s--1970"
    assert sanitize_index("_Bad/Name*?") == "bad_name__"


def test_timestamps_round_to_milliseconds() -> None:
    assert rfc3339_millis(1795910399.999) == "2026-11-28T23:59:59.999Z"
    assert rfc3339_millis(1795910399.9996) == "2026-11-29T00:00:00.000Z"
    assert rfc3339_millis(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_millis(-0.5) == "1969-12-31T23:59:59.500Z"


def test_time_members_per_record_across_seconds_and_rounding() -> None:
    """Each document's time member is its own event time to the millisecond, whatever order
    the seconds come in (the seconds are formatted once per chunk, the milliseconds not)."""
    times = [1795910399.999, 1795910399.9996, 1795910400.0, 1795910399.5, -0.5, 0.0004, 1.0]
    lines = [msgspec.json.encode({"n": n}) for n in range(len(times))]
    output, _, _ = make_output(index="x")
    items = output._build_items(TestChunk("t", lines, times=times), skip=set())
    stamps = [json.loads(item.document)["@timestamp"] for item in items]
    assert stamps == [
        "2026-11-28T23:59:59.999Z",
        "2026-11-29T00:00:00.000Z",
        "2026-11-29T00:00:00.000Z",
        "2026-11-28T23:59:59.500Z",
        "1969-12-31T23:59:59.500Z",
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:01.000Z",
    ]
    assert [json.loads(item.document)["n"] for item in items] == list(range(len(times)))


def test_splice_keeps_the_record_bytes() -> None:
    assert splice(b'{"a":1}', b'"t":"x",') == b'{"t":"x","a":1}'
    assert splice(b"{}", b'"t":"x",') == b'{"t":"x"}'
    assert splice(b"not json", b'"t":"x",') == b"not json"
    assert json.loads(splice(b'{"a":{"b":[1]}}', b'"@timestamp":"z","tag":"q",')) == {
        "@timestamp": "z",
        "tag": "q",
        "a": {"b": [1]},
    }


def test_document_ids_are_deterministic_and_distinct() -> None:
    ids = {document_id("chunk-1", i) for i in range(10000)}
    assert len(ids) == 10000
    assert document_id("chunk-1", 5) == document_id("chunk-1", 5)
    assert document_id("chunk-1", 5) != document_id("chunk-2", 5)
    assert len(document_id("c", 0)) == 20


def test_bulk_items_splice_without_decoding() -> None:
    records = [syslog_record(i) for i in range(3)]
    chunk = MemoryChunk("syslog.auth", records, chunk_id="abc")
    output, _, _ = make_output(index="a-${tag}-%Y", include_tag_key=True, id_mode="hash")
    items = output._build_items(chunk, skip={1})
    assert [item.position for item in items] == [0, 2]
    first = items[0]
    assert json.loads(first.action) == {
        "index": {"_index": "a-syslog.auth-2026", "_id": document_id("abc", 0)}
    }
    prefix = b'{"@timestamp":"2026-11-29T10:15:30.123Z","tag":"syslog.auth",'
    assert first.document == prefix + chunk.lines()[0][1:]
    body = bulk_body(items)
    assert body.endswith(b"\n") and body.count(b"\n") == 4


def test_fields_already_in_the_record_are_not_added_twice() -> None:
    record = syslog_record(0, tag="own", **{"@timestamp": "2000-01-01T00:00:00Z"})
    output, _, _ = make_output(include_tag_key=True)
    item = output._build_items(MemoryChunk("t", [record]), skip=set())[0]
    assert item.document == msgspec.json.encode(record)


def test_type_name_only_for_elasticsearch_6() -> None:
    output, _, _ = make_output(index="x", op_type="create")
    output.suppress_type_name = False
    item = output._build_items(MemoryChunk("t", [syslog_record(0)]), skip=set())[0]
    assert json.loads(item.action) == {"create": {"_index": "x", "_type": "_doc"}}


def test_split_bulks_respects_bytes_and_docs() -> None:
    items = [BulkItem(i, b"a" * 10, b"d" * 88) for i in range(10)]  # 100 bytes each
    assert [len(g) for g in split_bulks(items, 350, 1000)] == [3, 3, 3, 1]
    assert [len(g) for g in split_bulks(items, 10_000, 4)] == [4, 4, 2]
    assert [len(g) for g in split_bulks(items[:2], 50, 10)] == [1, 1]  # oversized: alone


def test_classify_sorts_each_item() -> None:
    items = [BulkItem(i, b"{}", b"{}") for i in range(6)]
    response = parse_bulk_response(
        json.dumps(
            {
                "errors": True,
                "items": [
                    {"create": {"status": 201}},
                    {"create": {"status": 409, "error": {"type": "version_conflict"}}},
                    {"create": {"status": 429, "error": {"type": "rejected_execution"}}},
                    {"create": {"status": 503, "error": {"type": "unavailable_shards"}}},
                    {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
                    {"create": {"status": 200}},
                ],
            }
        ).encode()
    )
    outcome = Outcome()
    classify(items, response, "create", outcome)
    assert outcome.accepted == 2 and outcome.conflicts == 1
    assert [i.position for i in outcome.retry] == [2, 3]
    assert [(i.position, r.status) for i, r in outcome.rejected] == [(4, 400)]
    index_outcome = Outcome()
    classify(items, response, "index", index_outcome)  # a 409 on index is not "already there"
    assert [i.position for i, _ in index_outcome.rejected] == [1, 4]
    with pytest.raises(ValueError, match="results for"):
        classify(items[:2], response, "create", Outcome())


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            403,
            {"type": "cluster_block_exception", "reason": "index [x] blocked by: [FORBIDDEN/12]"},
        ),
        (404, {"type": "index_not_found_exception", "reason": "no such index [x]"}),
        (400, {"type": "index_closed_exception", "reason": "closed"}),
        (
            400,
            {"type": "illegal_argument_exception", "reason": "pipeline with id [p] does not exist"},
        ),
        (
            400,
            {
                "type": "illegal_argument_exception",
                "reason": "only write ops with an op_type of create are allowed in data streams",
            },
        ),
    ],
)
def test_refusals_of_the_cluster_are_not_dead_lettered(status: int, error: dict[str, str]) -> None:
    body = {"errors": True, "items": [{"index": {"status": status, "error": error}}]}
    outcome = Outcome()
    classify(
        [BulkItem(0, b"{}", b"{}")],
        parse_bulk_response(json.dumps(body).encode()),
        "index",
        outcome,
    )
    assert [item.position for item in outcome.blocked] == [0] and outcome.rejected == []


def test_auth_headers() -> None:
    log = logging.getLogger("t")
    basic = Transport(config(user="elastic", password="secret"), log)
    assert basic._headers["Authorization"] == "Basic ZWxhc3RpYzpzZWNyZXQ="
    api = Transport(config(api_key="id1:key1"), log)
    assert api._headers["Authorization"] == "ApiKey aWQxOmtleTE="
    encoded = Transport(config(api_key="aWQxOmtleTE="), log)
    assert encoded._headers["Authorization"] == "ApiKey aWQxOmtleTE="
    bearer = Transport(config(token="tok"), log)
    assert bearer._headers["Authorization"] == "Bearer tok"


def test_sigv4_signs_with_the_botocore_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    signer = SigV4Signer("eu-west-1", "aoss")
    headers = {"Content-Type": "application/x-ndjson"}
    asyncio.run(signer.sign("POST", "https://search.example:443/_bulk?x=1", headers, b"{}\n"))
    assert (
        headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        and "/eu-west-1/aoss/aws4_request" in headers["Authorization"]
    )
    assert "X-Amz-Date" in headers
    assert headers["X-Amz-Content-SHA256"] == (
        "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
    )


def test_aws_auth_needs_a_region(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("botocore")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ValueError, match="aws_region"):
        SigV4Signer(None, "es")


def test_credentials_in_host_urls_move_into_user_and_password() -> None:
    cfg = config(hosts=["http://elastic:p%40ss@es-1:9200", "http://elastic:p%40ss@es-2:9200"])
    assert cfg.host_list == ["http://es-1:9200", "http://es-2:9200"]
    assert (cfg.user, cfg.password) == ("elastic", "p@ss")
    single = config(hosts="https://elastic:pw@es:9200")
    assert single.hosts == "https://es:9200" and single.password == "pw"
    headers = Transport(single, logging.getLogger("test"))._headers
    assert headers["Authorization"] == "Basic ZWxhc3RpYzpwdw=="


@pytest.mark.parametrize(
    "settings",
    [
        {"hosts": ["http://a:s3cret1@es-1:9200", "http://a:s3cret2@es-2:9200"]},
        {"hosts": "http://a:s3cret1@es:9200", "api_key": "k"},
        {"hosts": "http://a:s3cret1@es:9200", "user": "b", "password": "s3cret2"},
        {"hosts": "ftp://a:s3cret1@es:9200"},
        {"hosts": "http://a:s3cret1@es:9200/?q=1"},
    ],
)
def test_credentials_in_urls_never_appear_in_config_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        config(**settings)
    assert "s3cret" not in str(raised.value)


def test_a_user_without_password_in_the_url_sends_an_empty_password() -> None:
    cfg = config(hosts="http://reader@es:9200")
    assert (cfg.user, cfg.password, cfg.hosts) == ("reader", None, "http://es:9200")
    headers = Transport(cfg, logging.getLogger("test"))._headers
    assert headers["Authorization"] == "Basic cmVhZGVyOg=="  # "reader:", not "reader:None"
