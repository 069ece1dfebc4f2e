"""What the kernel audit rules of ``manifests/node/audit-agent.rules`` cost an exec.

Runs N execs of ``/bin/true`` in two variants and reports wall and CPU microseconds per exec:

- ``spawn``: ``os.posix_spawn`` and ``waitpid`` in a loop in this process,
- ``shell``: ``sh -c 'i=0; while [ $i -lt N ]; do /bin/true; i=$((i+1)); done'`` (fork and exec
  per iteration, as a busy node's scripts and probes do),

under four conditions, taken in turns (the first condition rotates each round) so that a busy
spell of the machine hits them alike:

- ``off``: auditing disabled (``auditctl -e 0``), no rules,
- ``on``: auditing enabled, auditd running, no rules (a node that already runs auditd),
- ``rules``: the shipped rule file loaded (its ``-a``/``-w`` lines through ``auditctl``, each
  with a key unique to this run), auditd writing every event to its log,
- ``excluded``: the same rules plus a ``never`` rule for ``/bin/true``'s executable in front:
  the cost of an exec the rules leave out (the node helpers the rule file excludes).

auditd is the real one, in the foreground (``auditd -n``) with the package's defaults for
flushing (``INCREMENTAL_ASYNC``, ``freq = 50``, ``priority_boost = 4``) and ``log_format =
ENRICHED``, writing to a log under a temporary directory; the backlog limit is set to 8192 for
the run, as the distribution's ``audit.rules`` does before ours. CPU per exec is the execing
processes' (``getrusage``, self and children: the kernel builds the records at the exec's
syscall exit, in the process) plus the daemons' (``kauditd`` sending, ``auditd`` writing, from
/proc), the daemons' share scaled to the events of this run among all events logged meanwhile
(other processes of the machine exec too while the rules are loaded).

A fifth condition, rules loaded with no auditd to take the events, is left out: the kernel then
prints every record to the console log and queues it, and a full backlog makes every exec of the
machine wait (``backlog_wait_time``); not a state to put a shared machine in, nor a node.

    python -m bench.exec_cost               # 20,000 execs a measurement, 5 rounds
    python -m bench.exec_cost --smoke       # 200 execs, 1 round

Needs root, ``auditd`` and ``auditctl``, and no other auditd registered (exit 2 otherwise).
Whatever happens (an error, Ctrl-C, SIGTERM), it deletes every rule it added, stops its auditd
and puts ``enabled`` and the backlog limit back; it checks that ``auditctl -l`` reads as before.

Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import REPO, write_result
from tests.peers.auditd import AuditDaemon, auditctl, status, unavailable

RULES = REPO / "manifests" / "node" / "audit-agent.rules"
TRUE = os.path.realpath("/bin/true")
CONDITIONS = ("off", "on", "rules", "excluded")
VARIANTS = ("spawn", "shell")
SHELL_LOOP = "i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"
BACKLOG_LIMIT = "8192"


def rule_lines(path: Path, token: str) -> list[list[str]]:
    """The ``-a``/``-w`` lines of a rule file as auditctl arguments, each key made unique to
    this run (a rule without a key gets one) so that only our rules are ever deleted."""
    rules: list[list[str]] = []
    for line in path.read_text().splitlines():
        args = shlex.split(line, comments=True)
        if not args or args[0] not in ("-a", "-A", "-w"):
            continue
        keyed = [at for at, arg in enumerate(args) if arg.startswith("key=")]
        if "-k" in args:
            at = args.index("-k") + 1
            args[at] = f"{args[at]}-{token}"
        elif keyed:  # -F key=...
            args[keyed[0]] = f"{args[keyed[0]]}-{token}"
        else:
            args += ["-k", f"exec-cost-{token}"]
        rules.append(args)
    return rules


def deletion(args: list[str]) -> list[str]:
    return ["-W" if args[0] == "-w" else "-d", *args[1:]]


class KernelState:
    """The audit rules, ``enabled`` and backlog limit as found; ``restore`` puts them back."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.rules_before = auditctl("-l")
        found = status()
        self.enabled = found.get("enabled", "0")
        self.backlog_limit = found.get("backlog_limit", "64")
        self.added: list[list[str]] = []

    def add(self, args: list[str]) -> None:
        self.added.append(args)  # first: a rule half-added is still looked for when deleting
        auditctl(*args)

    def clear(self) -> list[str]:
        """Deletes the rules added (and any listed rule with this run's token); the errors."""
        errors: list[str] = []
        for args in reversed(self.added):
            try:
                auditctl(*deletion(args))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        self.added.clear()
        for line in auditctl("-l").splitlines():
            if self.token in line:  # added but its deletion failed: delete it as listed
                try:
                    auditctl(*deletion(shlex.split(line)))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    errors.append(str(exc))
        return errors

    def restore(self) -> list[str]:
        errors = self.clear()
        for args in (("-b", self.backlog_limit), ("-e", self.enabled)):
            try:
                auditctl(*args)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        after = auditctl("-l")
        if after != self.rules_before:
            errors.append(f"audit rules differ from before: {after!r} != {self.rules_before!r}")
        return errors


