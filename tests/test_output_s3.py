"""The S3 output against a real moto_server (and a fault proxy in front of it)."""

from __future__ import annotations

import asyncio
import calendar
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outputs.base import BlockedError, FatalError, RetryableError
from outputs.s3 import S3Output
from tests.chunks import TestChunk, deliver, make_chunks
from tests.conftest import wait_for
from tests.doubles import RecordingMetrics
from tests.peers.faultproxy import FaultProxy
from tests.peers.moto import MotoServer, use_fake_credentials
from tests.s3_helpers import (
    expected_sequences,
    multipart_uploads,
    run,
    running,
    s3_config,
    sequence_counts,
    stored,
)

pytestmark = pytest.mark.s3
MiB = 1024 * 1024
T0 = calendar.timegm((2024, 5, 1, 10, 0, 0))
"""A fixed creation time where the number of objects matters (no hour boundary inside)."""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    saved = dict(os.environ)
    use_fake_credentials()
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    return moto.client()


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def metrics_of(output: S3Output) -> RecordingMetrics:
    metrics = output.context.metrics
    assert isinstance(metrics, RecordingMetrics)
    return metrics


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_objects_follow_key_format_and_hold_every_record_once(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path, compression: str
) -> None:
    hour = calendar.timegm((2024, 5, 1, 10, 0, 0))
    chunks = (
        make_chunks(4, 250, tag="syslog.auth", created=hour + 5)
        + make_chunks(3, 250, tag="docker.nginx", created=hour + 10)
        + make_chunks(2, 250, tag="syslog.auth", created=hour + 3600 + 1)
    )
    config = s3_config(moto.url, bucket, compression=compression)

    async def scenario() -> S3Output:
        async with running(config, tmp_path) as output:
            result = await deliver(output, chunks)
            assert result.fatal == {} and result.retryable == []
            assert sorted(result.delivered) == sorted(c.id for c in chunks)
            return output

    output = run(scenario())
    objects = stored(s3, bucket)
    ext = {"gzip": ".gz", "zstd": ".zst", "none": ""}[compression]
    # One object per tag and hour: the groups are the rendered key minus the chunk id.
    first = {c.tag + str(int(c.created) // 3600): c for c in reversed(chunks)}
    assert sorted(objects) == sorted(
        f"logs/{c.tag}/{'2024/05/01/11' if c.created > hour + 3600 else '2024/05/01/10'}/"
        f"node-a-{c.id}.ndjson{ext}"
        for c in first.values()
    )
    assert sequence_counts(objects) == expected_sequences(chunks)
    for key in objects:
        head = s3.head_object(Bucket=bucket, Key=key)
        tag = key.split("/")[1]
        assert head["Metadata"]["caa-tag"] == tag
        assert head["Metadata"]["caa-host"] == "node-a"
        assert int(head["Metadata"]["caa-records"]) == len(objects[key])
        assert (
            head["ContentType"]
            == {
                "gzip": "application/gzip",
                "zstd": "application/zstd",
                "none": "application/x-ndjson",
            }[compression]
        )
    metrics = metrics_of(output)
    assert metrics.total("output_s3_objects_total") == 3
    assert metrics.total("output_s3_records_total") == 9 * 250
    uncompressed = sum(c.size for c in chunks)
    assert metrics.total("output_s3_bytes_total", stage="uncompressed") == uncompressed
    compressed = metrics.total("output_s3_bytes_total", stage="compressed")
    if compression == "none":
        assert compressed == uncompressed
    else:
        assert 0 < compressed < uncompressed / 3
    assert metrics.observations("output_s3_request_seconds")
    assert not [
        k
        for k in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if ".healthcheck" in k["Key"]
    ], "the healthcheck probe is deleted"


def test_upload_timeout_makes_one_object_per_interval(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    config = s3_config(moto.url, bucket, upload_timeout="1s")
    first, second = make_chunks(6, 10, created=T0), make_chunks(6, 10, created=T0)

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            await deliver(output, first)
            await deliver(output, second)

    run(scenario())
    objects = stored(s3, bucket)
    assert len(objects) == 2, sorted(objects)
    assert sequence_counts(objects) == expected_sequences(first + second)
    assert {len(records) for records in objects.values()} == {60}


@pytest.mark.parametrize(
    ("limits", "objects_expected"),
    [
        ({"total_file_size": "8KiB"}, 6),  # two ~4.5 KiB chunks reach 8 KiB
        ({"max_chunks_per_object": 3}, 4),
    ],
)
def test_total_file_size_and_chunk_count_close_objects(
    moto: MotoServer,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    limits: dict[str, Any],
    objects_expected: int,
) -> None:
    chunks = make_chunks(12, 50, created=T0)  # about 4.5 KiB each
    assert all(4096 < c.size < 8192 for c in chunks)
    config = s3_config(moto.url, bucket, upload_timeout="60s", **limits)

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            result = await deliver(output, chunks)
            assert not result.fatal

    run(scenario())
    objects = stored(s3, bucket)
    assert len(objects) == objects_expected
    assert sequence_counts(objects) == expected_sequences(chunks)


def test_partial_object_waits_for_upload_timeout_or_shutdown(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(3, 20)
    config = s3_config(moto.url, bucket, upload_timeout="1h")

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            shutdown = asyncio.Event()
            sending = asyncio.create_task(deliver(output, chunks, until=shutdown))
            await asyncio.sleep(0.2)
            assert not sending.done()
            shutdown.set()
            result = await sending
            assert sorted(result.delivered) == sorted(c.id for c in chunks)

    run(scenario())
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def test_large_objects_go_up_as_multipart(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(6, 5000, payload=400)  # ~12.5 MiB uncompressed
    config = s3_config(moto.url, bucket, compression="none", upload_chunk_size="5MiB")

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            assert not (await deliver(output, chunks)).fatal

    run(scenario())
    objects = stored(s3, bucket)
    assert len(objects) == 1
    key = next(iter(objects))
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)
    total = sum(c.size for c in chunks)
    assert head["PartsCount"] == -(-total // (5 * MiB))
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"].endswith(f'-{head["PartsCount"]}"')
    assert sequence_counts(objects) == expected_sequences(chunks)
    assert multipart_uploads(s3, bucket) == []


def test_encryption_storage_class_and_acl_are_applied(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    config = s3_config(
        moto.url,
        bucket,
        sse="AES256",
        storage_class="STANDARD_IA",
        canned_acl="bucket-owner-full-control",
        content_type="application/x-ndjson+gzip",
    )

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            assert not (await deliver(output, make_chunks(2, 10))).fatal

    run(scenario())
    (key,) = stored(s3, bucket)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentType"] == "application/x-ndjson+gzip"


def test_assume_role_through_sts(moto: MotoServer, s3: Any, bucket: str, tmp_path: Path) -> None:
    config = s3_config(
        moto.url,
        bucket,
        role_arn="arn:aws:iam::123456789012:role/log-writer",
        role_session_name="node-a",
        external_id="audit",
        sts_endpoint_url=moto.url,
    )

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            assert output.ready
            assert not (await deliver(output, make_chunks(2, 10))).fatal

    run(scenario())
    assert len(stored(s3, bucket)) == 1


def test_unreadable_chunk_fails_alone(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    class Broken(TestChunk):
        def data(self) -> bytes:
            raise OSError("chunk file vanished")

    good = make_chunks(3, 10)
    broken = Broken("syslog.test", [b'{"seq":-1}'], created=good[0].created)
    config = s3_config(moto.url, bucket)

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            result = await deliver(output, [*good[:2], broken, good[2]])
            assert list(result.fatal) == [broken.id]
            assert "chunk file vanished" in result.fatal[broken.id]

    run(scenario())
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(good)


class Unloadable(TestChunk):
    """Like the disk buffer's chunks: data cached in memory until ``release_cache``, then read back
    (counted) when asked again; ``resident`` ones are the buffer's budgeted copies."""

    def __init__(self, chunk: TestChunk, resident: bool = False) -> None:
        super().__init__(chunk.tag, chunk.lines(), chunk_id=chunk.id, created=chunk.created)
        self.stored = self._data
        self.cached: bytes | None = self._data
        self.resident = resident
        self.loads = 0

    def data(self) -> bytes:
        if self.cached is None:
            self.loads += 1
            self.cached = self.stored
        return self.cached

    def release_cache(self) -> None:
        if not self.resident:
            self.cached = None


def test_open_objects_hold_compressed_data_and_retries_read_chunks_again(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Large chunks are compressed in a thread, small ones inline: both drop the cached data.
    plain = [*make_chunks(3, 2000, payload=100, created=T0), *make_chunks(2, 5, created=T0)]
    assert plain[0].size >= 128 * 1024 > plain[-1].size
    chunks = [Unloadable(chunk) for chunk in plain[:-1]]
    resident = Unloadable(plain[-1], resident=True)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, upload_timeout="60s")

        async def scenario() -> None:
            async with running(config, tmp_path) as output:
                proxy.respond(
                    500,
                    b"<Error><Code>InternalError</Code></Error>",
                    times=1,
                    when=lambda r: r.method == "PUT",
                )
                shutdown = asyncio.Event()
                sending = asyncio.create_task(
                    deliver(output, [*chunks, resident], until=shutdown)
                )
                # The group stays open (upload_timeout 60s) holding compressed pieces only.
                await asyncio.to_thread(
                    wait_for, lambda: all(chunk.cached is None for chunk in chunks), 30
                )
                assert resident.cached is not None, "the buffer's resident copies stay"
                assert not sending.done()
                shutdown.set()
                # The first PUT failed; the object is built once (each released chunk read
                # again once) and the retry uploads that same body.
                result = await sending
                assert not result.fatal and result.retryable
                assert sorted(result.delivered) == sorted(c.id for c in [*chunks, resident])

        run(scenario())
    assert all(chunk.loads == 1 for chunk in chunks)
    objects = stored(s3, bucket)
    assert len(objects) == 1
    assert sequence_counts(objects) == expected_sequences(plain)


# --------------------------------------------------------------------------- failures


def test_outage_and_throttling_are_retried(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(8, 20)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, upload_timeout="100ms")

        async def scenario() -> S3Output:
            async with running(config, tmp_path) as output:
                assert output.ready
                proxy.throttle(times=3, when=lambda r: r.method == "PUT")
                result = await deliver(output, chunks[:4])
                assert not result.fatal and result.retryable
                assert all("SlowDown" in reason for _, reason in result.retryable)
                # A full outage: 503 for everything, then the proxy refuses connections.
                proxy.unavailable()
                outage = asyncio.create_task(deliver(output, chunks[4:]))
                await asyncio.to_thread(wait_for, lambda: proxy.faults >= 6, 60)
                proxy.clear()
                proxy.down()
                await asyncio.to_thread(wait_for, lambda: not output.ready, 60)
                proxy.up()
                result = await outage
                assert not result.fatal
                assert any("ServiceUnavailable" in reason for _, reason in result.retryable)
                assert output.ready
                return output

        output = run(scenario())
    metrics = metrics_of(output)
    assert metrics.total("output_s3_errors_total", kind="throttled") == 3
    assert metrics.total("output_s3_errors_total", kind="server") >= 1
    assert metrics.total("output_s3_errors_total", kind="network") >= 1
    # Everything arrived, nothing twice, no object holds a record another one holds.
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def test_moto_restart_outage(tmp_path: Path) -> None:
    saved = dict(os.environ)
    use_fake_credentials()
    try:
        with MotoServer() as server:
            client = server.client()
            client.create_bucket(Bucket="logs")
            config = s3_config(server.url, "logs", upload_timeout="100ms", request_timeout="5s")
            chunks = make_chunks(6, 20)

            async def scenario() -> None:
                async with running(config, tmp_path) as output:
                    await asyncio.to_thread(server.stop)
                    with pytest.raises(RetryableError):
                        await output.send([chunks[0]])
                    assert not output.ready
                    await asyncio.to_thread(server.start)
                    # moto forgets everything when it restarts; the bucket comes back first.
                    await asyncio.to_thread(server.client().create_bucket, Bucket="logs")
                    result = await deliver(output, chunks)
                    assert not result.fatal
                    assert output.ready

            run(scenario())
            assert sequence_counts(stored(server.client(), "logs")) == expected_sequences(chunks)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_hung_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    saved = dict(os.environ)
    use_fake_credentials()
    try:
        with MotoServer() as server:
            server.client().create_bucket(Bucket="logs")
            config = s3_config(server.url, "logs", upload_timeout="50ms", request_timeout="1s")
            chunks = make_chunks(2, 20)

            async def scenario() -> S3Output:
                async with running(config, tmp_path) as output:
                    server.pause()
                    try:
                        # The guard is generous; the call itself gives up after request_timeout.
                        async with asyncio.timeout(30):
                            with pytest.raises(RetryableError, match="timed out"):
                                await output.send([chunks[0]])
                    finally:
                        server.resume()
                    assert not (await deliver(output, chunks)).fatal
                    return output

            output = run(scenario())
            assert metrics_of(output).total("output_s3_errors_total", kind="timeout") >= 1
            objects = stored(server.client(), "logs")
            assert sequence_counts(objects) == expected_sequences(chunks)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_server_that_stops_reading_a_large_body_times_out(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(1, 4000, payload=400, random_payload=True)  # ~2 MiB compressed
    with FaultProxy(moto.url) as proxy:
        config = s3_config(
            proxy.url,
            bucket,
            upload_timeout="50ms",
            request_timeout="1s",
            request_timeout_per_mib="100ms",
        )

        async def scenario() -> None:
            async with running(config, tmp_path) as output:
                proxy.hang(when=lambda r: r.method == "PUT")
                async with asyncio.timeout(30):
                    with pytest.raises(RetryableError, match="timed out"):
                        await output.send([chunks[0]])
                proxy.clear()
                assert not (await deliver(output, chunks)).fatal

        run(scenario())
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def test_missing_bucket_is_blocked_not_fatal_and_not_ready(
    moto: MotoServer, s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing bucket is not about the data (Terraform may create it a minute later): the
    error is a BlockedError (retried for ever, never dead-lettered) with the cause."""
    name = f"absent-{uuid.uuid4().hex[:8]}"
    config = s3_config(moto.url, name)
    chunks = make_chunks(2, 5)

    async def scenario() -> None:
        async with running(config, tmp_path) as output:
            assert output.ready is False
            with pytest.raises(BlockedError, match="NoSuchBucket") as raised:
                await output.send([chunks[0]])
            assert raised.value.cause == "no_bucket"
            # The bucket appears: the background check makes the output ready.
            await asyncio.to_thread(s3.create_bucket, Bucket=name)
            await asyncio.to_thread(wait_for, lambda: output.ready, 60)
            assert not (await deliver(output, chunks)).fatal
            # Removed under our feet: still blocked, with the reason.
            for key in stored(s3, name):
                await asyncio.to_thread(s3.delete_object, Bucket=name, Key=key)
            await asyncio.to_thread(s3.delete_bucket, Bucket=name)
            with pytest.raises(BlockedError, match=rf"s3://{name}/.*NoSuchBucket"):
                await output.send([make_chunks(1, 5)[0]])

    with caplog.at_level(logging.ERROR):
        run(scenario())
    assert any("not reachable or not writable" in r.getMessage() for r in caplog.records)


def _s3_error(code: str, message: str) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
        + code.encode()
        + b"</Code><Message>"
        + message.encode()
        + b"</Message></Error>"
    )


@pytest.mark.parametrize(
    ("status", "code", "message", "cause"),
    [
        (403, "AccessDenied", "Access Denied", "denied"),
        (
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist",
            "credentials",
        ),
        (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match",
            "credentials",
        ),
        (400, "KMS.NotFoundException", "Invalid keyId alias/audit", "kms"),
        (403, "AccessDenied", "User is not authorized to perform kms:GenerateDataKey", "kms"),
    ],
)
def test_denied_credentials_and_kms_errors_are_blocked_not_fatal(
    moto: MotoServer,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    status: int,
    code: str,
    message: str,
    cause: str,
) -> None:
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, healthcheck=False)

        async def scenario() -> None:
            async with running(config, tmp_path) as output:
                proxy.respond(status, _s3_error(code, message), when=lambda r: r.method == "PUT")
                with pytest.raises(BlockedError, match=code) as raised:
                    await output.send([make_chunks(1, 5)[0]])
                assert raised.value.cause == cause
                assert output.ready is False

        run(scenario())


def test_error_bodies_echoing_credentials_are_redacted(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy that echoes the request's headers in its error must not leak them into the
    reason (logged, written to dead letters)."""
    echoed = (
        "Request refused. Authorization: AWS4-HMAC-SHA256 Credential=AKIAECHOED/20240101/"
        "us-east-1/s3/aws4_request, Signature=deadbeef; X-Amz-Security-Token=SECRETTOKEN; "
        + "x"
        * 5000
    )
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, healthcheck=False)

        async def scenario() -> None:
            async with running(config, tmp_path) as output:
                proxy.respond(
                    400, _s3_error("InvalidRequest", echoed), when=lambda r: r.method == "PUT"
                )
                with pytest.raises(FatalError) as raised:
                    await output.send([make_chunks(1, 5)[0]])
                text = str(raised.value)
                assert "InvalidRequest" in text
                assert "AKIAECHOED" not in text and "SECRETTOKEN" not in text
                assert "deadbeef" not in text
                assert len(text) < 1000

        with caplog.at_level(logging.DEBUG, logger="test"):
            run(scenario())
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("test."))
    assert "InvalidRequest" in logged
    assert "SECRETTOKEN" not in logged and "AKIAECHOED" not in logged


# --------------------------------------------------------------------------- multipart


def is_part(number: int) -> Any:
    return lambda r: r.method == "PUT" and f"partNumber={number}" in r.query_string


def test_multipart_failure_midway_leaves_no_parts(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(6, 5000, payload=400)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, compression="none", upload_chunk_size="5MiB")

        async def scenario() -> None:
            async with running(config, tmp_path) as output:
                proxy.respond(
                    500, b"<Error><Code>InternalError</Code></Error>", times=1, when=is_part(2)
                )
                result = await deliver(output, chunks)
                assert not result.fatal
                assert any("UploadPart" in reason for _, reason in result.retryable)

        run(scenario())
    assert multipart_uploads(s3, bucket) == []
    objects = stored(s3, bucket)
    assert len(objects) == 1
    assert sequence_counts(objects) == expected_sequences(chunks)


def test_parts_left_by_a_failed_abort_are_aborted_at_next_start(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(6, 5000, payload=400)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, compression="none", upload_chunk_size="5MiB")

        async def crash() -> None:
            async with running(config, tmp_path) as output:
                proxy.respond(500, b"", when=is_part(2))
                proxy.respond(500, b"", when=lambda r: r.method == "DELETE")
                result = await deliver(output, chunks, max_attempts=1)
                assert set(result.fatal) == {c.id for c in chunks}

        run(crash())
        proxy.clear()
        (left,) = multipart_uploads(s3, bucket)  # the abort failed: parts remain...
        journal = journal_path(tmp_path).read_text()
        assert left["UploadId"] in journal  # ...and the journal knows the upload

        async def restart() -> None:
            async with running(config, tmp_path) as output:
                await asyncio.to_thread(wait_for, lambda: not multipart_uploads(s3, bucket), 60)
                assert not (await deliver(output, chunks)).fatal

        run(restart())
    assert multipart_uploads(s3, bucket) == []
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def test_stale_uploads_of_this_node_are_aborted_at_start(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    mine = "logs/syslog.test/2024/01/01/00/node-a-1700000000000-000000000001.ndjson.gz"
    theirs = "logs/syslog.test/2024/01/01/00/node-b-1700000000000-000000000001.ndjson.gz"
    foreign = "logs/unrelated/file.txt"
    for key in (mine, theirs, foreign):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    config = s3_config(moto.url, bucket)

    async def scenario() -> None:
        async with running(config, tmp_path):
            await asyncio.to_thread(
                wait_for,
                lambda: mine not in {u["Key"] for u in multipart_uploads(s3, bucket)},
                60,
            )

    run(scenario())
    assert sorted(u["Key"] for u in multipart_uploads(s3, bucket)) == sorted([theirs, foreign])


# --------------------------------------------------------------------------- crash semantics


def journal_path(data_dir: Path) -> Path:
    return data_dir / "s3" / "s3.0.journal"


def test_replay_after_crash_does_not_duplicate(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """kill -9 between upload and acknowledgement: the agent sends the same chunks again, maybe
    only some of them, maybe grouped differently. Nothing is stored twice."""
    chunks = make_chunks(10, 30, created=T0)
    config = s3_config(moto.url, bucket, max_chunks_per_object=4)

    async def first_run() -> None:
        async with running(config, tmp_path) as output:
            assert not (await deliver(output, chunks)).fatal

    run(first_run())
    before = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert len([k for k in before if k.startswith("logs/")]) == 3  # 4 + 4 + 2 chunks

    async def replay(subset: list[TestChunk]) -> S3Output:
        async with running(config, tmp_path) as output:
            assert not (await deliver(output, subset)).fatal
            return output

    # Every chunk again (nothing was acknowledged), then only some (a crash between acks).
    output = run(replay(chunks))
    assert metrics_of(output).total("output_s3_chunks_already_stored_total") == 10
    assert metrics_of(output).total("output_s3_objects_total") == 0
    run(replay(chunks[1:3] + chunks[5:]))
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def drop_done_lines(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if '"op":"done"' not in line))


def test_crash_between_upload_and_journal_resolves_with_head(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(8, 30, created=T0)
    config = s3_config(moto.url, bucket, max_chunks_per_object=3)

    async def first_run() -> None:
        async with running(config, tmp_path) as output:
            assert not (await deliver(output, chunks)).fatal

    run(first_run())
    before = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    # The uploads succeeded but "done" never reached the journal; one object even vanished
    # (its PutObject never arrived), so its chunks must go up again, exactly once.
    drop_done_lines(journal_path(tmp_path))
    lost = sorted(before)[0]
    s3.delete_object(Bucket=bucket, Key=lost)

    async def replay() -> S3Output:
        # Replayed in another grouping: max 4 chunks per object instead of 3.
        changed = s3_config(moto.url, bucket, max_chunks_per_object=4)
        async with running(changed, tmp_path) as output:
            assert not (await deliver(output, chunks)).fatal
            return output

    output = run(replay())
    metrics = metrics_of(output)
    assert metrics.total("output_s3_objects_total") == 1
    assert metrics.total("output_s3_chunks_already_stored_total") == 5
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {k: v for k, v in after.items() if k != lost} == {
        k: v for k, v in before.items() if k != lost
    }
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)


def test_without_journal_the_same_grouping_rewrites_the_same_keys(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    chunks = make_chunks(6, 30, created=T0)
    config = s3_config(moto.url, bucket, max_chunks_per_object=3)

    async def one_run() -> None:
        async with running(config, tmp_path) as output:
            for start in (0, 3):  # the same groups each time
                assert not (await deliver(output, chunks[start : start + 3])).fatal

    run(one_run())
    before = sorted(stored(s3, bucket))
    journal_path(tmp_path).unlink()
    run(one_run())
    objects = stored(s3, bucket)
    assert sorted(objects) == before
    assert sequence_counts(objects) == expected_sequences(chunks)


def test_concurrent_retries_of_an_uncertain_upload_resolve_once(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A PutObject that reached S3 but whose answer was lost (timeout): the retried chunks must
    find the object rather than upload their records into a second one."""
    chunks = make_chunks(4, 30)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, request_timeout="1s", upload_timeout="100ms")

        async def scenario() -> S3Output:
            async with running(config, tmp_path) as output:
                # Forward the PUT, but answer only after the client gave up.
                proxy.slow_answer(3.0, times=1, when=lambda r: r.method == "PUT")
                result = await deliver(output, chunks)
                assert not result.fatal
                assert any("timed out" in reason for _, reason in result.retryable)
                return output

        output = run(scenario())
    metrics = metrics_of(output)
    assert metrics.total("output_s3_chunks_already_stored_total") == 4
    objects = stored(s3, bucket)
    assert len(objects) == 1
    assert sequence_counts(objects) == expected_sequences(chunks)


def test_connection_dropped_mid_request_is_checked_then_retried(
    moto: MotoServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """No answer at all: the upload may or may not have happened. HeadObject says it did not,
    so the chunks go up again; every record once."""
    chunks = make_chunks(4, 30, created=T0)
    with FaultProxy(moto.url) as proxy:
        config = s3_config(proxy.url, bucket, upload_timeout="100ms")

        async def scenario() -> S3Output:
            async with running(config, tmp_path) as output:
                # Twice: aiohttp itself retries once on a fresh connection when a reused one
                # is closed under an idempotent request.
                proxy.drop(times=2, when=lambda r: r.method == "PUT")
                result = await deliver(output, chunks)
                assert not result.fatal and result.retryable
                return output

        output = run(scenario())
        heads = [path for method, path in proxy.requests if method == "HEAD"]
    metrics = metrics_of(output)
    assert metrics.total("output_s3_errors_total", kind="network") >= 1
    assert metrics.total("output_s3_chunks_already_stored_total") == 0
    assert heads, "the outcome was checked with HeadObject"
    assert sequence_counts(stored(s3, bucket)) == expected_sequences(chunks)
