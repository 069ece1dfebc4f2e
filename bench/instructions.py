"""Instructions per record of the agent's ingest path, bare and with the typical filter chain,
counted by valgrind's cachegrind: the same on a quiet and on a busy machine.

Timings on a shared machine vary by 20-30% from run to run; an instruction count does not, so
it tells whether a change made the hot path cheaper before any timing can. It is not a
throughput: memory stalls and system calls are not in it (the chain's wall-clock share is a
few points higher than its share of instructions). Each variant runs under cachegrind twice,
with one and with two rounds over the same batches; the difference is one round, without the
start-up and imports. ``PYTHONHASHSEED=0`` keeps dict layouts the same from run to run.

    python -m bench.instructions                  # node, mix and sdmix, 10,000 records: ~3 minutes
    python -m bench.instructions --smoke          # 500 records, node only

Prints a table, writes JSON. Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import write_result

CHAINS = ("none", "typical")
_REFS = re.compile(rb"I\s+refs:\s+([\d,]+)")


def run_rounds(shape: str, chain_name: str, records: int, rounds: int) -> None:
    """The measured program: IngestSink.submit over the shape's batches, ``rounds`` times."""
    from agent.buffer.base import BufferConfig
    from agent.buffer.disk import DiskBuffer
    from agent.ingest import IngestSink, Store
    from agent.inputs.syslog import SyslogInputConfig
    from agent.metrics import Registry
    from agent.router import Router, TagMatcher
    from bench.filters import CHAINS as FILTER_CHAINS
    from bench.filters import build
    from bench.parse import SHAPES, TYPICAL_CHAIN, _batches

    batches = _batches(SHAPES[shape](records), 256)
    registry = Registry()
    typical = build(FILTER_CHAINS[TYPICAL_CHAIN], registry)  # built either way: same start-up
    chain = typical if chain_name == "typical" else None
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as data_dir:
        log = logging.getLogger("bench.instructions")
        buffer = DiskBuffer(BufferConfig(), data_dir, registry.component("buffer", "disk"), log)
        router = Router([("out", TagMatcher("*"))])
        store = Store(buffer, router, registry.component("router", "router"))
        config = SyslogInputConfig(mode="tcp", listen="127.0.0.1:5514", tag="syslog.node")
        sink = IngestSink(config, buffer, chain, store, registry.component("in", "syslog"))

        async def go() -> None:
            await buffer.open(router.routes)
            for _ in range(rounds):
                for batch in batches:
                    if not sink.submit(batch):
                        raise RuntimeError("the buffer refused a batch")
            await buffer.close()

        asyncio.run(go())


def count(shape: str, chain_name: str, records: int, rounds: int) -> int:
    """Instructions cachegrind counted for the whole program."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--run",
        shape,
        chain_name,
        str(records),
        str(rounds),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"cachegrind failed ({done.returncode}): {done.stderr[-2000:]!r}")
    return int(found.group(1).replace(b",", b""))


def per_record(shape: str, chain_name: str, records: int) -> float:
    one, two = count(shape, chain_name, records, 1), count(shape, chain_name, records, 2)
    return (two - one) / records


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--records", type=int, default=10_000)
    args.add_argument(
        "--shapes", default="node,mix,sdmix", help="bench/parse.py's shapes, comma-separated"
    )
    args.add_argument("--smoke", action="store_true", help="500 records, node only")
    default_json = Path(__file__).resolve().parent / "results" / "instructions.json"
    args.add_argument("--json", type=Path, default=default_json)
    args.add_argument("--run", nargs=4, help=argparse.SUPPRESS)  # the program cachegrind runs
    options = args.parse_args(argv)
    if options.run:
        shape, chain_name, records, rounds = options.run
        run_rounds(shape, chain_name, int(records), int(rounds))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    shapes = [s for s in options.shapes.split(",") if s]
    if options.smoke:
        options.records, shapes = 500, ["node"]
    jobs = [(shape, chain) for shape in shapes for chain in CHAINS]

    def measure(job: tuple[str, str]) -> float:
        return per_record(job[0], job[1], options.records)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(measure, jobs), strict=True))
    rows: list[dict[str, Any]] = []
    print(f"{'shape':<6} {'bare':>10} {'chained':>10} {'chain':>8}  (instructions a record)")
    for shape in shapes:
        bare, chained = counts[(shape, "none")], counts[(shape, "typical")]
        share = 1 - bare / chained
        rows.append(
            {
                "shape": shape,
                "bare": round(bare),
                "typical_chain": round(chained),
                "chain_instructions": round(chained - bare),
                "share_of_instructions": round(share, 3),
            }
        )
        print(f"{shape:<6} {bare:>10,.0f} {chained:>10,.0f} {share:>8.1%}")
    result = {"benchmark": "instructions", "records": options.records, "rows": rows}
    write_result(options.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
