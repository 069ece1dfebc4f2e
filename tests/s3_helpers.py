"""Helpers shared by the S3 output tests and bench/s3.py: config, a running output, and reading
back what arrived in the bucket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from common.units import config_dec_hook
from outputs.base import Chunk
from outputs.compression import decompress
from outputs.s3 import S3Config, S3Output
from tests.chunks import make_context

T = TypeVar("T")


def s3_config(url: str, bucket: str, **values: Any) -> S3Config:
    settings: dict[str, Any] = {
        "type": "s3",
        "bucket": bucket,
        "endpoint_url": url,
        "region": "us-east-1",
        "addressing_style": "path",
        "upload_timeout": "300ms",
        "request_timeout": "10s",
        "retry_base": "100ms",
        "retry_max": "500ms",
    }
    settings.update(values)
    return msgspec.convert(settings, S3Config, dec_hook=config_dec_hook)


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 180.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def running(
    config: S3Config, data_dir: Path, node: str = "node-a"
) -> AsyncIterator[S3Output]:
    output = S3Output(config, make_context(data_dir, node_name=node))
    await output.start()
    try:
        yield output
    finally:
        await output.stop()


def compression_of(key: str) -> str:
    if key.endswith(".gz"):
        return "gzip"
    if key.endswith(".zst"):
        return "zstd"
    return "none"


def stored(client: Any, bucket: str, prefix: str = "logs/") -> dict[str, list[dict[str, Any]]]:
    """Every object under ``prefix``: key -> its records (decompressed after the key's suffix)."""
    objects: dict[str, list[dict[str, Any]]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            text = decompress(compression_of(item["Key"]), body)
            objects[item["Key"]] = [json.loads(line) for line in text.splitlines()]
    return objects


def sequence_counts(objects: dict[str, list[dict[str, Any]]]) -> Counter[int]:
    return Counter(record["seq"] for records in objects.values() for record in records)


def expected_sequences(chunks: Iterable[Chunk]) -> Counter[int]:
    return Counter(json.loads(line)["seq"] for chunk in chunks for line in chunk.lines())


def multipart_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads
