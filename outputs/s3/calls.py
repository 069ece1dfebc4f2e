"""The S3 calls of the output, each under its own deadline and classified (``errors.py``):
uploads (PutObject, multipart), aborts, the start-up check and the clean-up of multipart uploads
a crash left behind, and the assume-role credentials. ``S3Output`` (output.py) builds on this.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from common.metrics import Metrics
from outputs.base import OutputContext
from outputs.s3.config import MAX_PARTS, MiB, S3Config
from outputs.s3.errors import Failure, S3Failure, classify
from outputs.s3.journal import Journal
from outputs.s3.keys import KeyTemplate


class S3Calls:
    """The part of ``S3Output`` that talks to S3; its state is set by ``S3Output``."""

    config: S3Config
    log: Any
    metrics: Metrics
    template: KeyTemplate
    journal: Journal
    content_type: str
    ready: bool
    abort_stale_uploads: bool
    _client: Any
    _tasks: set[asyncio.Task[Any]]
    _live_uploads: set[str]
    _checked: bool
    _uploaded: bool
    _started_at: datetime
    context: OutputContext

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
            if isinstance(error, S3Failure) and not aborted:
                # Keep the journal entry and its upload id: the abort is retried when the group
                # is resolved, or at the next start.
                error.failure = msgspec.structs.replace(error.failure, maybe_stored=True)
            elif isinstance(error, S3Failure) and not completing:
                # Without CompleteMultipartUpload there is no object, whatever the error was.
                error.failure = msgspec.structs.replace(error.failure, maybe_stored=False)
            elif isinstance(error, OSError):
                raise S3Failure(
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
        except S3Failure as error:
            self.log.warning(
                "S3 output %s: could not abort multipart upload of %s (retried later): %s",
                self.context.name,
                key,
                error,
            )
            return False
        self.metrics.inc("output_s3_multipart_aborted_total")
        return True

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
            raise S3Failure(failure) from error
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
        except S3Failure as failure:
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
            except S3Failure as failure:
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
