"""bench/exec_cost runs as a tiny smoke run against the real audit subsystem, writes its JSON and
leaves the kernel's audit state as it found it (numbers are not checked beyond being there:
speed belongs in the benchmark, not in tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_helpers import run_bench
from tests.conftest import REPO, agent_env
from tests.peers.auditd import auditctl, status, unavailable

CONDITIONS = ["off", "on", "rules", "excluded"]


def test_exec_cost_bench_smoke(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    rules_before = auditctl("-l")
    state_before = status()
    out = tmp_path / "exec_cost.json"
    result, _ = run_bench("bench.exec_cost", out)

    assert auditctl("-l") == rules_before  # every rule it added was deleted
    state_after = status()
    assert state_after["pid"] == "0"  # its auditd stopped
    for key in ("enabled", "backlog_limit"):
        assert state_after[key] == state_before[key], key

    assert result["conditions"] == CONDITIONS
    rows = {(row["variant"], row["condition"]): row for row in result["results"]}
    assert sorted(rows) == sorted((v, c) for v in ("spawn", "shell") for c in CONDITIONS)
    for row in rows.values():
        for key in ("wall_us", "cpu_us"):
            assert row[key]["min"] > 0 and row[key]["median"] > 0, row
        # The shipped rules record every exec of the run; the never rule and no rules, none.
        assert row["events_logged"] == (result["execs"] if row["condition"] == "rules" else 0)
        assert row["lost"] == 0


def test_exec_cost_bench_refuses_without_root() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "bench.exec_cost", "--smoke", "--json", "/nonexistent/x.json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=agent_env(),
    )  # fmt: skip
    if done.returncode != 2 and (
        "Permission denied" in done.stderr or "No module named 'bench'" in done.stderr
    ):
        # A checkout under a directory only root may read (mktemp -d makes it 0700): nobody
        # cannot run the interpreter or import the bench from it.
        pytest.skip(f"the repository is not readable by nobody: {done.stderr.strip()[-300:]}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "bench.exec_cost cannot run: needs root" in done.stderr
