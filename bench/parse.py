"""Throughput of the syslog parsing hot path on one core, bare and with a typical filter chain.

Frames are shaped like Docker's syslog driver output (~200 bytes): ``rfc5424micro`` (RFC 5424,
microsecond stamps), ``rfc5424sd`` (the same lines with one typical structured-data element:
three quoted parameters, no escapes), ``rfc3164`` (with hostname), a 50/50 mix of both, ``sdmix``
(half RFC 5424, half RFC 3164, four body kinds, a unique microsecond stamp per line, half the
RFC 5424 lines with structured data: mostly one element, some two, a few escapes) and
``node``: what a Kubernetes node forwards (mostly container lines, kubelet and containerd
chatter, systemd, a few percent sshd and sudo lines; the proportions of bench/filters.py). Each
row is timed parse only
(``SyslogParser.parse_batch_with_times``: records and their epochs), parse + JSON encode (one
``msgspec.json.Encoder().encode_lines`` per batch, as the agent does), and parse + typical chain
+ encode: ``grep`` (drop ``^GET /healthz``),
``modify`` (set two fields) and ``audit`` (default rules), as the agent runs them on each batch.
Time advances one second every 1000 records, so the timestamp caches see what a busy node gives
them. Prints a table, the chain's share of the time per shape, and writes JSON.

    python bench/parse.py                 # full run, ~60 s
    python bench/parse.py --shapes node   # the node mix only
    python bench/parse.py --smoke         # a few thousand records, for the test suite
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.buffer.base import BufferConfig
from agent.buffer.disk import DiskBuffer
from agent.filters.chain import FilterChain
from agent.ingest import IngestSink, Store
from agent.inputs.syslog import SyslogInputConfig
from agent.metrics import Registry
from agent.router import Router, TagMatcher
from bench.filters import CHAINS, build
from bench.harness import write_result
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


def _typical_sd(i: int) -> str:
    """One SD element with three quoted parameters, as Java/Go RFC 5424 layouts put their MDC
    (trace and span ids, a user) there: no escapes, unique values."""
    return (
        f'[mdc@18060 traceId="{(i * 2654435761) % 2**64:016x}{i:016x}" '
        f'spanId="{(i * 40503) % 2**32:08x}{i % 65536:04x}" userId="u-{i % 5000}"]'
    )


def rfc5424_frames(count: int, sd: Callable[[int], str] | None = None) -> list[bytes]:
    """Docker ``rfc5424micro`` lines; ``sd`` gives each line's STRUCTURED-DATA (else ``-``)."""
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
                f"{HOSTS[i % 2]} {container} 2731 {container} {sd(i) if sd else '-'} {_body(i)}"
            ).encode()
        )
    return frames


def rfc5424_sd_frames(count: int) -> list[bytes]:
    """``rfc5424`` with one typical SD element (three quoted parameters) on every line."""
    return rfc5424_frames(count, _typical_sd)


def _mix_sd(i: int) -> str:
    """SD of the mix's RFC 5424 lines: none on half; else mostly one MDC element, some
    ``logger``-style two elements (timeQuality, origin), now and then an escaped quote."""
    if i % 2:
        return "-"
    if i % 10 == 4:
        return (
            f'[timeQuality tzKnown="1" isSynced="1" syncAccuracy="{100000 + i % 900000}"]'
            f'[origin ip="10.0.{i % 7}.{i % 251}" software="rsyslogd" swVersion="8.2302.0"]'
        )
    if i % 50 == 0:
        return f'[mdc@18060 traceId="{i:032x}" query="name=\\"x{i % 9}\\"" userId="u-{i % 5000}"]'
    return _typical_sd(i)


_MIX_BODIES = (
    lambda i: _body(i),
    lambda i: (
        f"level=info ts=2026-11-29T21:00:00.{i % 1000:03d}Z caller=server.go:{i % 900} "
        f'msg="request done" method=GET path=/api/v1/items/{i % 977} status=200 '
        f"duration_ms={i % 250} bytes={i % 9000}"
    ),
    lambda i: (
        f'{{"level":"info","ts":"2026-11-29T21:00:00.{i % 1000:03d}Z","logger":"orders",'
        f'"msg":"order placed","order_id":"o-{i:08d}","amount":{i % 500}.{i % 100:02d}}}'
    ),
    lambda i: (
        f"2026-11-29 21:00:00.{i % 1000:03d}  INFO 1 --- [nio-8080-exec-{i % 10}] "
        f"c.e.orders.OrderController : Order o-{i:08d} accepted for customer c-{i % 3000}"
    ),
)


