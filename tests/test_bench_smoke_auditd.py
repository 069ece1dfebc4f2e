"""bench/auditd runs as a tiny smoke run and writes its JSON (numbers are not checked: speed
belongs in the benchmark, not in tests)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_helpers import run_bench


def test_auditd_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "auditd.json"
    result, _ = run_bench("bench.auditd", out)
    assert [row["variant"] for row in result["results"]] == [
        "joiner",
        "filter",
        "filter+containers",
    ]
    assert all(row["events_per_second"] > 0 for row in result["results"])


def test_auditd_live_bench_smoke(tmp_path: Path) -> None:
    """``--live`` with tiny numbers: a real agent joins every event sent over TCP."""
    out = tmp_path / "live.json"
    result, _ = run_bench(
        "bench.auditd", out, "--live", "--rate", "100", "--seconds", "1", smoke=False
    )
    assert result["events_sent"] == 100
    assert result["events_out"] == result["events_joined"] == 100
    assert result["lost"] == 0