class LogCounter:
    """Counts the SYSCALL records auditd appends to its log: all, and those of ``/bin/true``
    started by one parent."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        self.rest = b""
        self.all = 0
        self.ours = 0
        self.parent = 0

    def start(self, parent: int) -> None:
        self.read()
        self.all = self.ours = 0
        self.parent = parent

    def read(self) -> None:
        if not self.log.exists():
            return
        with self.log.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        mark = f" ppid={self.parent} ".encode()
        exe = f'exe="{TRUE}"'.encode()
        for line in lines:
            if line.startswith(b"type=SYSCALL "):
                self.all += 1
                if mark in line and exe in line:
                    self.ours += 1


def kauditd_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "kauditd":
                    return int(entry.name)
            except OSError:
                continue
    return None


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def spawn(n: int) -> int:
    env = {"PATH": "/usr/bin:/bin"}
    for _ in range(n):
        pid = os.posix_spawn(TRUE, [TRUE], env)
        _, code = os.waitpid(pid, 0)
        if code != 0:
            raise RuntimeError(f"{TRUE} exited with status {code}")
    return os.getpid()


def shell(n: int) -> int:
    loop = subprocess.Popen(["sh", "-c", SHELL_LOOP.format(n=n)])
    if loop.wait() != 0:
        raise RuntimeError(f"the shell loop exited with {loop.returncode}")
    return loop.pid


class Bench:
    def __init__(self, state: KernelState, daemon: AuditDaemon, token: str) -> None:
        self.state = state
        self.daemon = daemon
        self.kauditd = kauditd_pid()
        self.rules = rule_lines(RULES, token)
        self.exclusion = ["-A", "never,exit", "-F", "arch=b64", "-S", "execve"]
        self.exclusion += ["-F", f"exe={TRUE}", "-k", f"exec-cost-{token}"]

    def enter(self, condition: str) -> None:
        errors = self.state.clear()
        if errors:
            raise RuntimeError("; ".join(errors))
        auditctl("-e", "0" if condition == "off" else "1")
        if condition in ("rules", "excluded"):
            for args in self.rules:
                self.state.add(args)
        if condition == "excluded":
            self.state.add(self.exclusion)

    def drain(self, counter: LogCounter, expected: int, timeout: float = 60.0) -> None:
        """Until the kernel's backlog is empty twice in a row and the log holds the events
        expected of this run (or ``timeout``: they were lost, which the result reports)."""
        deadline = time.monotonic() + timeout
        empty = 0
        while time.monotonic() < deadline:
            counter.read()
            empty = empty + 1 if status().get("backlog") == "0" else 0
            if empty >= 2 and counter.ours >= expected:
                return
            time.sleep(0.05)

    def measure(self, condition: str, variant: str, n: int) -> dict[str, Any]:
        counter = LogCounter(self.daemon.log)
        self.drain(counter, 0)
        lost_before = int(status().get("lost", "0"))
        load = os.getloadavg()[0]
        auditd_before, kauditd_before = cpu_seconds(self.daemon.pid), cpu_seconds(self.kauditd)
        counter.start(os.getpid())
        cpu_before = own_cpu_seconds()
        started = time.perf_counter()
        parent = spawn(n) if variant == "spawn" else shell(n)
        wall = time.perf_counter() - started
        cpu = own_cpu_seconds() - cpu_before
        counter.parent = parent  # the log is read after the run: the parent is known by then
        self.drain(counter, n if condition == "rules" else 0)
        auditd = cpu_seconds(self.daemon.pid) - auditd_before
        kauditd = cpu_seconds(self.kauditd) - kauditd_before
        share = counter.ours / counter.all / n * 1e6 if counter.all else 0.0
        return {
            "condition": condition,
            "variant": variant,
            "wall_us": wall / n * 1e6,
            "process_cpu_us": cpu / n * 1e6,
            "daemons_cpu_us": (auditd + kauditd) * share,
            "auditd_cpu_us": auditd * share,
            "kauditd_cpu_us": kauditd * share,
            "events_logged": counter.ours,
            "events_logged_all": counter.all,
            "lost": int(status().get("lost", "0")) - lost_before,
            "load1": load,
        }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for variant in VARIANTS:
        base: dict[str, float] = {}
        for condition in CONDITIONS:
            mine = [r for r in runs if r["condition"] == condition and r["variant"] == variant]
            row: dict[str, Any] = {"condition": condition, "variant": variant}
            for key in ("wall_us", "process_cpu_us", "daemons_cpu_us", "auditd_cpu_us",
                        "kauditd_cpu_us"):  # fmt: skip
                values = [r[key] for r in mine]
                row[key] = {"min": min(values), "median": statistics.median(values)}
            totals = [r["process_cpu_us"] + r["daemons_cpu_us"] for r in mine]
            row["cpu_us"] = {"min": min(totals), "median": statistics.median(totals)}
            row["events_logged"] = sum(r["events_logged"] for r in mine)
            row["lost"] = sum(r["lost"] for r in mine)
            for key in ("wall_us", "cpu_us"):
                for stat in ("min", "median"):
                    value = row[key][stat]
                    if condition == "off":
                        base[f"{key}.{stat}"] = value
                    reference = base[f"{key}.{stat}"]
                    row[key][f"{stat}_over_off_us"] = value - reference
                    row[key][f"{stat}_over_off_percent"] = (value / reference - 1) * 100
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Per exec: min and median over the rounds, and the median's change from ``off``."""
    print(
        f"{'variant':<8}{'condition':<10}{'wall µs min/median':>20}{'vs off':>8}"
        f"{'CPU µs min/median':>20}{'vs off':>8}{'daemons':>9}{'events':>10}{'lost':>6}"
    )
    for row in rows:
        wall, cpu = row["wall_us"], row["cpu_us"]
        print(
            f"{row['variant']:<8}{row['condition']:<10}"
            f"{wall['min']:>12.0f} /{wall['median']:>6.0f}{wall['median_over_off_percent']:>+7.0f}%"
            f"{cpu['min']:>12.0f} /{cpu['median']:>6.0f}{cpu['median_over_off_percent']:>+7.0f}%"
            f"{row['daemons_cpu_us']['median']:>9.1f}{row['events_logged']:>10,}{row['lost']:>6}"
        )


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(execs: int, rounds: int) -> list[dict[str, Any]]:
    token = secrets.token_hex(4)
    state = KernelState(token)
    runs: list[dict[str, Any]] = []
    previous = signal.signal(signal.SIGTERM, _interrupted)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-exec-cost-") as tmp:
        daemon = AuditDaemon(
            Path(tmp),
            flush="INCREMENTAL_ASYNC",
            freq=50,
            priority_boost=4,
            max_log_file_action="IGNORE",
        )
        try:
            auditctl("-b", BACKLOG_LIMIT)
            daemon.start()
            bench = Bench(state, daemon, token)
            for turn in range(rounds):
                order = CONDITIONS[turn % len(CONDITIONS) :] + CONDITIONS[: turn % len(CONDITIONS)]
                for condition in order:
                    bench.enter(condition)
                    for variant in VARIANTS:
                        result = bench.measure(condition, variant, execs)
                        runs.append({"round": turn, **result})
                        print(
                            f"round {turn + 1}/{rounds} {condition:<9}{variant:<6}"
                            f"{result['wall_us']:>8.0f} µs wall{result['process_cpu_us']:>8.0f}"
                            f" µs CPU{result['daemons_cpu_us']:>7.1f} µs daemons"
                            f"  load {result['load1']:.1f}",
                            flush=True,
                        )
        finally:
            # No second Ctrl-C halfway through putting the kernel back.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                errors += state.clear()
                daemon.stop()
                errors += state.restore()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, previous)
            if errors:
                print("could not restore the audit state: " + "; ".join(errors), file=sys.stderr)
    if errors:
        raise SystemExit(1)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=20000, help="execs a measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="200 execs, 1 round")
    parser.add_argument("--json", type=Path, default=Path("bench/results/exec_cost.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.execs, args.rounds = 200, 1
    reason = unavailable()
    if reason is None and status().get("enabled") == "2":
        reason = "the audit configuration is locked (enabled 2) until reboot"
    if reason:
        print(f"bench.exec_cost cannot run: {reason}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    runs = run(args.execs, args.rounds)
    rows = summarize(runs)
    print_table(rows)
    lost = sum(row["lost"] for row in rows)
    write_result(
        args.json,
        {"benchmark": "exec_cost", "execs": args.execs, "rounds": args.rounds,
         "cpus": os.cpu_count(), "kernel": platform.release(),
         "load_before": load_before, "load_after": os.getloadavg(),
         "rules": str(RULES.relative_to(REPO)), "conditions": list(CONDITIONS),
         "variants": list(VARIANTS), "results": rows, "runs": runs},
    )  # fmt: skip
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
