"""bench/instructions.py --smoke runs under cachegrind and writes its rows (the counts are not
checked: that belongs in the benchmark). Skipped where valgrind is not installed."""

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
