"""End-to-end throughput through real sockets: a load generator sends N syslog messages (an
RFC 5424 / RFC 3164 mix of ~200 bytes, shaped like Docker's syslog driver output) to
``python -m agent`` (disk buffer on) and waits until the output acknowledged every one.

For each mode and output it reports records/s, the agent's CPU µs per record (= CPU seconds per
million records),
the agent's peak RSS, and for datagram modes what was lost (sent minus delivered, and the
kernel's own drop count from /proc/net/udp where available). Prints a table, writes JSON.

    python bench/e2e.py                          # the full run (README table)
    python bench/e2e.py --smoke                  # seconds, for the test suite
    python bench/e2e.py --modes tcp --outputs file --records 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import REPO, AgentProcess, free_port

MODES = ("tcp", "unix_stream", "udp", "unix_dgram")
OUTPUTS = ("null", "file")


@dataclass
class Result:
    mode: str
    output: str
    records: int
    delivered: int
    seconds: float
    records_per_second: float
    cpu_us_per_record: float
    peak_rss_mib: float
    send_rate: float | None = None
    lost: int = 0
    kernel_drops: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def messages(count: int, start: int = 0) -> list[bytes]:
    """Numbered messages, alternating RFC 5424 (Docker rfc5424micro) and RFC 3164 (Docker's
    default format, no hostname), ~200 bytes each."""
    out = []
    for n in range(start, start + count):
        if n % 2:
            out.append(
                b"<30>1 2026-11-29T21:00:00.123456Z node-1 nginx/web/5a6e1c8e6f3b 812 - - "
                b'10.0.0.7 - - [29/Nov/2026:21:00:00 +0000] "GET /api/v1/items?page=2 HTTP/1.1" '
                b"200 512 seq=%d" % n
            )
        else:
            out.append(
                b'<27>Nov 29 21:00:00 5a6e1c8e6f3b[812]: level=error msg="upstream timed out '
                b'while reading response header" upstream=10.0.3.4:8080 request_id=7f3a9c seq=%d'
                % n
            )
    return out


def bench_config(
    mode: str, output: str, workdir: Path, buffer: str
) -> tuple[str, dict[str, object]]:
    port = free_port(socket.SOCK_DGRAM if mode == "udp" else socket.SOCK_STREAM)
    sock_path = str(workdir / "agent.sock")
    where = f'path = "{sock_path}"' if mode.startswith("unix") else f'listen = "127.0.0.1:{port}"'
    extra_input = 'receive_buffer_bytes = "32MiB"' if mode in ("udp", "unix_dgram") else ""
    out = f'path = "{workdir / "out.ndjson"}"' if output == "file" else ""
    config = f"""
[agent]
data_dir = "{workdir / "data"}"
log_level = "warning"
[buffer]
type = "{buffer}"
sync = "none"
flush_interval = "200ms"
[[inputs]]
type = "syslog"
mode = "{mode}"
{where}
{extra_input}
tag = "bench"
[[outputs]]
type = "{output}"
match = "*"
{out}
"""
    return config, {"port": port, "path": sock_path, "out": workdir / "out.ndjson"}


def udp_kernel_drops(port: int) -> int | None:
    """The drops column of /proc/net/udp for our port (hex local address), if present."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}"):
            return int(parts[-1])
    return None


class Target:
    """Where the load generator sends."""

    def __init__(self, mode: str, port: int, path: str) -> None:
        self.mode, self.port, self.path = mode, port, path


def send_stream(target: Target, payload: list[bytes]) -> None:
    if target.mode == "tcp":
        sock = socket.create_connection(("127.0.0.1", target.port))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target.path)
    with sock:
        batch = 2000
        for i in range(0, len(payload), batch):
            sock.sendall(b"\n".join(payload[i : i + batch]) + b"\n")


