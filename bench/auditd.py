"""Audit events parsed and joined per second of CPU (one core), the goal being 50,000.

Each event is an exec as auditd 3 writes it with ``log_format = ENRICHED``: SYSCALL (with the
enriched names), EXECVE, CWD, two PATH and PROCTITLE, 6 lines and about 1.6 KB. Three variants,
in CPU seconds of the process (``time.process_time``), best of several rounds taken in turns:

- ``joiner``: ``parsers.auditd.parse_line`` and ``AuditJoiner.add`` per line, the records out,
- ``filter``: the ``auditd`` filter on records of one line each, in batches of 256,
- ``filter+containers``: the same, looking up each event's process (and parent) in /proc;
  the generated pids do not exist, so this is the cost of a miss: the process has exited.

    python -m bench.auditd              # 20,000 events, 5 rounds
    python -m bench.auditd --smoke      # 500 events, 1 round

``--live`` instead sends exec events at a steady ``--rate`` (events/s, 6 lines each, as
audisp-syslog forwards them: RFC 3164 over TCP) for ``--seconds`` to a real ``python -m agent``
with the syslog input, the ``auditd`` filter and the file output, and counts the joined events
that reach the file: events sent, events out, lost, the send rate reached and the agent's CPU.

    python -m bench.auditd --live --rate 5000 --seconds 20

Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.filters.auditd import AuditdConfig, AuditdFilter
from agent.filters.base import FilterContext
from bench.harness import AgentProcess, free_port, write_result
from parsers.auditd import parse_line
from parsers.auditd_join import AuditJoiner
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.doubles import NullMetrics

GS = "\x1d"


def event_lines(count: int) -> list[str]:
    lines: list[str] = []
    for n in range(count):
        serial = 100000 + n
        head = f"msg=audit(1796563400.{n % 1000:03d}:{serial}):"
        pid = 3000000 + n
        url = f"http://10.96.0.{n % 250}:8080/healthz"
        argv = ["/usr/bin/curl", "-fsS", "--max-time", "2", url]
        title = "\0".join(argv).encode().hex().upper()
        lines += [
            f"type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 a0=55d0e1c2 "
            f"a1=55d0e1c3 a2=55d0e1c4 a3=8 items=2 ppid={pid - 1} pid={pid} auid=4294967295 "
            "uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) "
            'ses=4294967295 comm="curl" exe="/usr/bin/curl" subj=unconfined key="exec"'
            f'{GS}ARCH=x86_64 SYSCALL=execve AUID="unset" UID="root" GID="root" EUID="root" '
            'SUID="root" FSUID="root" EGID="root" SGID="root" FSGID="root"',
            f"type=EXECVE {head} argc={len(argv)} "
            + " ".join(f'a{i}="{a}"' for i, a in enumerate(argv)),
            f'type=CWD {head} cwd="/"',
            f'type=PATH {head} item=0 name="/usr/bin/curl" inode=247026 dev=fe:00 '
            "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 "
            f'cap_fver=0 cap_frootid=0{GS}OUID="root" OGID="root"',
            f'type=PATH {head} item=1 name="/lib64/ld-linux-x86-64.so.2" inode=325835 '
            "dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 "
            f'cap_fe=0 cap_fver=0 cap_frootid=0{GS}OUID="root" OGID="root"',
            f"type=PROCTITLE {head} proctitle={title}",
        ]
    return lines


def run_joiner(lines: list[str]) -> int:
    joiner = AuditJoiner()
    out = 0
    for text in lines:
        line = parse_line(text)
        if line is not None:
            out += len(joiner.add(line, 0.0))
    return out + len(joiner.close())


def make_filter(containers: bool) -> Callable[[list[str]], int]:
    def run(lines: list[str]) -> int:
        f = AuditdFilter(
            AuditdConfig(containers=containers),
            FilterContext(
                name="auditd.0", logger=logging.getLogger("bench"), metrics=NullMetrics()
            ),
        )
        f.clock = lambda: 0.0
        out = 0
        for start in range(0, len(lines), 256):
            batch = [{"message": text} for text in lines[start : start + 256]]
            out += sum(len(records) for _, records in f.process("auditd", batch))
        return out + sum(len(records) for _, records in f.close())

    return run


def live(rate: int, seconds: float, settle: float = 30.0) -> dict[str, Any]:
    """Send ``rate`` events/s for ``seconds`` to a real agent; count the events at its file."""
    events = max(1, int(rate * seconds))
    lines = event_lines(events)
    frames = [f"<182>Dec  6 14:40:30 node-1 audisp-syslog: {line}".encode() for line in lines]
    with tempfile.TemporaryDirectory(prefix="bench-auditd-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        out = workdir / "out.ndjson"
        config = agent_toml(
            workdir,
            syslog_input("tcp", port, tag="audit"),
            agent={"log_level": "warning"},
            buffer={"sync": "none"},
            filters=[{"type": "auditd", "name": "join", "timeout": "2s"}],
            outputs=[file_output(out)],
        )
        agent = AgentProcess(workdir, config).start()
        try:
            cpu_before = agent.cpu_seconds()
            slice_seconds = 0.01
            per_slice = max(1, round(rate * slice_seconds)) * 6  # whole events per slice
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for index, start in enumerate(range(0, len(frames), per_slice)):
                    due = started + index * slice_seconds
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sock.sendall(b"\n".join(frames[start : start + per_slice]) + b"\n")
            send_seconds = time.monotonic() - started
            deadline = time.monotonic() + settle
            delivered = 0
            while time.monotonic() < deadline:
                delivered = _count_events(out)
                if delivered >= events:
                    break
                time.sleep(0.2)
            caught_up = time.monotonic() - started
            cpu = agent.cpu_seconds() - cpu_before
            joined = agent.metric("filter_auditd_events_total", name="join")
        finally:
            agent.stop(timeout=30)
            agent.kill()
    return {
        "rate": rate,
        "seconds": seconds,
        "events_sent": events,
        "events_joined": joined,
        "events_out": delivered,
        "lost": events - delivered,
        "send_rate": events / send_seconds if send_seconds else float("inf"),
        "seconds_until_all_out": caught_up,
        "agent_cpu_seconds": cpu,
    }


def _count_events(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().splitlines() if b'"auditd":' in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="500 events, 1 round")
    parser.add_argument("--json", type=Path, default=Path("bench/results/auditd.json"))
    parser.add_argument("--live", action="store_true", help="events over TCP to a real agent")
    parser.add_argument("--rate", type=int, default=5000, help="--live: events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="--live: how long to send")
    args = parser.parse_args(argv)
    if args.live:
        result = live(args.rate, args.seconds)
        print(f"{'events sent':<24}{result['events_sent']:>12,}")
        print(f"{'events out':<24}{result['events_out']:>12,}")
        print(f"{'lost':<24}{result['lost']:>12,}")
        print(f"{'send rate (events/s)':<24}{result['send_rate']:>12,.0f}")
        print(f"{'all out after (s)':<24}{result['seconds_until_all_out']:>12.1f}")
        print(f"{'agent CPU (s)':<24}{result['agent_cpu_seconds']:>12.1f}")
        write_result(args.json, {"benchmark": "auditd-live", **result})
        return 0 if result["lost"] == 0 else 1
    if args.smoke:
        args.events, args.rounds = 500, 1
    lines = event_lines(args.events)
    variants: dict[str, Callable[[list[str]], int]] = {
        "joiner": run_joiner,
        "filter": make_filter(False),
        "filter+containers": make_filter(True),
    }
    best: dict[str, float] = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():  # in turns: a busy spell hits them alike
            start = time.process_time()
            events = run(lines)
            elapsed = time.process_time() - start
            if events != args.events:
                raise SystemExit(f"{name}: {events} events out of {args.events}")
            best[name] = min(best[name], elapsed)
    results: list[dict[str, Any]] = []
    print(f"{'variant':<20}{'events/s':>12}{'lines/s':>12}{'µs/event':>10}")
    for name, seconds in best.items():
        rate = args.events / seconds if seconds else float("inf")
        results.append(
            {"variant": name, "events_per_second": rate, "lines_per_second": rate * 6,
             "microseconds_per_event": 1e6 / rate}
        )  # fmt: skip
        print(f"{name:<20}{rate:>12,.0f}{rate * 6:>12,.0f}{1e6 / rate:>10.1f}")
    write_result(
        args.json,
        {"benchmark": "auditd", "events": args.events, "rounds": args.rounds,
         "lines_per_event": 6, "results": results},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
