"""Container log files to the file output, against the syslog path in the same run.

* ``tail-cri``: N CRI lines (containerd's format, the same ~200-byte messages bench/e2e.py sends)
  spread over ``--files`` container logs under a kubelet-style /var/log/pods tree, reached
  through /var/log/containers symlinks, read by ``python -m agent`` (disk buffer, file output).
  The files are written beforehand and moved into the watched directory at t0; the clock stops
  when the output acknowledged every record.
* ``syslog-tcp``: the same messages over TCP to the syslog input (bench/e2e.py's run).
* ``idle``: the agent's CPU while it follows ``--idle-files`` files (1,000) that do not change,
  against the same agent with no files: polling must cost only a few percent of a core.

Reports records/s, the agent's CPU µs per record and peak RSS. Prints a table, writes JSON.

    python -m bench.tail                 # the full run
    python -m bench.tail --smoke         # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e import messages, run_one
from bench.harness import AgentProcess, write_result
from tests.agent_config import agent_toml, tail_input

CID = "5a6e1c8e6f3b" + "0" * 52


@dataclass
class Row:
    path: str
    records: int
    seconds: float
    records_per_second: int
    cpu_us_per_record: float
    peak_rss_mib: float


def cri_lines(count: int, start: int = 0) -> list[bytes]:
    """The e2e messages as containerd writes a container's output (a line each, both
    streams, Go's RFC3339Nano times)."""
    out = []
    for n, message in enumerate(messages(count, start), start):
        stream = b"stderr" if n % 7 == 0 else b"stdout"
        stamp = b"2026-11-29T21:00:%02d.%09dZ" % (n // 50_000 % 60, (n * 7919) % 1_000_000_000)
        out.append(stamp.rstrip(b"0").rstrip(b".") + b" " + stream + b" F " + message + b"\n")
    return out


def tail_config(workdir: Path, refresh: str = "100ms") -> str:
    return agent_toml(
        workdir,
        tail_input(
            [workdir / "containers" / "*.log"], read_from_head=True, refresh_interval=refresh
        ),
        agent={"log_level": "warning"},
        buffer={"type": "disk", "sync": "none"},
    )


def make_pods(root: Path, files: int, lines: list[bytes]) -> list[tuple[Path, Path]]:
    """Container logs under ``root/pods`` and, for each, (its symlink's place, its target)."""
    links = []
    per_file = -(-len(lines) // files) if lines else 0
    for i in range(files):
        directory = root / "pods" / f"bench_app-{i}_uid-{i}" / "app"
        directory.mkdir(parents=True)
        target = directory / "0.log"
        target.write_bytes(b"".join(lines[i * per_file : (i + 1) * per_file]))
        links.append((root / "containers" / f"app-{i}_bench_app-{CID[:-4]}{i:04d}.log", target))
    return links


def run_tail(records: int, files: int, poll: float = 0.1) -> Row:
    workdir = Path(tempfile.mkdtemp(prefix="bench-tail-"))
    try:
        (workdir / "containers").mkdir()
        staged = workdir / "staged"
        staged.mkdir()
        links = make_pods(workdir, files, cri_lines(records))
        for link, target in links:
            (staged / link.name).symlink_to(target)
        agent = AgentProcess(workdir, tail_config(workdir)).start()
        try:
            cpu_before = agent.cpu_seconds()
            started = time.perf_counter()
            for link, _ in links:  # all files appear at once
                os.rename(staged / link.name, link)
            delivered = 0.0
            while delivered < records:
                time.sleep(poll)
                delivered = agent.metric("output_records_total")
            seconds = time.perf_counter() - started
            cpu = agent.cpu_seconds() - cpu_before
            return Row(
                path=f"tail-cri ({files} files)",
                records=records,
                seconds=round(seconds, 3),
                records_per_second=round(records / seconds),
                cpu_us_per_record=round(cpu / records * 1e6, 2),
                peak_rss_mib=round(agent.peak_rss_mib(), 1),
            )
        finally:
            agent.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_syslog(records: int) -> Row:
    result = run_one("tcp", "file", records, 0.0, "disk")
    return Row(
        path="syslog-tcp",
        records=result.records,
        seconds=result.seconds,
        records_per_second=int(result.records_per_second),
        cpu_us_per_record=result.cpu_us_per_record,
        peak_rss_mib=result.peak_rss_mib,
    )


def idle_cpu(files: int, seconds: float) -> dict[str, float]:
    """Percent of one core the agent uses while ``files`` followed files do not change, and
    with none (what the rest of the agent costs)."""
    out: dict[str, float] = {}
    for count in (0, files):
        workdir = Path(tempfile.mkdtemp(prefix="bench-tail-idle-"))
        try:
            (workdir / "containers").mkdir()
            for link, target in make_pods(workdir, count, cri_lines(count)) if count else []:
                link.symlink_to(target)
            agent = AgentProcess(workdir, tail_config(workdir, "1s"))
            agent.start()
            try:
                deadline = time.monotonic() + 60
                while agent.metric("output_records_total") < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the idle files were not read")
                    time.sleep(0.2)
                time.sleep(1.0)  # settle: chunks sealed and delivered
                before = agent.cpu_seconds()
                time.sleep(seconds)
                used = agent.cpu_seconds() - before
                out[f"{count}_files_cpu_percent"] = round(used / seconds * 100, 2)
            finally:
                agent.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def table(rows: list[Row], idle: dict[str, float], idle_files: int) -> str:
    lines = [
        f"{'path':<24} {'records':>9} {'records/s':>10} {'CPU us/record':>14} {'peak RSS MiB':>13}"
    ]
    for row in rows:
        lines.append(
            f"{row.path:<24} {row.records:>9} {row.records_per_second:>10} "
            f"{row.cpu_us_per_record:>14} {row.peak_rss_mib:>13}"
        )
    lines.append("")
    lines.append(
        f"idle: {idle.get(f'{idle_files}_files_cpu_percent')}% of a core following "
        f"{idle_files} unchanged files; {idle.get('0_files_cpu_percent')}% with none"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--idle-files", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1, help="paired tail/syslog runs")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--json", type=Path, default=Path("bench-results/tail.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.records, args.idle_files, args.idle_seconds, args.rounds = 3000, 50, 1.0, 1
    rows: list[Row] = []
    for _ in range(args.rounds):  # paired: the two paths share the machine's state
        rows.append(run_tail(args.records, args.files))
        rows.append(run_syslog(args.records))
    idle = idle_cpu(args.idle_files, args.idle_seconds)
    print(table(rows, idle, args.idle_files))
    write_result(
        args.json,
        {
            "smoke": args.smoke,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "rows": [asdict(row) for row in rows],
            "idle": {"files": args.idle_files, "seconds": args.idle_seconds, **idle},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