def send_datagrams(target: Target, payload: list[bytes], rate: float) -> None:
    """Steady rate: sends in 1 ms slices so the kernel buffer sees a realistic flow."""
    if target.mode == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", target.port))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.connect(target.path)
    with sock:
        send = sock.send
        per_slice = max(1, int(rate / 1000))
        start = time.perf_counter()
        for i in range(0, len(payload), per_slice):
            for message in payload[i : i + per_slice]:
                while True:
                    try:
                        send(message)
                        break
                    except BlockingIOError:  # unix_dgram: the receiver's queue is full
                        time.sleep(0.0005)
            pause = start + (i + per_slice) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)


def run_one(mode: str, output: str, records: int, rate: float, buffer: str) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-{output}-"))
    payload = messages(records)
    config, where = bench_config(mode, output, workdir, buffer)
    target = Target(mode, int(where["port"]), str(where["path"]))  # type: ignore[call-overload]
    out_path = Path(str(where["out"]))
    agent = AgentProcess(workdir, config).start()
    output_name = f"{output}.0"
    try:
        cpu_before = agent.cpu_seconds()
        drops_before = udp_kernel_drops(target.port) if mode == "udp" else None
        started = time.perf_counter()
        if mode in ("tcp", "unix_stream"):
            send_stream(target, payload)
        else:
            send_datagrams(target, payload, rate)
        sent_at = time.perf_counter()
        delivered = 0.0
        last_change = time.perf_counter()
        while delivered < records:
            now_delivered = agent.metric("output_records_total", name=output_name)
            if now_delivered != delivered:
                delivered, last_change = now_delivered, time.perf_counter()
            elif time.perf_counter() - last_change > 5.0:
                break  # datagrams were lost; stop waiting
            time.sleep(0.02)
        finished = last_change if delivered < records else time.perf_counter()
        seconds = max(finished - started, 1e-9)
        cpu = agent.cpu_seconds() - cpu_before
        kernel = None
        if drops_before is not None:
            after = udp_kernel_drops(target.port)
            kernel = None if after is None else after - drops_before
        if output == "file":
            lines = out_path.read_bytes().count(b"\n") if out_path.exists() else 0
            if lines < delivered:
                raise RuntimeError(f"file has {lines} lines but {delivered} were acknowledged")
        return Result(
            mode=mode,
            output=output,
            records=records,
            delivered=int(delivered),
            seconds=round(seconds, 3),
            records_per_second=round(delivered / seconds),
            cpu_us_per_record=round(cpu / max(delivered, 1) * 1e6, 2),
            peak_rss_mib=round(agent.peak_rss_mib(), 1),
            send_rate=None if mode in ("tcp", "unix_stream") else rate,
            lost=records - int(delivered),
            kernel_drops=kernel,
            extra={"send_seconds": round(sent_at - started, 3)},
        )
    finally:
        agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[Result]) -> str:
    head = (
        f"| {'mode':<11} | {'output':<6} | {'records':>9} | {'records/s':>9} | "
        f"{'CPU µs/rec':>10} | {'peak RSS MiB':>12} | {'lost':>6} |"
    )
    rule = "|" + "|".join("-" * (len(cell)) for cell in head.split("|")[1:-1]) + "|"
    rows = [head, rule]
    for r in results:
        rate = f" (at {r.send_rate:,.0f}/s)" if r.send_rate else ""
        rows.append(
            f"| {r.mode:<11} | {r.output:<6} | {r.records:>9,} | {r.records_per_second:>9,} | "
            f"{r.cpu_us_per_record:>10.2f} | {r.peak_rss_mib:>12.1f} | {r.lost:>6,} |{rate}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--outputs", default=",".join(OUTPUTS))
    parser.add_argument("--udp-rate", type=float, default=100_000, help="datagrams per second")
    parser.add_argument("--buffer", choices=("disk", "memory"), default="disk")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "e2e.json"))
    args = parser.parse_args(argv)
    records = 2_000 if args.smoke else args.records
    rate = 20_000 if args.smoke else args.udp_rate
    results = []
    for mode in args.modes.split(","):
        for output in args.outputs.split(","):
            results.append(run_one(mode, output, records, rate, args.buffer))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "benchmark": "e2e",
                "python": platform.python_version(),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "smoke": args.smoke,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
