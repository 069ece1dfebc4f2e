"""Throughput of the Elasticsearch output into a real local OpenSearch node.

    python bench/es.py                # full run, table on stdout, JSON in bench/results/es.json
    python bench/es.py --smoke        # seconds: proves the bench works
    python bench/es.py --json out.json --chunks 40 --records 5000

Each case sends the same pre-encoded chunks (records shaped like the syslog parser's output)
through ElasticsearchOutput.send with ``workers`` chunks in flight, into a fresh index, and
checks the count afterwards. "build" is the output's own CPU cost of turning chunks into bulk
bodies (and gzip when on; no network), the part this project controls; the node shares the
machine's two cores with the client, so records/s is a floor, not the output's ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from outputs.compression import gzip_fast  # noqa: E402
from outputs.elasticsearch.bulk import bulk_body  # noqa: E402
from tests.es_helpers import MemoryChunk, make_output, syslog_record  # noqa: E402
from tests.peers.opensearch import OpenSearchNode  # noqa: E402

CASES: list[tuple[str, dict[str, Any]]] = [
    ("default", {}),
    ("id_mode=hash", {"id_mode": "hash"}),
    ("gzip", {"compression": "gzip"}),
    ("hash+tag+gzip", {"id_mode": "hash", "include_tag_key": True, "compression": "gzip"}),
    ("default again", {}),  # the node warms up as it goes: compare with the first row
]


def make_chunks(count: int, records: int) -> list[MemoryChunk]:
    chunks = []
    for k in range(count):
        batch = [
            syslog_record(k * records + i, time=f"2026-11-29T10:{i % 60:02d}:00.{i % 1000:03d}Z")
            for i in range(records)
        ]
        chunks.append(MemoryChunk("syslog.bench", batch))
    return chunks


def build_cost(chunks: list[MemoryChunk], settings: dict[str, Any]) -> float:
    output, _, _ = make_output(hosts="http://127.0.0.1:9", index="bench-%Y.%m.%d", **settings)
    output.suppress_type_name = True
    started = time.process_time()
    gzip = settings.get("compression") == "gzip"
    for chunk in chunks:
        body = bulk_body(output._build_items(chunk, set()))
        if gzip:
            gzip_fast(body)
    return time.process_time() - started


async def send_case(
    node: OpenSearchNode, chunks: list[MemoryChunk], index: str, workers: int, **settings: Any
) -> dict[str, float]:
    output, metrics, dead = make_output(hosts=node.url, index=index, workers=workers, **settings)
    await output.start()
    queue: asyncio.Queue[MemoryChunk] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker() -> None:
        while not queue.empty():
            await output.send([queue.get_nowait()])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await output.stop()
    records = sum(chunk.records for chunk in chunks)
    count = node.count(index)
    if count != records or dead.calls:
        raise SystemExit(f"{index}: {count} documents for {records} records, {dead.calls[:1]}")
    retried = metrics.counter("output_es_items_total", outcome="retried")
    return {"wall_seconds": wall, "cpu_seconds": cpu, "retried": retried}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: does the bench work")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--records", type=int, default=5000, help="records per chunk")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "es.json"))
    args = parser.parse_args()
    if args.smoke:
        args.chunks, args.records = 2, 500

    chunks = make_chunks(args.chunks, args.records)
    records = args.chunks * args.records
    payload = sum(chunk.size for chunk in chunks)
    results: list[dict[str, Any]] = []
    with OpenSearchNode(heap="1g") as node:
        startup = node.startup_seconds
        # warm up the node's JIT and the connection pool (not measured): the first case
        # otherwise pays for it
        asyncio.run(send_case(node, chunks, "bench-warmup", args.workers))
        node.delete_index("bench-warmup")
        for position, (name, settings) in enumerate(CASES):
            sent = asyncio.run(
                send_case(node, chunks, f"bench-{position}", args.workers, **settings)
            )
            build = build_cost(chunks, settings)
            results.append(
                {
                    "case": name,
                    "records": records,
                    "bytes": payload,
                    "records_per_second": records / sent["wall_seconds"],
                    "mib_per_second": payload / sent["wall_seconds"] / 2**20,
                    "client_cpu_seconds": sent["cpu_seconds"],
                    "build_records_per_cpu_second": records / build if build else 0.0,
                    "retried_items": sent["retried"],
                }
            )
            node.delete_index(f"bench-{position}")
        rss = node.rss_bytes()

    print(
        f"Elasticsearch output -> OpenSearch 2.19 on loopback: {args.chunks} chunks x "
        f"{args.records} records ({payload / 2**20:.1f} MiB), workers={args.workers}"
    )
    print(f"{'case':<16}{'records/s':>12}{'MiB/s':>9}{'client CPU s':>14}{'build rec/CPU s':>17}")
    for row in results:
        print(
            f"{row['case']:<16}{row['records_per_second']:>12,.0f}{row['mib_per_second']:>9.1f}"
            f"{row['client_cpu_seconds']:>14.2f}{row['build_records_per_cpu_second']:>17,.0f}"
        )
    print(f"node startup {startup:.1f}s, node RSS {rss / 2**20:.0f} MiB")
    report = {
        "bench": "es",
        "smoke": args.smoke,
        "chunks": args.chunks,
        "records_per_chunk": args.records,
        "workers": args.workers,
        "node_startup_seconds": startup,
        "node_rss_bytes": rss,
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
