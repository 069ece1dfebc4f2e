"""``[[outputs]] type = "s3"``: the config struct, its checks and S3's naming and size limits.

Imports nothing of aiobotocore, so a config validates where the extra is not installed.
"""

from __future__ import annotations

import re
from typing import Literal

from common.units import Duration, Size
from outputs.base import Batching, OutputConfig
from outputs.compression import EXTENSIONS, check_available, check_level
from outputs.s3.keys import KeyTemplate

MiB = 1024 * 1024
DEFAULT_KEY_FORMAT = "logs/${tag}/%Y/%m/%d/%H/${host}-${chunk_id}.ndjson${ext}"
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000

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
    """``[[outputs]] type = "s3"``; docs/s3.md explains grouping, keys and idempotency."""

    bucket: str
    """Bucket name."""
    region: str | None = None
    """AWS region; unset: botocore's chain (``AWS_REGION``, ``AWS_DEFAULT_REGION``,
    ``~/.aws/config``)."""
    endpoint_url: str | None = None
    """Endpoint of an S3-compatible store (MinIO, Ceph, moto) or a VPC endpoint, e.g.
    ``"https://minio.example:9000"``."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """"path" (host/bucket/key, what most S3-compatible stores want), "virtual"
    (bucket.host/key) or "auto"."""
    prefix: str = ""
    """Prepended to ``key_format`` (a "/" is added between them if missing); placeholders work."""
    key_format: str = DEFAULT_KEY_FORMAT
    """Object key template: ``${tag}``, ``${tag[N]}``, ``${host}`` (required), ``${chunk_id}``
    (required), ``${index}``, ``${ext}`` and strftime fields of the first chunk's creation time."""
    total_file_size: Size = Size(50 * MiB)
    """Uncompressed bytes that close an object."""
    upload_timeout: Duration = Duration(60.0)
    """An object goes up at the latest this long after its first chunk arrived."""
    max_chunks_per_object: int = 64
    """Buffer chunks that close an object."""
    upload_chunk_size: Size = Size(8 * MiB)
    """Compressed objects larger than this go up as multipart uploads with parts of this size
    (5 MiB to 5 GiB; grown automatically past 10,000 parts)."""
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    """The object is one gzip member or one zstd frame, or plain NDJSON ("none")."""
    compression_level: int | None = None
    """gzip 1-9 (unset: 6; through zlib-ng, 1 compresses as its 2), zstd 1-22 (unset: 3); not
    allowed with ``"none"``."""
    content_type: str | None = None
    """``Content-Type`` of the objects; unset: ``application/gzip``, ``application/zstd`` or
    ``application/x-ndjson`` after ``compression``. No ``Content-Encoding`` is set, so downloads
    stay compressed files."""
    storage_class: str | None = None
    """Storage class of the objects: ``STANDARD``, ``STANDARD_IA``, ``ONEZONE_IA``,
    ``INTELLIGENT_TIERING``, ``GLACIER``, ``GLACIER_IR``, ``DEEP_ARCHIVE``,
    ``REDUCED_REDUNDANCY``, ``OUTPOSTS``, ``SNOW``, ``EXPRESS_ONEZONE``; unset: the bucket's
    default."""
    canned_acl: str | None = None
    """Canned ACL of the objects: ``private``, ``public-read``, ``public-read-write``,
    ``authenticated-read``, ``aws-exec-read``, ``bucket-owner-read``,
    ``bucket-owner-full-control`` (for cross-account buckets with ACLs enabled)."""
    sse: Literal["AES256", "aws:kms"] | None = None
    """Server-side encryption: ``"AES256"`` (SSE-S3) or ``"aws:kms"`` (SSE-KMS); unset: the
    bucket's default."""
    sse_kms_key_id: str | None = None
    """KMS key id, ARN or alias for ``sse = "aws:kms"``; None: the AWS-managed aws/s3 key."""
    role_arn: str | None = None
    """Assume this role through STS (the source identity comes from the standard chain)."""
    role_session_name: str = "container-audit-agent"
    """Session name of the assumed role (shows in CloudTrail)."""
    external_id: str | None = None
    """External id for the role's trust policy (needs ``role_arn``)."""
    sts_endpoint_url: str | None = None
    """STS endpoint (a VPC endpoint, or a test server)."""
    request_timeout: Duration = Duration(30.0)
    """Deadline of every single S3 call..."""
    request_timeout_per_mib: Duration = Duration(2.0)
    """...plus this per MiB of request body (an 8 MiB part gets 30 s + 16 s). A call past its
    deadline is abandoned and the chunks are retried."""
    checksum: Literal["when_supported", "when_required"] = "when_supported"
    """botocore's request_checksum_calculation; "when_required" for stores that reject
    the newer CRC32 checksum headers."""
    healthcheck: bool = True
    """At start, check that the bucket is reachable and writable."""

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

    @property
    def batching(self) -> Batching:
        """How delivery groups chunks into objects: ``max_chunks_per_object`` chunks or
        ``total_file_size`` uncompressed bytes close one, ``upload_timeout`` after its first."""
        return Batching(
            max_chunks=self.max_chunks_per_object,
            target_bytes=int(self.total_file_size),
            max_age=float(self.upload_timeout),
        )