def sd_mix_frames(count: int) -> list[bytes]:
    """A realistic mix: half RFC 5424 (Docker ``rfc5424micro``), half RFC 3164 with hostname;
    four body kinds (access log, logfmt, JSON, a Java text layout); every line has its own
    microsecond stamp; half of the RFC 5424 lines carry structured data (``_mix_sd``)."""
    frames = []
    for i in range(count):
        second = START + i // 1000
        stamp = time.gmtime(second)
        micros = (i * 7919 + i // 1000) % 1_000_000  # unique within each second
        body = _MIX_BODIES[(i // 2 + i // 8) % len(_MIX_BODIES)](i)
        container = CONTAINERS[i % len(CONTAINERS)]
        pri = 27 if i % 10 == 0 else 30
        if i % 2 == 0:
            frames.append(
                (
                    f"<{pri}>1 {time.strftime('%Y-%m-%dT%H:%M:%S', stamp)}.{micros:06d}Z "
                    f"{HOSTS[i % 4 // 2]} {container} 2731 {container} {_mix_sd(i // 2)} {body}"
                ).encode()
            )
        else:
            frames.append(
                (
                    f"<{pri}>{MONTHS[stamp.tm_mon - 1]} {stamp.tm_mday:2d} "
                    f"{time.strftime('%H:%M:%S', stamp)} {HOSTS[i % 4 // 2]} "
                    f"{container}[2731]: {body}"
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


def _pad(text: str, size: int = 200) -> str:
    filler = " request_id=4f1c2a9e-7b3d-4e8a-9c1f-2d6e8b0a5c3f user_agent=Go-http-client/1.1 ok"
    while len(text) < size:
        text += filler
    return text[:size]


def _daemon(pri: int, stamp: time.struct_time, host: str, ident: str, text: str) -> bytes:
    """A node daemon's line as rsyslog forwards it (RFC 3164 with hostname)."""
    return (
        f"<{pri}>{MONTHS[stamp.tm_mon - 1]} {stamp.tm_mday:2d} "
        f"{time.strftime('%H:%M:%S', stamp)} {host} {ident}: {_pad(text, 150)}"
    ).encode()


NODE_MIX: tuple[tuple[float, str], ...] = (
    (0.55, "container"),
    (0.15, "kubelet-probe"),
    (0.10, "kubelet-healthz"),
    (0.08, "containerd-execsync"),
    (0.05, "systemd"),
    (0.04, "sshd-failed"),
    (0.02, "sshd-accepted"),
    (0.01, "sudo"),
)
"""A node's lines by kind (bench/filters.py's proportions): 7% are auth lines that the audit
rules mark, the rest are screened out."""


def node_frames(count: int) -> list[bytes]:
    container = rfc5424_frames(count)
    slots: list[str] = []
    for share, kind in NODE_MIX:
        slots += [kind] * round(share * 100)
    frames = []
    for i in range(count):
        kind = slots[(i * 37) % len(slots)]  # 37 is prime to 100: every kind, spread evenly
        stamp = time.gmtime(START + i // 1000)
        host = HOSTS[i % 2]
        if kind == "container":
            frames.append(container[i])
        elif kind == "kubelet-probe":
            text = (
                f'I1129 21:00:00.{i % 1_000_000:06d}    2417 prober.go:107] "Probe succeeded" '
                f'probeType="Readiness" pod="default/web-{i % 9}" containerName="web"'
            )
            frames.append(_daemon(30, stamp, host, "kubelet[2417]", text))
        elif kind == "kubelet-healthz":
            frames.append(_daemon(30, stamp, host, "kubelet[2417]", "GET /healthz 200 OK"))
        elif kind == "containerd-execsync":
            text = (
                'time="2026-11-29T21:00:00.1Z" level=info msg="ExecSync for \\"'
                f'{CONTAINERS[i % 4]}\\" with command [cat /app/ready.txt] and timeout 1 (s)"'
            )
            frames.append(_daemon(30, stamp, host, "containerd[812]", text))
        elif kind == "systemd":
            frames.append(
                _daemon(30, stamp, host, "systemd[1]", f"Started Session {i} of User alice.")
            )
        elif kind == "sshd-failed":
            text = (
                "Failed password for invalid user admin "
                f"from 203.0.113.{i % 3} port {i % 60000} ssh2"
            )
            frames.append(_daemon(38, stamp, host, "sshd[9121]", text))
        elif kind == "sshd-accepted":
            text = (
                "Accepted publickey for alice "
                f"from 198.51.100.7 port {i % 60000} ssh2: ED25519 SHA256:x"
            )
            frames.append(_daemon(86, stamp, host, "sshd[9122]", text))
        else:
            text = "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/ls"
            frames.append(_daemon(85, stamp, host, "sudo", text))
    return frames


TYPICAL_CHAIN = "typical (grep+modify+audit)"


def _batches(frames: list[bytes], size: int) -> list[list[bytes]]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def _run_ingest(batches: list[list[bytes]], chained: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the agent's own ingest path for every batch:
    ``IngestSink.submit`` (parse, filter chain, epochs, route check, encode) into a disk buffer
    (``sync = "none"``, the default 2 MiB chunks, written to a temporary directory), with the
    agent's metrics registry counting. Nothing reads the chunks back: outputs are not timed."""
    registry = Registry()
    log = logging.getLogger("bench.ingest")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as data_dir:
        buffer = DiskBuffer(BufferConfig(), data_dir, registry.component("buffer", "disk"), log)
        router = Router([("out", TagMatcher("*"))])
        store = Store(buffer, router, registry.component("router", "router"))
        chain = build(CHAINS[TYPICAL_CHAIN], registry) if chained else None
        config = SyslogInputConfig(mode="tcp", listen="127.0.0.1:5514", tag="syslog.node")
        sink = IngestSink(config, buffer, chain, store, registry.component("bench", "syslog"))

        async def run() -> tuple[float, float]:
            await buffer.open(router.routes)
            submit = sink.submit
            start_cpu = time.process_time()
            start = time.perf_counter()
            for batch in batches:
                if not submit(batch):
                    raise RuntimeError("the buffer refused a batch")
            wall = time.perf_counter() - start
            cpu = time.process_time() - start_cpu
            await buffer.close()
            return cpu, wall

        cpu, wall = asyncio.run(run())
    errors = registry.value("parse_errors_total")
    assert not errors, f"benchmark lines failed to parse: {errors}"
    return cpu, wall


def _run(
    batches: list[list[bytes]], encode: bool, chain: FilterChain | None = None
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for one pass. CPU time is what one core delivered even when
    other processes share the machine; wall time also counts time spent preempted."""
    parser = SyslogParser()
    parse = parser.parse_batch_with_times
    encode_lines = msgspec.json.Encoder().encode_lines
    received = START + 0.5
    start_cpu = time.process_time()
    start = time.perf_counter()
    # What agent/ingest.py does per batch: records and their epochs from the parser, one
    # encode_lines per batch; after a chain, the epochs of the records that came out (the
    # chain carries the parser's beside the records).
    if chain is not None:
        for batch in batches:
            records, times = parse(batch, received)
            for _tag, kept, _times in chain.process_with_times("syslog.node", records, times):
                encode_lines(kept)
    elif encode:
        for batch in batches:
            records, _ = parse(batch, received)
            encode_lines(records)
    else:
        for batch in batches:
            parse(batch, received)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    assert parser.parse_errors == 0, f"benchmark lines failed to parse: {parser.parse_errors}"
    return cpu, wall


SHAPES: dict[str, Callable[[int], list[bytes]]] = {
    "rfc5424": rfc5424_frames,
    "rfc5424sd": rfc5424_sd_frames,
    "rfc3164": rfc3164_frames,
    "mix": mixed_frames,
    "node": node_frames,
    "sdmix": sd_mix_frames,
}
MODES = ("parse", "parse+encode", "parse+encode+chain", "ingest", "ingest+chain")


def bench(
    records: int, batch: int, repeat: int, shapes: list[str] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for shape in shapes or list(SHAPES):
        frames = SHAPES[shape](records)
        size = sum(len(f) for f in frames) / len(frames)
        batches = _batches(frames, batch)
        # The modes take turns within each repeat, so a busy spell on a shared machine hits
        # them alike and the best runs compare like with like.
        runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(repeat):
            for mode in MODES:
                if mode.startswith("ingest"):
                    runs[mode].append(_run_ingest(batches, chained=mode.endswith("chain")))
                    continue
                # A fresh chain per run: the audit filter's burst counters start empty.
                chain = build(CHAINS[TYPICAL_CHAIN]) if "chain" in mode else None
                runs[mode].append(_run(batches, mode != "parse", chain))
        for mode in MODES:
            cpu = min(run[0] for run in runs[mode])
            wall = min(run[1] for run in runs[mode])
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
                    "cpu_seconds_per_run": [round(run[0], 6) for run in runs[mode]],
                }
            )
    return rows


def _chain_share(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per shape and base (parse+encode, ingest): the chain's CPU time per record, and the
    share of throughput it costs (1 - records/s with the chain / records/s without): from the
    best runs, and the median over the repeats of each pair of runs that took turns (robust
    to a busy spell that spoils one run of a pair, or makes one best run look too good)."""
    by_key = {(row["shape"], row["mode"]): row for row in rows}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for shape in dict.fromkeys(row["shape"] for row in rows):
        out[shape] = {}
        for base in ("parse+encode", "ingest"):
            bare, full = by_key[(shape, base)], by_key[(shape, base + "+chain")]
            paired = sorted(
                1 - b / f
                for b, f in zip(
                    bare["cpu_seconds_per_run"], full["cpu_seconds_per_run"], strict=True
                )
            )
            out[shape][base] = {
                "chain_us_per_record": round(full["us_per_record"] - bare["us_per_record"], 3),
                "throughput_cost": round(1 - full["records_per_s"] / bare["records_per_s"], 3),
                "throughput_cost_median": round(statistics.median(paired), 3),
                "throughput_cost_quartiles": [
                    round(paired[len(paired) // 4], 3),
                    round(paired[(3 * len(paired) - 1) // 4], 3),
                ],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    default_json = Path(__file__).resolve().parent / "results" / "parse.json"
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--records", type=int, default=200_000, help="records per shape")
    args.add_argument("--batch", type=int, default=256, help="frames per parse_batch call")
    args.add_argument(
        "--repeat", type=int, default=7, help="runs per row: the best is kept, pairs compared"
    )
    args.add_argument("--json", type=Path, default=default_json, help="where to write results")
    args.add_argument("--smoke", action="store_true", help="tiny run (checks it works)")
    args.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}"
    )
    options = args.parse_args(argv)
    shapes = [name.strip() for name in options.shapes.split(",") if name.strip()]
    unknown = [name for name in shapes if name not in SHAPES]
    if unknown or not shapes:
        args.error(f"--shapes: unknown {unknown}; choose from {', '.join(SHAPES)}")
    if options.smoke:
        options.records, options.repeat = 3000, 1
    gc.collect()
    rows = bench(options.records, options.batch, options.repeat, shapes)
    chain_share = _chain_share(rows)
    print(
        f"{'shape':<8} {'mode':<18} {'records':>8} {'bytes':>6} {'records/s':>11} {'us/rec':>7}"
        f" {'wall rec/s':>11} {'wall us':>7}"
    )
    for row in rows:
        print(
            f"{row['shape']:<8} {row['mode']:<18} {row['records']:>8} {row['avg_bytes']:>6} "
            f"{row['records_per_s']:>11,} {row['us_per_record']:>7.3f}"
            f" {row['wall_records_per_s']:>11,} {row['wall_us_per_record']:>7.3f}"
        )
    print("records/s and us/rec are per CPU second of this process (best of --repeat runs);")
    print("wall columns include time the process waited for a core.")
    print("the typical chain (grep + modify + audit): CPU time it adds per record, and the")
    print("share of the throughput it costs, against parse+encode and the agent's ingest path")
    print(f"(best runs; median and quartiles of the {options.repeat} paired runs):")
    for shape, bases in chain_share.items():
        for base, share in bases.items():
            low, high = share["throughput_cost_quartiles"]
            print(
                f"  {shape:<8} {base:<13} {share['chain_us_per_record']:.3f} us/record, "
                f"{share['throughput_cost']:.0%} of the throughput; paired median "
                f"{share['throughput_cost_median']:.0%} ({low:.0%}..{high:.0%})"
            )
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
        "chain": {"name": TYPICAL_CHAIN, "filters": CHAINS[TYPICAL_CHAIN]},
        "rows": rows,
        "chain_cost": chain_share,
    }
    write_result(options.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
