"""S3 output: one object per write, uploaded after compression (``body.py``).

Delivery groups chunks into writes after ``S3Config.batching`` (``max_chunks_per_object``,
``total_file_size``, ``upload_timeout``) and ``batch_key``: chunks of one tag whose rendered key
(without ``${chunk_id}``/``${index}``) agrees. ``send`` compresses the group into one object and
uploads it (PutObject, or a multipart upload above ``upload_chunk_size``); delivery acknowledges
every chunk of it once ``send`` returned. The key takes the first chunk's id and creation time, so
it is the same however often the object is written. Which chunks went into which object is
journaled beside the buffer (``journal.py``) so that a replay after a crash never puts a record
into a second object. docs/s3.md is the user-facing reference.

aiobotocore is imported in ``start``: the config struct imports without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from outputs.base import (
    Batching,
    Chunk,
    FatalError,
    Output,
    OutputContext,
    RetryableError,
)
from outputs.compression import CONTENT_TYPES, EXTENSIONS
from outputs.s3.body import Body, build_body
from outputs.s3.calls import S3Calls
from outputs.s3.config import S3Config
from outputs.s3.errors import S3Failure
from outputs.s3.journal import Entry, Journal, group_digest
from outputs.s3.keys import KeyTemplate, safe

META_PREFIX = "caa-"
"""User metadata on every object: ``x-amz-meta-caa-digest`` identifies the group of chunks."""


class S3Output(S3Calls, Output):
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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: dict[str, asyncio.Future[bool]] = {}
        self._live_uploads: set[str] = set()
        self._bodies: OrderedDict[str, Body] = OrderedDict()
        """Bodies of writes that failed, by the digest of their chunks: delivery retries a
        group as it was, so the retry uploads the same body without reading and compressing
        the chunks again. At most ``workers`` (one per write in flight)."""
        self._checked = False
        self._uploaded = False
        self.abort_stale_uploads = True
        """Abort this node's multipart uploads that began before this start (left by a crash).
        False in a second process beside a running agent (``dead-letters replay``), which must
        not abort the agent's uploads in progress: then only its own journal's are aborted."""
        self._started_at = datetime.now(UTC)

    @property
    def batching(self) -> Batching:
        return self.config.batching

    def batch_key(self, chunk: Chunk) -> Hashable:
        """Chunks share an object only when the tag and the rendered key prefix agree (the
        hour, with the default ``key_format``)."""
        return (chunk.tag, self.template.group(chunk.tag, chunk.created))

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = self.config
        self._started_at = datetime.now(UTC)
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
        except (S3Failure, TimeoutError) as error:
            reason = error.failure.reason if isinstance(error, S3Failure) else "timed out"
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

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
        self._client = None
        self._bodies.clear()

    # ------------------------------------------------------------------------ sending

    async def send(self, chunks: Sequence[Chunk]) -> None:
        if self._client is None:
            raise RetryableError("S3 output is not started")
        fresh: list[Chunk] = []
        for chunk in chunks:
            entry = self.journal.entry_of(chunk.id)
            if entry is not None and (entry.state == "done" or await self._resolve(entry)):
                # In S3 already (uploaded before a crash or a lost acknowledgement).
                self.metrics.inc("output_s3_chunks_already_stored_total")
                continue
            fresh.append(chunk)
        if not fresh:
            return
        digest = group_digest([chunk.id for chunk in fresh])
        body = self._bodies.pop(digest, None)
        if body is None:
            config = self.config
            body = await build_body(fresh, config.compression, config.compression_level)
        if body.chunks:
            try:
                await self._upload(body)
            except RetryableError:
                self._bodies[digest] = body
                while len(self._bodies) > self.config.workers:
                    self._bodies.popitem(last=False)
                raise
        if body.unreadable:
            # Left out of the object (which holds the others): these fail alone.
            reasons = "; ".join(f"{cid}: {why}" for cid, why in body.unreadable.items())
            raise FatalError(f"cannot read chunk {reasons}", chunks=body.unreadable)

    async def _upload(self, body: Body) -> None:
        config = self.config
        data = body.data
        chunk_ids = [chunk.id for chunk in body.chunks]
        digest = group_digest(chunk_ids)
        first = body.chunks[0]
        tag = first.tag
        parts = self.template.group(tag, first.created)
        index = self.journal.take_index()
        key = self.template.key(parts, chunk_ids[0], index)
        retry = 0
        while not self.journal.free_key(key, digest):
            retry += 1
            key = self.template.key(parts, f"{chunk_ids[0]}-r{retry}", index)
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
            META_PREFIX + "records": str(body.records),
            META_PREFIX + "host": self.template.host,
            META_PREFIX + "tag": safe(tag),
        }
        try:
            if len(data) > config.upload_chunk_size:
                await self._multipart(key, data, metadata)
            else:
                await self._call(
                    "PutObject",
                    lambda: self._client.put_object(
                        Bucket=config.bucket,
                        Key=key,
                        Body=data,
                        Metadata=metadata,
                        **self._object_args(),
                    ),
                    size=len(data),
                )
        except S3Failure as failure:
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
        self.metrics.inc("output_s3_records_total", body.records)
        self.metrics.inc("output_s3_bytes_total", body.size, stage="uncompressed")
        self.metrics.inc("output_s3_bytes_total", len(data), stage="compressed")

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
        except S3Failure as failure:
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
