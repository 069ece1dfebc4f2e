"""bench/instructions.py --smoke runs under cachegrind and writes its rows (the counts are not
checked against targets: that belongs in the benchmark). Skipped where valgrind is not installed
(scripts/install-system-deps.sh installs it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bench_helpers import run_bench


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "instructions.json"
    (row,) = run_bench("bench.instructions", out)[0]["rows"]
    assert row["shape"] == "node"
    assert 0 < row["bare"] < row["typical_chain"]
    assert 0 < row["share_of_instructions"] < 1


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_sd_floor_smoke(tmp_path: Path) -> None:
    out = tmp_path / "instructions.json"
    result, printed = run_bench("bench.instructions", out, "--sd-floor")
    floor = result["sd_floor"]
    assert 0 < floor["rfc5424"] < floor["rfc5424sd_at_floor"] <= floor["rfc5424sd"]
    step = floor["step"]
    # the floor is the split and the dicts; the parser's step adds its lookup and checks
    assert 0 < step["split"] < step["floor"] < step["parser"]
    assert abs(floor["ratio"] - floor["rfc5424sd"] / floor["rfc5424"]) < 0.001
    assert "rfc5424sd at floor" in printed
