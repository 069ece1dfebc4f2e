"""bench/instructions.py --smoke runs under cachegrind and writes its rows (the counts are not
checked: that belongs in the benchmark). Skipped where valgrind is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "instructions.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["shape"] == "node"
    assert 0 < row["bare"] < row["typical_chain"]
    assert 0 < row["share_of_instructions"] < 1
