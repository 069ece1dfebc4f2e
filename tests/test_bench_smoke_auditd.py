"""bench/auditd runs as a tiny smoke run and writes its JSON (numbers are not checked: speed
belongs in the benchmark, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, agent_env


def test_auditd_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "auditd.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.auditd", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=agent_env(),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [row["variant"] for row in result["results"]] == [
        "joiner",
        "filter",
        "filter+containers",
    ]
    assert all(row["events_per_second"] > 0 for row in result["results"])


def test_auditd_live_bench_smoke(tmp_path: Path) -> None:
    """``--live`` with tiny numbers: a real agent joins every event sent over TCP."""
    out = tmp_path / "live.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.auditd", "--live", "--rate", "100", "--seconds", "1",
         "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=agent_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["events_sent"] == 100
    assert result["events_out"] == result["events_joined"] == 100
    assert result["lost"] == 0
