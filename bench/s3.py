"""S3 output throughput: chunks of encoded records -> compressed objects in moto_server.

    python bench/s3.py                 # 400k records (~100 MB of NDJSON) per compression
    python bench/s3.py --smoke         # seconds, tiny sizes (CI)
    python bench/s3.py --json out.json

Records are ~250-byte syslog-like JSON lines (what the parsers produce), in chunks of 2 MiB
(the buffer's default ``chunk_bytes``), sent the way the agent does (grouped into objects, up to
``workers`` uploads at once) to an S3Output with its defaults (50 MiB objects, 8 MiB multipart
threshold) except ``upload_timeout`` (200 ms, so the last partial object does not wait a
minute). The clock runs from the first ``send`` to the last object confirmed. moto is a
single-threaded Python server, so the numbers are a floor for the output, not S3's. Results go
to stdout as a table and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from outputs.s3 import S3Output
from tests.chunks import TestChunk, deliver, make_context
from tests.peers.moto import MotoServer, use_fake_credentials
from tests.s3_helpers import s3_config

MiB = 1024 * 1024
CHUNK_BYTES = 2 * MiB
IDENTS = ["kubelet", "containerd", "sshd", "sudo", "systemd", "kernel", "audit", "nginx"]
WORDS = [
    "connection",
    "accepted",
    "closed",
    "from",
    "user",
    "session",
    "opened",
    "for",
    "pod",
    "sandbox",
    "started",
    "image",
    "pulled",
    "volume",
    "mounted",
    "failed",
    "to",
    "probe",
    "liveness",
    "readiness",
    "container",
    "exited",
    "with",
    "code",
    "restarting",
    "backoff",
    "authentication",
    "success",
    "failure",
    "invalid",
    "port",
    "request",
    "GET",
    "POST",
    "/healthz",
    "/api/v1",
]


def make_chunks(total_records: int, seed: int = 7) -> list[TestChunk]:
    rng = random.Random(seed)
    encoder = msgspec.json.Encoder()
    now = time.time()
    chunks: list[TestChunk] = []
    lines: list[bytes] = []
    size = 0
    for seq in range(total_records):
        ident = rng.choice(IDENTS)
        record = {
            "time": f"2024-05-01T10:{seq // 60000 % 60:02d}:{seq // 1000 % 60:02d}"
            f".{seq % 1000:03d}Z",
            "host": f"node-{rng.randint(1, 40)}",
            "ident": ident,
            "pid": rng.randint(100, 65000),
            "facility": "daemon",
            "severity": rng.choice(["info", "info", "info", "notice", "warning", "err"]),
            "message": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))
            + f" id={rng.getrandbits(48):x} ip=10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7",
            "seq": seq,
        }
        line = encoder.encode(record)
        lines.append(line)
        size += len(line) + 1
        if size >= CHUNK_BYTES:
            chunks.append(TestChunk("syslog.bench", lines, created=now))
            lines, size = [], 0
    if lines:
        chunks.append(TestChunk("syslog.bench", lines, created=now))
    return chunks


async def run_case(
    url: str, bucket: str, compression: str, chunks: list[TestChunk]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as data_dir:
        config = s3_config(
            url, bucket, compression=compression, upload_timeout="200ms", request_timeout="120s"
        )
        output = S3Output(config, make_context(Path(data_dir)))
        await output.start()
        try:
            cpu = time.process_time()
            started = time.perf_counter()
            result = await deliver(output, chunks)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
        finally:
            await output.stop()
    if result.fatal:
        raise RuntimeError(f"{compression}: chunks failed: {list(result.fatal.values())[:3]}")
    metrics = output.context.metrics
    records = sum(c.records for c in chunks)
    raw = sum(c.size for c in chunks)
    compressed = metrics.total("output_s3_bytes_total", stage="compressed")  # type: ignore[attr-defined]
    objects = metrics.total("output_s3_objects_total")  # type: ignore[attr-defined]
    return {
        "compression": compression,
        "records": records,
        "bytes": raw,
        "chunks": len(chunks),
        "objects": int(objects),
        "seconds": round(seconds, 3),
        "records_per_second": round(records / seconds),
        "mib_per_second": round(raw / MiB / seconds, 1),
        "compressed_bytes": int(compressed),
        "compression_ratio": round(raw / compressed, 2) if compressed else None,
        "cpu_seconds": round(cpu, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--compression", nargs="*", default=["gzip", "zstd", "none"])
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    total = args.records or (20_000 if args.smoke else 400_000)
    use_fake_credentials()
    chunks = make_chunks(total)
    results = []
    with MotoServer(log_path=Path(os.devnull)) as moto:
        client = moto.client()
        for compression in args.compression:
            bucket = f"bench-{compression}"
            client.create_bucket(Bucket=bucket)
            results.append(asyncio.run(run_case(moto.url, bucket, compression, chunks)))
    header = (
        f"{'compression':<12}{'records':>10}{'MiB':>8}{'objects':>9}{'seconds':>9}"
        f"{'records/s':>11}{'MiB/s':>8}{'ratio':>7}{'cpu s':>8}"
    )
    print("S3 output into moto_server (chunks of 2 MiB, default object size)")
    print(header)
    for r in results:
        print(
            f"{r['compression']:<12}{r['records']:>10}{r['bytes'] / MiB:>8.1f}{r['objects']:>9}"
            f"{r['seconds']:>9.2f}{r['records_per_second']:>11}{r['mib_per_second']:>8.1f}"
            f"{r['compression_ratio'] or 0:>7.2f}{r['cpu_seconds']:>8.2f}"
        )
    document = {"benchmark": "s3", "smoke": args.smoke, "results": results}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
