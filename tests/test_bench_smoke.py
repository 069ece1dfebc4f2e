"""The other benchmarks run as tiny smoke runs and write their JSON (numbers are not checked:
speed belongs in the benchmarks, not in tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bench_helpers import run_bench


def _run(module: str, out: Path, *args: str) -> dict[str, Any]:
    return run_bench(module, out, *args)[0]


def test_e2e_smoke_every_socket_kind_and_output(tmp_path: Path) -> None:
    result = _run(
        "bench.e2e",
        tmp_path / "e2e.json",
        "--modes",
        "tcp,unix_stream,udp,unix_dgram",
        "--outputs",
        "null,file",
    )
    rows = result["results"]
    assert isinstance(rows, list)
    assert {(r["mode"], r["output"]) for r in rows} == {
        (m, o) for m in ("tcp", "unix_stream", "udp", "unix_dgram") for o in ("null", "file")
    }
    for row in rows:
        assert row["records"] == 2000 and row["records_per_second"] > 0
        # CPU time comes in 10 ms clock ticks: 2,000 records may take less than one.
        assert row["cpu_us_per_record"] >= 0 and row["peak_rss_mib"] > 0
    stream = [r for r in rows if r["mode"] in ("tcp", "unix_stream")]
    assert all(r["lost"] == 0 for r in stream)


def test_e2e_smoke_with_the_typical_chain_on_node_lines(tmp_path: Path) -> None:
    """The chain drops kubelet's /healthz lines and copies the audit-marked ones under
    audit.<rule>: the run waits for exactly what the same filters give in-process."""
    result = _run(
        "bench.e2e",
        tmp_path / "chain.json",
        "--modes",
        "tcp",
        "--outputs",
        "file",
        "--chain",
        "none,typical",
        "--payload",
        "node",
    )
    rows = result["results"]
    assert isinstance(rows, list)
    by_chain = {r["chain"]: r for r in rows}
    assert set(by_chain) == {"none", "typical"}
    bare, chained = by_chain["none"], by_chain["typical"]
    assert bare["payload"] == chained["payload"] == "node"
    assert bare["lost"] == chained["lost"] == 0
    assert bare["delivered"] == 2000
    # 10% /healthz lines dropped, 7% auth lines copied: fewer out than in, but not by much.
    assert 1700 < chained["delivered"] < 2000


@pytest.mark.s3
def test_e2e_smoke_into_s3_reports_compression(tmp_path: Path) -> None:
    rows = _run("bench.e2e", tmp_path / "s3.json", "--modes", "tcp", "--outputs", "s3")["results"]
    assert isinstance(rows, list) and rows[0]["lost"] == 0
    assert rows[0]["extra"]["compression_ratio"] > 1


def test_e2e_backlog_smoke_reports_rss_with_queue(tmp_path: Path) -> None:
    rows = _run("bench.e2e", tmp_path / "backlog.json", "--scenario", "backlog")["results"]
    assert isinstance(rows, list)
    assert rows[0]["extra"]["queued_mib"] > 0 and rows[0]["peak_rss_mib"] > 0


@pytest.mark.parametrize("module", ["bench.buffer", "bench.filters", "bench.s3"])
def test_component_benchmark_smoke(tmp_path: Path, module: str) -> None:
    result = _run(module, tmp_path / "out.json")
    assert result
