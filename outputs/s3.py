"""S3 output: chunks of already-encoded NDJSON, grouped per key prefix, compressed, uploaded.

Chunks whose rendered key (without ``${chunk_id}``/``${index}``) and tag agree accumulate in
one *group* until it holds ``total_file_size`` bytes or ``max_chunks_per_object`` chunks, or
``upload_timeout`` passed since it opened; then the group goes up as one object (PutObject, or
a multipart upload above ``upload_chunk_size``), and every ``send`` of its chunks returns (or
raises) together. The key takes the first chunk's id and creation time, so it is the same
however often the object is written. Which chunks went into which object is journaled beside
the buffer (see ``outputs/s3_journal.py``) so that a replay after a crash never puts a record
into a second object. docs/s3.md is the user-facing reference.

aiobotocore is imported in ``start``: the config struct imports without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

from common.units import Duration, Size
from outputs.base import (
    BlockedError,
    Chunk,
    FatalError,
    Output,
    OutputConfig,
    OutputContext,
    OutputError,
    RetryableError,
)
from outputs.compression import (
    CONTENT_TYPES,
    EXTENSIONS,
    Compressor,
    check_available,
    check_level,
    new_compressor,
)
from outputs.s3_errors import Failure, classify
from outputs.s3_journal import Entry, Journal, group_digest
from outputs.s3_keys import KeyTemplate, safe

MiB = 1024 * 1024
DEFAULT_KEY_FORMAT = "logs/${tag}/%Y/%m/%d/%H/${host}-${chunk_id}.ndjson${ext}"
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
THREAD_COMPRESS_BYTES = 128 * 1024
"""Chunks at least this large are compressed in a thread (zlib/zstd release the GIL)."""
META_PREFIX = "caa-"
"""User metadata on every object: ``x-amz-meta-caa-digest`` identifies the group of chunks."""

STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)
CANNED_ACLS = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
    }
)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PLACEHOLDER = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*\}$")


def check_bucket_name(bucket: str) -> None:
    """S3's bucket naming rules (3-63 characters: lower case letters, digits, dots, hyphens;
    a letter or digit at each end; no "..", not an IP address); ValueError saying what to fix.
    A ``${VAR}`` placeholder (``--check --no-environment``) is accepted as it is."""
    if _PLACEHOLDER.match(bucket):
        return
    problem = None
    if "://" in bucket or "/" in bucket:
        problem = (
            'give the bare bucket name, without "s3://" or a path (a key prefix goes in prefix)'
        )
    elif bucket != bucket.lower():
        problem = "bucket names are lower case"
    elif "_" in bucket:
        problem = "bucket names cannot contain underscores (use hyphens)"
    elif not 3 <= len(bucket) <= 63:
        problem = "bucket names are 3 to 63 characters long"
    elif not _BUCKET.match(bucket):
        problem = (
            "bucket names hold only lower case letters, digits, dots and hyphens, and begin and "
            "end with a letter or digit"
        )
    elif ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        problem = "bucket names cannot hold two dots in a row or look like an IP address"
    if problem:
        raise ValueError(f"bucket: {problem}; got {bucket!r}")


class S3Config(OutputConfig, tag_field="type", tag="s3", kw_only=True, forbid_unknown_fields=True):
    """``[[outputs]] type = "s3"``; every key is described in docs/s3.md."""

    bucket: str
    region: str | None = None
    """None: botocore's chain (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config)."""
    endpoint_url: str | None = None
    """An S3-compatible store (MinIO, Ceph, moto) or a VPC endpoint."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    prefix: str = ""
    """Prepended to ``key_format`` (a "/" is added between them if missing); placeholders work."""
    key_format: str = DEFAULT_KEY_FORMAT
    total_file_size: Size = Size(50 * MiB)
    """Uncompressed bytes that close an object."""
    upload_timeout: Duration = Duration(60.0)
    """An object goes up at the latest this long after its first chunk arrived."""
    max_chunks_per_object: int = 64
    upload_chunk_size: Size = Size(8 * MiB)
    """Compressed objects above this size go up as multipart uploads with parts of this size."""
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    compression_level: int | None = None
    content_type: str | None = None
    """None: application/gzip, application/zstd or application/x-ndjson after ``compression``."""
    storage_class: str | None = None
    canned_acl: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None
    role_arn: str | None = None
    role_session_name: str = "container-audit-agent"
    external_id: str | None = None
    sts_endpoint_url: str | None = None
    request_timeout: Duration = Duration(30.0)
    request_timeout_per_mib: Duration = Duration(2.0)
    """Extra deadline per MiB of request body, on top of ``request_timeout``."""
    checksum: Literal["when_supported", "when_required"] = "when_supported"
    """botocore's request_checksum_calculation; "when_required" for stores that reject
    the newer CRC32 checksum headers."""
    healthcheck: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bucket:
            raise ValueError("bucket must not be empty")
        check_bucket_name(self.bucket)
        check_available(self.compression)
        check_level(self.compression, self.compression_level)
        KeyTemplate(self.template, ext=EXTENSIONS[self.compression], host="node")
        if self.upload_chunk_size < MIN_PART_SIZE or self.upload_chunk_size > MAX_PART_SIZE:
            raise ValueError(
                f"upload_chunk_size must be between 5MiB and 5GiB (S3's part size limits), "
                f"got {int(self.upload_chunk_size)} bytes"
            )
        if self.total_file_size < 1:
            raise ValueError("total_file_size must be at least 1 byte")
        if self.upload_timeout <= 0:
            raise ValueError("upload_timeout must be more than 0")
        if self.max_chunks_per_object < 1:
            raise ValueError("max_chunks_per_object must be at least 1")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be more than 0")
        if self.storage_class is not None and self.storage_class not in STORAGE_CLASSES:
            raise ValueError(
                f"storage_class must be one of {', '.join(sorted(STORAGE_CLASSES))}, "
                f"got {self.storage_class!r}"
            )
        if self.canned_acl is not None and self.canned_acl not in CANNED_ACLS:
            raise ValueError(
                f"canned_acl must be one of {', '.join(sorted(CANNED_ACLS))}, "
                f"got {self.canned_acl!r}"
            )
        if self.sse_kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError('sse_kms_key_id needs sse = "aws:kms"')
        if self.role_arn is None and self.external_id is not None:
            raise ValueError("external_id needs role_arn")

    @property
    def template(self) -> str:
        if self.prefix and not self.prefix.endswith("/"):
            return self.prefix + "/" + self.key_format
        return self.prefix + self.key_format


class _S3Failure(Exception):
    def __init__(self, failure: Failure, code: str = "", status: int = 0) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.code = code
        self.status = status

    def output_error(self, bucket: str, key: str = "") -> OutputError:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        message = f"{where}: {self.failure.reason}"
        if self.failure.cause:
            return BlockedError(message, self.failure.cause)
        return RetryableError(message) if self.failure.retryable else FatalError(message)


class _Group:
    """Chunks of one tag and key prefix on their way into one object."""

    def __init__(self, tag: str, parts: tuple[str, ...], compressor: Compressor) -> None:
        self.tag = tag
        self.parts = parts
        self.compressor = compressor
        self.chunks: list[Chunk] = []
        self.size = 0
        self.records = 0
        self.pieces: list[bytes] = []
        self.tail: asyncio.Task[None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even if every waiting send was cancelled.
        self.done.add_done_callback(lambda future: future.cancelled() or future.exception())
        self.timer: asyncio.TimerHandle | None = None
        self.sealed = False
        self.joined = 0
        self.ids: list[str] = []
        """Every chunk that joined (``chunks`` loses the unreadable ones)."""
        self.unreadable: dict[str, str] = {}
        """Chunks whose data could not be read (left out of the object): id -> reason."""


class _Unreadable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _read_and_compress(chunk: Chunk, compressor: Compressor) -> bytes | _Unreadable:
    """The compressed piece of ``chunk``'s data; run in a thread for large chunks (reading a
    chunk back from disk and zlib/zstd release the GIL). The raw data is not kept."""
    try:
        data = chunk.data()
    except Exception as error:
        return _Unreadable(repr(error))
    return compressor.compress(data)


class S3Output(Output):
    type_name: ClassVar[str] = "s3"
    config: S3Config

    def __init__(self, config: S3Config, context: OutputContext) -> None:
        super().__init__(config, context)
        self.log = context.logger
        self.metrics = context.metrics
        self.template = KeyTemplate(
            config.template, ext=EXTENSIONS[config.compression], host=context.node_name
        )
        self.journal = Journal(Path(context.data_dir) / "s3" / f"{safe(context.name)}.journal")
        self.content_type = config.content_type or CONTENT_TYPES[config.compression]
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._open: dict[tuple[str, tuple[str, ...]], _Group] = {}
        self._by_chunk: dict[str, _Group] = {}
        self._inflight: set[_Group] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: dict[str, asyncio.Future[bool]] = {}
        self._live_uploads: set[str] = set()
        self._workers: asyncio.Semaphore | None = None
        self._held = 0
        """Chunks in groups still open (waiting for more chunks or for upload_timeout)."""
        self._checked = False
        self._uploaded = False
        self.abort_stale_uploads = True
        """Abort this node's multipart uploads that began before this start (left by a crash).
        False in a second process beside a running agent (``dead-letters replay``), which must
        not abort the agent's uploads in progress: then only its own journal's are aborted."""
        self._started_at = datetime.now(UTC)

    @property
    def concurrency(self) -> int:
        return self.config.workers * self.config.max_chunks_per_object

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = self.config
        self._started_at = datetime.now(UTC)
        self._workers = asyncio.Semaphore(config.workers)
        await asyncio.to_thread(self.journal.load)
        if self.journal.torn_lines:
            self.log.warning(
                "S3 output %s: skipped %d torn journal line(s) in %s",
                self.context.name,
                self.journal.torn_lines,
                self.journal.path,
            )
        session = get_session()
        if config.role_arn:
            session.register_component("credential_provider", self._assume_role_resolver())
        client_config = AioConfig(
            connect_timeout=min(float(config.request_timeout), 10.0),
            read_timeout=float(config.request_timeout),
            # The agent retries with backoff; one attempt per call keeps each call's deadline
            # (request_timeout) the real bound and every failure visible in the metrics.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(10, config.workers * 2),
            s3={"addressing_style": config.addressing_style},
            request_checksum_calculation=config.checksum,
            response_checksum_validation="when_required",
            tcp_keepalive=True,
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                region_name=config.region,
                endpoint_url=config.endpoint_url,
                config=client_config,
            )
        )
        if not config.healthcheck:
            self._checked = True
            self._spawn(self._cleanup())
            return
        self.ready = False
        try:
            async with asyncio.timeout(float(config.request_timeout) * 2):
                await self._check()
        except (_S3Failure, TimeoutError) as error:
            reason = error.failure.reason if isinstance(error, _S3Failure) else "timed out"
            self.log.error(
                "S3 output %s: bucket %s is not reachable or not writable: %s; "
                "chunks wait in the buffer, checking again in the background",
                self.context.name,
                config.bucket,
                reason,
            )
            self._spawn(self._check_until_ready())
        else:
            self._spawn(self._cleanup())

    async def flush(self) -> None:
        for group in list(self._open.values()):
            self._seal(group)
        waiting = [asyncio.shield(group.done) for group in list(self._inflight)]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)

    async def stop(self) -> None:
        stopped = RetryableError("S3 output stopped before the upload")
        for group in list(self._open.values()):
            self._open.pop((group.tag, group.parts), None)
            self._held -= group.joined
            if group.timer is not None:
                group.timer.cancel()
            if not group.done.done():
                group.done.set_exception(stopped)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
        self._client = None

    # ------------------------------------------------------------------------ sending

    async def send(self, chunk: Chunk) -> None:
        if self._client is None:
            raise RetryableError("S3 output is not started")
        group = self._by_chunk.get(chunk.id)
        if group is None:
            entry = self.journal.entry_of(chunk.id)
            if entry is not None and (entry.state == "done" or await self._resolve(entry)):
                # In S3 already (uploaded before a crash or a lost acknowledgement).
                self.metrics.inc("output_s3_chunks_already_stored_total")
                return
            group = self._by_chunk.get(chunk.id) or self._join(chunk)
        await asyncio.shield(group.done)
        if chunk.id in group.unreadable:
            raise FatalError(f"cannot read chunk {chunk.id}: {group.unreadable[chunk.id]}")

    def _join(self, chunk: Chunk) -> _Group:
        config = self.config
        parts = self.template.group(chunk.tag, chunk.created)
        group = self._open.get((chunk.tag, parts))
        if group is None:
            group = _Group(
                chunk.tag, parts, new_compressor(config.compression, config.compression_level)
            )
            self._open[(chunk.tag, parts)] = group
            group.timer = asyncio.get_running_loop().call_later(
                float(config.upload_timeout), self._seal, group
            )
        group.chunks.append(chunk)
        group.ids.append(chunk.id)
        group.joined += 1
        self._held += 1
        group.size += chunk.size
        group.records += chunk.records
        group.tail = asyncio.create_task(self._compress_after(group, group.tail, chunk))
        self._by_chunk[chunk.id] = group
        if (
            group.size >= config.total_file_size
            or len(group.chunks) >= config.max_chunks_per_object
        ):
            self._seal(group)
        elif self._held >= self.concurrency:
            # Every send the agent may have outstanding waits in an open group, so no chunk
            # can come to fill them: waiting for upload_timeout would only add delay.
            self._seal(next(iter(self._open.values())))
        return group

    @staticmethod
    async def _compress_after(
        group: _Group, previous: asyncio.Task[None] | None, chunk: Chunk
    ) -> None:
        """Compress ``chunk`` into ``group`` after the chunk before it (one stream, in order).

        Only the compressed piece stays in the group: the raw data is dropped as soon as it is
        compressed (see ``_read_and_compress``), so an open or uploading object costs about its
        compressed size, not ``total_file_size``. A failed upload is rebuilt from the chunks,
        which the buffer reads again from disk."""
        if previous is not None:
            await previous
        if chunk.size >= THREAD_COMPRESS_BYTES:
            piece = await asyncio.to_thread(_read_and_compress, chunk, group.compressor)
        else:
            piece = _read_and_compress(chunk, group.compressor)
        if isinstance(piece, _Unreadable):
            # Leave this chunk out (its send fails alone) rather than fail the whole object.
            group.unreadable[chunk.id] = piece.reason
            group.chunks.remove(chunk)
            group.size -= chunk.size
            group.records -= chunk.records
            return
        group.pieces.append(piece)
        # Held until its object is uploaded: without this every open and uploading object
        # would cost its raw size in the buffer's cache as well as its compressed size here.
        chunk.release_cache()

    def _seal(self, group: _Group) -> None:
        if group.sealed:
            return
        group.sealed = True
        self._held -= group.joined
        if group.timer is not None:
            group.timer.cancel()
        if self._open.get((group.tag, group.parts)) is group:
            del self._open[(group.tag, group.parts)]
        self._inflight.add(group)
        self._spawn(self._upload(group))

    async def _upload(self, group: _Group) -> None:
        assert self._workers is not None
        try:
            async with self._workers:
                await self._put_group(group)
        except _S3Failure as failure:  # pragma: no cover - _put_group converts these
            group.done.set_exception(failure.output_error(self.config.bucket))
        except OutputError as error:
            group.done.set_exception(error)
        except asyncio.CancelledError:
            group.done.set_exception(RetryableError("S3 output stopped during the upload"))
            raise
        except Exception as error:
            self.log.exception("S3 output %s: unexpected upload error", self.context.name)
            group.done.set_exception(RetryableError(f"unexpected error: {error!r}"))
        else:
            group.done.set_result(None)
        finally:
            self._inflight.discard(group)
            for chunk_id in group.ids:
                if self._by_chunk.get(chunk_id) is group:
                    del self._by_chunk[chunk_id]

    async def _put_group(self, group: _Group) -> None:
        config = self.config
        if group.tail is not None:
            await group.tail
        if not group.chunks:
            return
        group.pieces.append(group.compressor.finish())
        body = b"".join(group.pieces)
        group.pieces.clear()
        chunk_ids = [chunk.id for chunk in group.chunks]
        digest = group_digest(chunk_ids)
        index = self.journal.take_index()
        key = self.template.key(group.parts, chunk_ids[0], index)
        retry = 0
        while not self.journal.free_key(key, digest):
            retry += 1
            key = self.template.key(group.parts, f"{chunk_ids[0]}-r{retry}", index)
        try:
            await self.journal.begin(key, chunk_ids, digest, index)
        except OSError as error:
            raise RetryableError(
                f"cannot write the S3 journal {self.journal.path}: {error}"
            ) from None
        metadata = {
            META_PREFIX + "digest": digest,
            META_PREFIX + "chunks": str(len(chunk_ids)),
            META_PREFIX + "first-chunk": chunk_ids[0],
            META_PREFIX + "last-chunk": chunk_ids[-1],
            META_PREFIX + "records": str(group.records),
            META_PREFIX + "host": self.template.host,
            META_PREFIX + "tag": safe(group.tag),
        }
        try:
            if len(body) > config.upload_chunk_size:
                await self._multipart(key, body, metadata)
            else:
                await self._call(
                    "PutObject",
                    lambda: self._client.put_object(
                        Bucket=config.bucket,
                        Key=key,
                        Body=body,
                        Metadata=metadata,
                        **self._object_args(),
                    ),
                    size=len(body),
                )
        except _S3Failure as failure:
            if not failure.failure.maybe_stored:
                with contextlib.suppress(OSError):
                    await self.journal.drop(key)
            self.log.warning(
                "S3 output %s: upload of %s (%d chunks) failed: %s",
                self.context.name,
                key,
                len(chunk_ids),
                failure.failure.reason,
            )
            raise failure.output_error(config.bucket, key) from None
        try:
            await self.journal.done(key)
        except OSError as error:
            raise RetryableError(
                f"cannot write the S3 journal {self.journal.path}: {error}"
            ) from None
        self.ready = True
        self._uploaded = True
        self.metrics.inc("output_s3_objects_total")
        self.metrics.inc("output_s3_records_total", group.records)
        self.metrics.inc("output_s3_bytes_total", group.size, stage="uncompressed")
        self.metrics.inc("output_s3_bytes_total", len(body), stage="compressed")

    def _object_args(self) -> dict[str, str]:
        config = self.config
        args = {"ContentType": self.content_type}
        if config.storage_class:
            args["StorageClass"] = config.storage_class
        if config.canned_acl:
            args["ACL"] = config.canned_acl
        if config.sse:
            args["ServerSideEncryption"] = config.sse
        if config.sse_kms_key_id:
            args["SSEKMSKeyId"] = config.sse_kms_key_id
        return args

    async def _multipart(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        config = self.config
        bucket = config.bucket
        part_size = max(int(config.upload_chunk_size), -(-len(body) // MAX_PARTS))
        checksum = {"ChecksumAlgorithm": "CRC32"} if config.checksum == "when_supported" else {}
        created = await self._call(
            "CreateMultipartUpload",
            lambda: self._client.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata=metadata, **self._object_args(), **checksum
            ),
        )
        upload_id: str = created["UploadId"]
        self._live_uploads.add(upload_id)
        completing = False
        try:
            await self.journal.uploading(key, upload_id)
            parts: list[dict[str, Any]] = []
            for number, offset in enumerate(range(0, len(body), part_size), start=1):
                piece = body[offset : offset + part_size]
                answer = await self._call(
                    "UploadPart",
                    functools.partial(
                        self._client.upload_part,
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=piece,
                        **checksum,
                    ),
                    size=len(piece),
                )
                part = {"ETag": answer["ETag"], "PartNumber": number}
                if checksum and "ChecksumCRC32" in answer:
                    part["ChecksumCRC32"] = answer["ChecksumCRC32"]
                parts.append(part)
            completing = True
            await self._call(
                "CompleteMultipartUpload",
                lambda: self._client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException as error:
            aborted = await self._abort(key, upload_id)
            if isinstance(error, _S3Failure) and not aborted:
                # Keep the journal entry and its upload id: the abort is retried when the group
                # is resolved, or at the next start.
                error.failure = msgspec.structs.replace(error.failure, maybe_stored=True)
            elif isinstance(error, _S3Failure) and not completing:
                # Without CompleteMultipartUpload there is no object, whatever the error was.
                error.failure = msgspec.structs.replace(error.failure, maybe_stored=False)
            elif isinstance(error, OSError):
                raise _S3Failure(
                    Failure("client", True, f"cannot write the S3 journal: {error}", not aborted)
                ) from None
            raise
        finally:
            self._live_uploads.discard(upload_id)

    async def _abort(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload so no parts are left behind; True when it is gone."""
        try:
            await self._call(
                "AbortMultipartUpload",
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=key, UploadId=upload_id
                ),
                missing_ok=True,
            )
        except _S3Failure as error:
            self.log.warning(
                "S3 output %s: could not abort multipart upload of %s (retried later): %s",
                self.context.name,
                key,
                error,
            )
            return False
        self.metrics.inc("output_s3_multipart_aborted_total")
        return True

    async def _resolve(self, entry: Entry) -> bool:
        """Whether the object of a group with an unknown outcome is in S3 (then the group is
        done); if not, the group is dropped (its multipart upload aborted) and False."""
        running = self._resolving.get(entry.key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._resolving[entry.key] = future
        try:
            head = await self._call(
                "HeadObject",
                lambda: self._client.head_object(Bucket=self.config.bucket, Key=entry.key),
                missing_ok=True,
            )
            metadata = head.get("Metadata", {}) if head else {}
            stored = metadata.get(META_PREFIX + "digest") == entry.digest
            if stored:
                await self.journal.done(entry.key)
            else:
                if entry.upload_id and not await self._abort(entry.key, entry.upload_id):
                    raise RetryableError(f"could not abort multipart upload of {entry.key}")
                await self.journal.drop(entry.key, retire=True)
            future.set_result(stored)
            return stored
        except _S3Failure as failure:
            error = failure.output_error(self.config.bucket, entry.key)
            future.set_exception(error)
            raise error from None
        except OSError as error:
            retryable = RetryableError(f"cannot write the S3 journal: {error}")
            future.set_exception(retryable)
            raise retryable from None
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            del self._resolving[entry.key]

    # ------------------------------------------------------------------------ S3 calls

    async def _call(
        self,
        operation: str,
        make: Callable[[], Awaitable[Any]],
        size: int = 0,
        missing_ok: bool = False,
    ) -> Any:
        """One S3 call under its own deadline. botocore's read timeout does not cover a server
        that stops reading a request body (Expect: 100-continue, no write timeout in aiohttp),
        so ``asyncio.timeout`` is the bound that always holds."""
        from botocore.exceptions import ClientError

        deadline = float(self.config.request_timeout) + size / MiB * float(
            self.config.request_timeout_per_mib
        )
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline):
                return await make()
        except Exception as error:
            if isinstance(error, ClientError):
                status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                code = str(error.response.get("Error", {}).get("Code", ""))
                if missing_ok and (status == 404 or code in ("NoSuchKey", "NoSuchUpload")):
                    return None
            failure = classify(error, operation)
            self.metrics.inc("output_s3_errors_total", kind=failure.kind)
            if failure.unreachable:
                self.ready = False
            raise _S3Failure(failure) from error
        finally:
            self.metrics.observe(
                "output_s3_request_seconds", time.monotonic() - started, operation=operation
            )

    async def _check(self) -> None:
        """HeadBucket, then a tiny PutObject (and DeleteObject) under the prefix: proves the
        bucket exists and that this identity may write there with the configured encryption,
        ACL and storage class."""
        bucket = self.config.bucket
        await self._call("HeadBucket", lambda: self._client.head_bucket(Bucket=bucket))
        key = f"{self.template.static_prefix()}.healthcheck/{self.template.host}"
        body = msgspec.json.encode({"agent": "container-audit-agent", "time": time.time()})
        await self._call(
            "PutObject",
            lambda: self._client.put_object(
                Bucket=bucket, Key=key, Body=body, **self._object_args()
            ),
        )
        try:
            await self._call(
                "DeleteObject", lambda: self._client.delete_object(Bucket=bucket, Key=key)
            )
        except _S3Failure as failure:
            if failure.failure.kind != "denied":
                raise
            self.log.info(
                "S3 output %s: may not delete the probe %s (fine)", self.context.name, key
            )
        self.ready = True
        self._checked = True
        self.log.info("S3 output %s: bucket %s reachable and writable", self.context.name, bucket)

    async def _check_until_ready(self) -> None:
        delay = max(float(self.config.retry_base), 0.1)
        while not self._checked and not self._uploaded:
            # An upload that succeeded proves more than the check (which may lack a permission
            # the uploads do not need, such as s3:ListBucket for HeadBucket).
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, max(float(self.config.retry_max), 0.1))
            try:
                await self._check()
            except _S3Failure as failure:
                self.log.warning(
                    "S3 output %s: bucket %s still not ready: %s",
                    self.context.name,
                    self.config.bucket,
                    failure.failure.reason,
                )
        await self._cleanup()

    async def _cleanup(self) -> None:
        """Abort multipart uploads this agent left behind: those in the journal, and any
        upload under the prefix whose key matches this node's key pattern and that started
        before this run."""
        bucket = self.config.bucket
        for entry in self.journal.pending():
            if entry.upload_id and await self._abort(entry.key, entry.upload_id):
                with contextlib.suppress(OSError):
                    await self.journal.uploading(entry.key, "")
        if not self.abort_stale_uploads:
            return
        pattern = self.template.pattern()
        stale: list[tuple[str, str]] = []
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            pages = paginator.paginate(Bucket=bucket, Prefix=self.template.static_prefix())
            async with asyncio.timeout(float(self.config.request_timeout) * 4):
                async for page in pages:
                    for upload in page.get("Uploads", []):
                        upload_id = upload["UploadId"]
                        if (
                            pattern.match(upload["Key"])
                            and upload_id not in self._live_uploads
                            and upload.get("Initiated", self._started_at) <= self._started_at
                        ):
                            stale.append((upload["Key"], upload_id))
        except Exception as error:
            self.log.warning(
                "S3 output %s: could not list multipart uploads to clean up: %s",
                self.context.name,
                classify(error, "ListMultipartUploads").reason,
            )
            return
        for key, upload_id in stale:
            if await self._abort(key, upload_id):
                self.log.info(
                    "S3 output %s: aborted stale multipart upload of %s", self.context.name, key
                )

    def _assume_role_resolver(self) -> Any:
        from aiobotocore.credentials import (
            AioAssumeRoleCredentialFetcher,
            AioCredentialResolver,
            AioDeferredRefreshableCredentials,
        )
        from aiobotocore.session import get_session
        from botocore.credentials import CredentialProvider

        config = self.config
        source = get_session()
        extra: dict[str, str] = {"RoleSessionName": config.role_session_name}
        if config.external_id:
            extra["ExternalId"] = config.external_id
        create_sts = functools.partial(
            source.create_client, region_name=config.region, endpoint_url=config.sts_endpoint_url
        )

        class AssumeRole(CredentialProvider):
            METHOD = "assume-role"
            CANONICAL_NAME = "container-audit-agent-assume-role"

            async def load(self) -> Any:
                # The source identity comes from the standard chain (env, IRSA, profile...).
                credentials = await source.get_credentials()
                if credentials is None:
                    return None
                fetcher = AioAssumeRoleCredentialFetcher(
                    client_creator=create_sts,
                    source_credentials=credentials,
                    role_arn=config.role_arn,
                    extra_args=extra,
                )
                return AioDeferredRefreshableCredentials(
                    refresh_using=fetcher.fetch_credentials, method=self.METHOD
                )

        return AioCredentialResolver([AssumeRole()])

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
