"""Buffer throughput: append per sync mode, take/ack, and recovery + memory with a large backlog.

    python bench/buffer.py                # full run (~1 GiB backlog written to a temp dir)
    python bench/buffer.py --smoke        # seconds, tiny sizes (CI)
    python bench/buffer.py --json out.json

Records are ~200-byte JSON lines appended in batches of 100 (what an input hands over per
read). ``batch`` mode commits after every append, as the RELP input does per batch: that is its
worst case. Results go to stdout as a table and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from agent.buffer.base import Buffer, BufferConfig
from agent.buffer.factory import build_buffer
from common.units import Duration, Size
from tests.doubles import RecordingMetrics

LOG = logging.getLogger("bench.buffer")
BATCH = 100
MiB = 1024 * 1024


def make_batch(seed: int = 0) -> tuple[list[bytes], list[float]]:
    lines = []
    now = time.time()
    for i in range(BATCH):
        record = {
            "time": "2026-11-29T21:00:00.123456Z",
            "host": "node-17",
            "ident": "kubelet",
            "pid": "1234",
            "severity": "info",
            "message": f"record {seed + i} " + "m" * 100,
        }
        lines.append(msgspec.json.encode(record))
    return lines, [now] * BATCH


def buffer(kind: str, data_dir: str, metrics: RecordingMetrics, **config: Any) -> Buffer:
    cfg = BufferConfig(
        type=kind,  # type: ignore[arg-type]
        flush_interval=Duration(1.0),
        max_bytes=Size(64 * 1024 * MiB),
        **config,
    )
    return build_buffer(cfg, data_dir, metrics, LOG)


async def bench_append(kind: str, sync: str, seconds: float, workdir: str) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(dir=workdir)
    metrics = RecordingMetrics()
    buf = buffer(kind, data_dir, metrics, sync=sync)
    await buf.open(lambda tag: ["out"])
    lines, times = make_batch()
    line_bytes = sum(len(line) for line in lines)
    batches = 0
    start = time.perf_counter()
    deadline = start + seconds
    next_seal = start + 0.2
    while True:
        for _ in range(10):
            buf.append("bench.tag", lines, times)
            await buf.commit()
        batches += 10
        now = time.perf_counter()
        if now >= next_seal:
            buf.seal_due(time.time())
            next_seal = now + 0.2
        if now >= deadline:
            break
    elapsed = time.perf_counter() - start
    await buf.close()
    shutil.rmtree(data_dir)
    records = batches * BATCH
    fsyncs = metrics.observations("buffer_fsync_seconds")
    fsync_seconds = metrics.observed_sum("buffer_fsync_seconds")
    return {
        "buffer": kind,
        "sync": sync,
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "mib_per_s": round(batches * line_bytes / elapsed / MiB, 1),
        "appends_per_s": round(batches / elapsed),
        "fsyncs": fsyncs,
        "mean_fsync_ms": round(1000 * fsync_seconds / fsyncs, 3) if fsyncs else 0.0,
    }


async def bench_concurrent_commits(
    sync: str, committers: int, seconds: float, workdir: str
) -> dict[str, Any]:
    """``committers`` tasks (RELP connections) each append a batch and await commit."""
    data_dir = tempfile.mkdtemp(dir=workdir)
    metrics = RecordingMetrics()
    buf = buffer("disk", data_dir, metrics, sync=sync)
    await buf.open(lambda tag: ["out"])
    lines, times = make_batch()
    counts = [0] * committers
    deadline = time.perf_counter() + seconds

    async def connection(index: int) -> None:
        while time.perf_counter() < deadline:
            buf.append(f"bench.{index % 4}", lines, times)
            await buf.commit()
            counts[index] += 1

    start = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(committers)))
    elapsed = time.perf_counter() - start
    await buf.close()
    shutil.rmtree(data_dir)
    batches = sum(counts)
    fsyncs = metrics.observations("buffer_fsync_seconds")
    return {
        "sync": sync,
        "committers": committers,
        "records_per_s": round(batches * BATCH / elapsed),
        "appends_per_s": round(batches / elapsed),
        "fsync_rounds": fsyncs,
        "appends_per_fsync": round(batches / fsyncs, 1) if fsyncs else 0,
    }


async def fill(buf: Buffer, total_bytes: int) -> int:
    lines, times = make_batch()
    per_batch = sum(len(line) + 1 for line in lines)
    batches = max(1, total_bytes // per_batch)
    for i in range(batches):
        buf.append(f"bench.{i % 4}", lines, times)
    return batches * BATCH


async def bench_take_ack(kind: str, total_bytes: int, workdir: str) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(dir=workdir)
    buf = buffer(kind, data_dir, RecordingMetrics())
    await buf.open(lambda tag: ["out"])
    records = await fill(buf, total_bytes)
    buf.seal_due(time.time() + 3600)
    chunks = 0
    start = time.perf_counter()
    while buf.pending("out"):
        chunk = await buf.take("out")
        chunk.data()
        buf.ack(chunk, "out")
        chunks += 1
    elapsed = time.perf_counter() - start
    await buf.close()
    shutil.rmtree(data_dir)
    return {
        "buffer": kind,
        "records": records,
        "chunks": chunks,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "chunks_per_s": round(chunks / elapsed),
    }


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def recover_child(data_dir: str) -> dict[str, Any]:
    """In a fresh process: open a directory holding a large backlog, then drain it."""
    buf = buffer("disk", data_dir, RecordingMetrics())
    start = time.perf_counter()
    await buf.open(lambda tag: ["out"])
    opened = time.perf_counter() - start
    rss_after_open = rss_mib()
    stats = buf.stats()
    peak = rss_after_open
    records = 0
    start = time.perf_counter()
    while buf.pending("out"):
        chunk = await buf.take("out")
        records += len(chunk.lines())
        chunk.data()
        buf.ack(chunk, "out")
        peak = max(peak, rss_mib())
    drained = time.perf_counter() - start
    await buf.close()
    return {
        "queued_mib": round(stats.bytes / MiB, 1),
        "queued_chunks": stats.chunks,
        "open_seconds": round(opened, 3),
        "rss_after_open_mib": round(rss_after_open, 1),
        "drain_seconds": round(drained, 3),
        "drain_records_per_s": round(records / drained) if drained else 0,
        "peak_rss_while_draining_mib": round(peak, 1),
    }


async def bench_backlog(total_bytes: int, workdir: str) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(dir=workdir)
    buf = buffer("disk", data_dir, RecordingMetrics())
    await buf.open(lambda tag: ["out"])
    await fill(buf, total_bytes)
    await buf.close()
    try:
        output = subprocess.run(
            [sys.executable, __file__, "--recover-child", data_dir],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        shutil.rmtree(data_dir)
    result: dict[str, Any] = json.loads(output)
    return result


def table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = [title, "  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--seconds", type=float, default=3.0, help="per append measurement")
    parser.add_argument("--backlog-mib", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write results to this file")
    parser.add_argument("--recover-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recover_child:
        print(json.dumps(await recover_child(args.recover_child)))
        return
    seconds = 0.3 if args.smoke else args.seconds
    backlog = (16 if args.smoke else args.backlog_mib) * MiB
    take_bytes = (8 if args.smoke else 256) * MiB
    workdir = tempfile.mkdtemp(prefix="bench-buffer-", dir=args.dir)
    try:
        appends = [await bench_append("memory", "none", seconds, workdir)]
        for sync in ("none", "batch", "always"):
            appends.append(await bench_append("disk", sync, seconds, workdir))
        concurrent = [
            await bench_concurrent_commits(sync, 8, seconds, workdir)
            for sync in ("batch", "always")
        ]
        takes = [await bench_take_ack(kind, take_bytes, workdir) for kind in ("memory", "disk")]
        backlog_result = await bench_backlog(backlog, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(f"append: batches of {BATCH} records of ~200 bytes", appends))
    print(table("8 concurrent connections, each: append a batch, await commit()", concurrent))
    print(table("take + ack (chunks of 2 MiB)", takes))
    print(table(f"backlog of {backlog // MiB} MiB: recovery and drain in a fresh process",
                [backlog_result]))
    results = {
        "append": appends,
        "concurrent_commits": concurrent,
        "take_ack": takes,
        "backlog": backlog_result,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
