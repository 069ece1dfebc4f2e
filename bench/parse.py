"""Throughput of the syslog parsing hot path on one core.

Frames are shaped like Docker's syslog driver output (~200 bytes): ``rfc5424micro`` (RFC 5424,
microsecond stamps) and ``rfc3164`` (with hostname), and a 50/50 mix of both. Each row is timed
parse only (``SyslogParser.parse_batch``) and parse + JSON encode (``msgspec.json.Encoder().encode``
per record, as the buffer does). Time advances one second every 1000 records, so the timestamp
caches see what a busy node gives them. Prints a table and writes JSON.

    python bench/parse.py                 # full run, ~30 s
    python bench/parse.py --smoke         # a few thousand records, for the test suite
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers.syslog import SyslogParser

START = 1795986000  # 2026-11-29T21:00:00Z
HOSTS = ("ip-10-0-1-17.eu-west-1.compute.internal", "ip-10-0-2-42.eu-west-1.compute.internal")
CONTAINERS = ("5a6e1c8e6f3b", "9f1d2c3b4a5e", "0c7e8d9f1a2b", "c3d4e5f6a7b8")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _body(i: int) -> str:
    return (
        f"10.244.{i % 7}.{i % 251} - - [29/Nov/2026:21:00:00 +0000] "
        f'"GET /api/v1/orders?page={i % 50} HTTP/1.1" {200 if i % 13 else 500} '
        f'{1000 + i % 4000} "-" "kube-probe/1.29"'
    )


def rfc5424_frames(count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        stamp = time.gmtime(START + i // 1000)
        micros = (i * 7919) % 1_000_000
        fraction = f".{micros:06d}".rstrip("0").rstrip(".")  # rfc5424micro trims zeros
        container = CONTAINERS[i % len(CONTAINERS)]
        pri = 27 if i % 10 == 0 else 30  # stderr is daemon.err, stdout daemon.info
        frames.append(
            (
                f"<{pri}>1 {time.strftime('%Y-%m-%dT%H:%M:%S', stamp)}{fraction}Z "
                f"{HOSTS[i % 2]} {container} 2731 {container} - {_body(i)}"
            ).encode()
        )
    return frames


def rfc3164_frames(count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        stamp = time.gmtime(START + i // 1000)
        container = CONTAINERS[i % len(CONTAINERS)]
        pri = 27 if i % 10 == 0 else 30
        frames.append(
            (
                f"<{pri}>{MONTHS[stamp.tm_mon - 1]} {stamp.tm_mday:2d} "
                f"{time.strftime('%H:%M:%S', stamp)} {HOSTS[i % 2]} {container}[2731]: {_body(i)}"
            ).encode()
        )
    return frames


def mixed_frames(count: int) -> list[bytes]:
    a, b = rfc5424_frames(count // 2 + 1), rfc3164_frames(count // 2 + 1)
    return [frame for pair in zip(a, b, strict=True) for frame in pair][:count]


def _batches(frames: list[bytes], size: int) -> list[list[bytes]]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def _run(batches: list[list[bytes]], encode: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for one pass. CPU time is what one core delivered even when
    other processes share the machine; wall time also counts time spent preempted."""
    parser = SyslogParser()
    encoder = msgspec.json.Encoder()
    enc = encoder.encode
    received = START + 0.5
    start_cpu = time.process_time()
    start = time.perf_counter()
    if encode:
        for batch in batches:
            for record in parser.parse_batch(batch, received):
                enc(record)
    else:
        for batch in batches:
            parser.parse_batch(batch, received)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    assert parser.parse_errors == 0, f"benchmark lines failed to parse: {parser.parse_errors}"
    return cpu, wall


def bench(records: int, batch: int, repeat: int) -> list[dict[str, Any]]:
    shapes: dict[str, Callable[[int], list[bytes]]] = {
        "rfc5424": rfc5424_frames,
        "rfc3164": rfc3164_frames,
        "mix": mixed_frames,
    }
    rows = []
    for shape, make in shapes.items():
        frames = make(records)
        size = sum(len(f) for f in frames) / len(frames)
        batches = _batches(frames, batch)
        for mode, encode in (("parse", False), ("parse+encode", True)):
            runs = [_run(batches, encode) for _ in range(repeat)]
            cpu = min(run[0] for run in runs)
            wall = min(run[1] for run in runs)
            rows.append(
                {
                    "shape": shape,
                    "mode": mode,
                    "records": len(frames),
                    "avg_bytes": round(size, 1),
                    "records_per_s": round(len(frames) / cpu),
                    "us_per_record": round(cpu / len(frames) * 1e6, 3),
                    "wall_records_per_s": round(len(frames) / wall),
                    "wall_us_per_record": round(wall / len(frames) * 1e6, 3),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    default_json = Path(__file__).resolve().parent / "results" / "parse.json"
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--records", type=int, default=200_000, help="records per shape")
    args.add_argument("--batch", type=int, default=256, help="frames per parse_batch call")
    args.add_argument("--repeat", type=int, default=5, help="runs per row; the best is kept")
    args.add_argument("--json", type=Path, default=default_json, help="where to write results")
    args.add_argument("--smoke", action="store_true", help="tiny run (checks it works)")
    options = args.parse_args(argv)
    if options.smoke:
        options.records, options.repeat = 3000, 1
    gc.collect()
    rows = bench(options.records, options.batch, options.repeat)
    print(
        f"{'shape':<8} {'mode':<13} {'records':>8} {'bytes':>6} {'records/s':>11} {'us/rec':>7}"
        f" {'wall rec/s':>11} {'wall us':>7}"
    )
    for row in rows:
        print(
            f"{row['shape']:<8} {row['mode']:<13} {row['records']:>8} {row['avg_bytes']:>6} "
            f"{row['records_per_s']:>11,} {row['us_per_record']:>7.3f}"
            f" {row['wall_records_per_s']:>11,} {row['wall_us_per_record']:>7.3f}"
        )
    print("records/s and us/rec are per CPU second of this process (best of --repeat runs);")
    print("wall columns include time the process waited for a core.")
    result = {
        "benchmark": "parse",
        "smoke": options.smoke,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "timer": "records_per_s/us_per_record: time.process_time; wall_*: time.perf_counter",
        "batch": options.batch,
        "repeat": options.repeat,
        "rows": rows,
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
