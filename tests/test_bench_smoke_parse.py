"""bench/parse.py --smoke runs and writes every row (the numbers are not checked: speed belongs
in the benchmark, not in tests)."""

from __future__ import annotations

from pathlib import Path

from tests.bench_helpers import run_bench


def test_parse_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "parse.json"
    result, printed = run_bench("bench.parse", out, timeout=300)
    assert result["smoke"] is True
    rows = {(row["shape"], row["mode"]): row for row in result["rows"]}
    shapes = ("rfc5424", "rfc5424sd", "rfc3164", "mix", "node", "sdmix")
    assert set(rows) == {
        (shape, mode)
        for shape in shapes
        for mode in ("parse", "parse+encode", "parse+encode+chain", "ingest", "ingest+chain")
    }
    for row in rows.values():
        assert row["records"] == 3000
        assert row["records_per_s"] > 0 and row["us_per_record"] > 0
        # shaped like Docker's lines, ~200 bytes; rfc5424sd: the same lines plus ~100 bytes of SD
        assert 150 < row["avg_bytes"] < 320
    assert "records/s" in printed
    assert set(result["chain_cost"]) == set(shapes)
    for bases in result["chain_cost"].values():
        assert set(bases) == {"parse+encode", "ingest"}
        for share in bases.values():
            assert -1 < share["throughput_cost"] < 1
            assert -1 < share["throughput_cost_median"] < 1
            low, high = share["throughput_cost_quartiles"]
            assert low <= share["throughput_cost_median"] <= high
    assert [f["type"] for f in result["chain"]["filters"]] == ["grep", "modify", "audit"]
