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
    python -m bench.instructions --sd-floor       # issue 14's goal 1: what an SD line costs

``--sd-floor`` counts the parser alone (``SyslogParser.parse_batch_with_times``) on ``rfc5424``
and ``rfc5424sd`` lines (the same lines, the second with one three-parameter SD element), and
the SD step alone on that element's texts: the split at '"', the split plus the two dicts the
record holds and nothing else (no lookup, no check: right only for this one shape, so a floor
no parser can go under while it builds those dicts), and the step as the parser takes it.
The SD line's count with the parser's step swapped for the floor's says how close to the line
without SD any check-and-lookup scheme on top of ``str.split`` can get.

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


SD_STEPS = ("loop", "split", "floor", "parser")


def run_parse(shape: str, records: int, rounds: int) -> None:
    """The measured program of ``--sd-floor``'s parse rows: the parser alone."""
    from bench.parse import SHAPES, _batches
    from parsers.syslog import SyslogParser

    batches = _batches(SHAPES[shape](records), 256)
    parse = SyslogParser().parse_batch_with_times
    for _ in range(rounds):
        for batch in batches:
            parse(batch, 1_795_986_000.5)


def run_sd_step(step_name: str, records: int, rounds: int) -> None:
    """The measured program of ``--sd-floor``'s step rows, over ``rfc5424sd``'s SD texts."""
    from bench.parse import SHAPES
    from parsers.rfc5424 import RFC5424_FAST, SdCache, sd_shape

    texts = []
    for frame in SHAPES["rfc5424sd"](records):
        match = RFC5424_FAST.match(frame.decode())
        assert match is not None
        texts.append(match[9])
    ((sd_id, names),) = sd_shape('"'.join(texts[0].split('"')[0::2]))
    n0, n1, n2 = names  # the bench's element: three parameters
    cache = SdCache()
    builders, build = cache.builders, cache.build

    def loop(sd: str) -> object:
        return sd

    def split(sd: str) -> object:
        return sd.split('"')

    def floor(sd: str) -> object:
        p = sd.split('"')
        return {sd_id: {n0: p[1], n1: p[3], n2: p[5]}}

    def parser(sd: str) -> object:  # as parsers/syslog.py takes it
        if "\\" not in sd:
            p = sd.split('"')
            return builders.get(p[0], build)(p)
        return None

    step = {"loop": loop, "split": split, "floor": floor, "parser": parser}[step_name]
    assert floor(texts[-1]) == parser(texts[-1])
    for _ in range(rounds):
        for sd in texts:
            step(sd)


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
    args.add_argument(
        "--sd-floor",
        action="store_true",
        help="parse only, RFC 5424 lines with and without SD, and the SD step's floor",
    )
    args.add_argument("--run", nargs=4, help=argparse.SUPPRESS)  # the program cachegrind runs
    options = args.parse_args(argv)
    if options.run:
        shape, chain_name, records, rounds = options.run
        if chain_name == "parse":
            run_parse(shape, int(records), int(rounds))
        elif shape == "sd-step":
            run_sd_step(chain_name, int(records), int(rounds))
        else:
            run_rounds(shape, chain_name, int(records), int(rounds))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if options.sd_floor:
        return sd_floor(500 if options.smoke else options.records, options.json)
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


def sd_floor(records: int, json_path: Path) -> int:
    jobs = [("rfc5424", "parse"), ("rfc5424sd", "parse")] + [("sd-step", s) for s in SD_STEPS]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(
            zip(jobs, pool.map(lambda job: per_record(job[0], job[1], records), jobs), strict=True)
        )
    plain, with_sd = counts[("rfc5424", "parse")], counts[("rfc5424sd", "parse")]
    loop = counts[("sd-step", "loop")]
    step = {name: counts[("sd-step", name)] - loop for name in SD_STEPS[1:]}
    at_floor = with_sd - (step["parser"] - step["floor"])
    print("parse only (SyslogParser.parse_batch_with_times), instructions a line:")
    print(f"  rfc5424 (no SD)     {plain:>8,.0f}")
    print(f"  rfc5424sd           {with_sd:>8,.0f}  {with_sd / plain:.3f}x")
    print(f"  rfc5424sd at floor  {at_floor:>8,.0f}  {at_floor / plain:.3f}x")
    print("the SD step alone, instructions an SD text (a call's loop taken off):")
    print(f"  split at '\"'                       {step['split']:>8,.0f}")
    print(f"  split + the two dicts (the floor)   {step['floor']:>8,.0f}")
    print(f"  as the parser takes it              {step['parser']:>8,.0f}")
    result = {
        "benchmark": "instructions",
        "records": records,
        "sd_floor": {
            "rfc5424": round(plain),
            "rfc5424sd": round(with_sd),
            "rfc5424sd_at_floor": round(at_floor),
            "ratio": round(with_sd / plain, 3),
            "ratio_at_floor": round(at_floor / plain, 3),
            "step": {name: round(value) for name, value in step.items()},
        },
    }
    write_result(json_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
