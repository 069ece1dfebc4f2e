"""bench/tail.py --smoke runs and writes every row (the numbers are not checked: speed belongs
in the benchmark, not in tests)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_helpers import run_bench


def test_tail_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "tail.json"
    result, printed = run_bench("bench.tail", out, timeout=300)
    assert result["smoke"] is True
    rows = {row["path"]: row for row in result["rows"]}
    assert set(rows) == {"tail-cri (4 files)", "syslog-tcp"}
    for row in rows.values():
        assert row["records"] == 3000
        # CPU time comes in 10 ms clock ticks: a smoke run's records may take less than one.
        assert row["records_per_second"] > 0 and row["cpu_us_per_record"] >= 0
    idle = result["idle"]
    assert idle["files"] == 50
    assert {"0_files_cpu_percent", "50_files_cpu_percent"} <= set(idle)
    assert "records/s" in printed and "idle:" in printed
