"""``python -m agent dead-letters list|replay --config agent.toml [--output NAME]``: look at the
dead-letter directory, and send its records again once the cause is fixed (the bucket exists,
the mapping was corrected, the credentials were rotated).

Replay reads ``data_dir/dead-letter/*.json`` (the reason files; each names its output and sits
beside its ``.ndjson`` data), builds each named output from the config, sends the records as
one chunk per file (grouped into writes as delivery groups them) and deletes the file pair once
the destination confirmed it. Records the destination refuses again are dead-lettered again (a
new file with the new reason). It does not touch the buffer, so it runs beside a running agent;
an output's own state (the S3 journal) lives in ``data_dir/dead-letter-replay/`` for the same
reason. Chunk ids are derived from the dead letter's file name, so a replay that is interrupted
and run again overwrites (S3 keys, Elasticsearch ``_id`` with ``id_mode = "hash"``) instead of
duplicating.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.buffer.deadletter import DeadLetterDir, dead_letter_path, ensure_private_dir
from agent.config import ConfigError, load_config
from agent.delivery import Grouper, write_group
from common.redact import redact_text
from outputs.base import Chunk, Output, OutputContext

log = logging.getLogger("agent.replay")

ATTEMPTS = 5
"""Tries per dead letter for a retryable error (with backoff) before replay gives up on it."""


@dataclass
class Letter:
    """One dead letter: a reason file and its data file."""

    reason_path: str
    data_path: str
    output: str
    chunk: str
    tag: str
    reason: str
    records: int
    times: list[float] | None

    @property
    def base(self) -> str:
        return os.path.basename(self.reason_path)[: -len(".json")]


def scan(directory: str) -> tuple[list[Letter], list[str]]:
    """Dead letters in ``directory``, oldest chunk first, and the problems found (a reason
    file without data, an unreadable reason file)."""
    letters: list[Letter] = []
    problems: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return [], []
    for name in names:
        if not name.endswith(".json"):
            continue
        reason_path = os.path.join(directory, name)
        data_path = reason_path[: -len(".json")] + ".ndjson"
        try:
            with open(reason_path, encoding="utf-8") as handle:
                doc = json.load(handle)
            letter = Letter(
                reason_path=reason_path,
                data_path=data_path,
                output=str(doc["output"]),
                chunk=str(doc["chunk"]),
                tag=str(doc["tag"]),
                reason=str(doc.get("reason", "")),
                records=int(doc.get("records", 0)),
                times=[float(t) for t in doc["times"]] if "times" in doc else None,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{reason_path}: unreadable reason file ({exc})")
            continue
        if not os.path.exists(data_path):
            problems.append(f"{reason_path}: its data file {data_path} is missing")
            continue
        letters.append(letter)
    return letters, problems


class ReplayChunk:
    """A dead letter as a read-only ``outputs.base.Chunk``."""

    def __init__(self, letter: Letter) -> None:
        with open(letter.data_path, "rb") as handle:
            data = handle.read()
        self._lines = data.splitlines()
        self._data = b"".join(line + b"\n" for line in self._lines)
        digest = hashlib.sha256(letter.base.encode()).hexdigest()[:12]
        self.id = f"{letter.chunk}-replay-{digest}"
        self.tag = letter.tag
        fallback = os.stat(letter.data_path).st_mtime
        times = letter.times if letter.times and len(letter.times) == len(self._lines) else None
        self._times = times or [_event_time(line, fallback) for line in self._lines]
        self.created = min(self._times, default=fallback)

    @property
    def records(self) -> int:
        return len(self._lines)

    @property
    def size(self) -> int:
        return len(self._data)

    def lines(self) -> Sequence[bytes]:
        return self._lines

    def times(self) -> Sequence[float]:
        return self._times

    def data(self) -> bytes:
        return self._data

    def parts(self) -> Sequence[bytes]:
        return [self._data]

    def release_cache(self) -> None:
        return None


def _event_time(line: bytes, fallback: float) -> float:
    """The record's ``time`` (RFC3339), for dead letters written before their times were kept."""
    from datetime import datetime

    try:
        value = json.loads(line).get("time")
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError, TypeError):
        return fallback


class _Metrics:
    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        return None

    def observe(self, name: str, value: float, **labels: str) -> None:
        return None

    def set(self, name: str, value: float, **labels: str) -> None:
        return None


@dataclass
class Outcome:
    replayed_files: int = 0
    replayed_records: int = 0
    lettered_again: int = 0
    kept: list[str] = field(default_factory=list)


async def _replay_output(
    output: Output, letters: list[Letter], dead_letters: DeadLetterDir, outcome: Outcome
) -> None:
    """Send the letters as delivery would: grouped into writes after the output's batching
    (every letter is ready, so no group waits), at most ``workers`` writes at once, each write
    tried up to ``ATTEMPTS`` times; a blocked output stops the replay of what is left."""
    name = output.context.name
    written: set[str] = set()
    original = output.context.dead_letter

    def dead_letter(chunk: Chunk, lines: Sequence[bytes], reason: str) -> None:
        path = dead_letters.write(chunk_for_letters[chunk.id], name, lines, f"replay: {reason}")
        written.add(path)
        outcome.lettered_again += len(lines)

    chunk_for_letters: dict[str, Chunk] = {}
    letter_of: dict[str, Letter] = {}
    output.context.dead_letter = dead_letter
    await output.start()
    workers = max(1, int(getattr(output.config, "workers", 1)))
    slots = asyncio.Semaphore(workers)
    blocked: list[str] = []

    def settle(chunk: Chunk) -> None:
        letter = letter_of[chunk.id]
        # Delivered (or refused records kept again under a new reason): the old pair goes,
        # unless the new dead letter took its very name (the same records refused again).
        if letter.data_path not in written:
            for path in (letter.reason_path, letter.data_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        outcome.replayed_files += 1
        outcome.replayed_records += chunk.records

    def keep(group: Sequence[Chunk], why: str) -> None:
        outcome.kept.extend(f"{letter_of[chunk.id].data_path}: {why}" for chunk in group)

    async def write(group: list[Chunk]) -> None:
        try:
            for attempt in range(1, ATTEMPTS + 1):
                if blocked:
                    keep(group, f"not tried, {blocked[0]}")
                    return
                result = await write_group(output, group, name)
                if result.kind == "done":
                    for chunk in group:
                        settle(chunk)
                    return
                if result.kind == "fatal":
                    for chunk in group:
                        if result.refused is None or chunk.id in result.refused:
                            keep([chunk], f"refused again: {result.reason}")
                        else:
                            settle(chunk)
                    return
                if result.kind == "blocked":
                    blocked.append(f"{result.cause}: {result.reason}")
                    keep(group, blocked[-1])
                    return
                if attempt == ATTEMPTS:
                    keep(group, f"still failing: {result.reason}")
                    return
                await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
        finally:
            slots.release()

    batching = output.batching
    grouper = Grouper(batching, output.batch_key, workers * batching.max_chunks)
    writes: list[asyncio.Task[None]] = []

    async def start(groups: list[list[Chunk]]) -> None:
        for group in groups:
            await slots.acquire()  # read no more letters than the writes in flight need
            writes.append(asyncio.create_task(write(group)))

    try:
        for letter in letters:
            if blocked:
                outcome.kept.append(f"{letter.data_path}: not tried, {blocked[0]}")
                continue
            chunk = ReplayChunk(letter)
            # A dead letter of the same records written again must keep its own name.
            chunk_for_letters[chunk.id] = _Renamed(chunk, letter.chunk)
            letter_of[chunk.id] = letter
            await start(grouper.add(chunk, 0.0))
        await start(grouper.close_all())
        await asyncio.gather(*writes)
    finally:
        for task in writes:
            task.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        await output.stop()
        output.context.dead_letter = original


class _Renamed:
    """The replayed chunk under its original chunk id, for naming new dead letters."""

    def __init__(self, chunk: ReplayChunk, chunk_id: str) -> None:
        self._chunk = chunk
        self.id = chunk_id
        self.tag = chunk.tag
        self.created = chunk.created

    @property
    def records(self) -> int:
        return self._chunk.records

    @property
    def size(self) -> int:
        return self._chunk.size

    def lines(self) -> Sequence[bytes]:
        return self._chunk.lines()

    def times(self) -> Sequence[float]:
        return self._chunk.times()

    def data(self) -> bytes:
        return self._chunk.data()

    def parts(self) -> Sequence[bytes]:
        return self._chunk.parts()

    def release_cache(self) -> None:
        return None


async def replay(config: Any, only: str | None, out: Any = sys.stdout) -> int:
    from agent.components import build

    data_dir = config.agent.data_dir
    directory = dead_letter_path(data_dir)
    dead_letters = DeadLetterDir(directory, int(config.agent.dead_letter_max_bytes))
    letters, problems = scan(directory)
    for problem in problems:
        print(f"warning: {problem}", file=out)
    by_output: dict[str, list[Letter]] = {}
    for letter in letters:
        if only is None or letter.output == only:
            by_output.setdefault(letter.output, []).append(letter)
    configured = {item.name: (index, item) for index, item in enumerate(config.outputs)}
    if only is not None and only not in configured:
        print(f"error: no output named {only!r} in the config", file=out)
        return 2
    work_dir = os.path.join(data_dir, "dead-letter-replay")
    ensure_private_dir(work_dir)
    status = 0
    if not by_output:
        print(f"no dead letters to replay in {directory}", file=out)
        return 0
    for name, group in by_output.items():
        index, out_config = configured.get(name, (-1, None))
        if out_config is None:
            print(
                f"output {name}: {len(group)} dead letters kept: no output of that name in the "
                "config (use --output with a configured name after renaming, or move them)",
                file=out,
            )
            status = 1
            continue
        context = OutputContext(
            name=name,
            data_dir=work_dir,
            node_name=config.agent.node_name or socket.gethostname(),
            logger=logging.getLogger(f"agent.replay.{name}"),
            metrics=_Metrics(),
            dead_letter=lambda chunk, lines, reason: None,
        )
        try:
            output = build("outputs", index, out_config, context)
        except ValueError as exc:
            print(f"output {name}: cannot build it: {exc}", file=out)
            status = 1
            continue
        if hasattr(output, "abort_stale_uploads"):
            output.abort_stale_uploads = False  # the running agent's uploads are not stale
        outcome = Outcome()
        started = time.monotonic()
        await _replay_output(output, group, dead_letters, outcome)
        print(
            f"output {name}: replayed {outcome.replayed_records} records from "
            f"{outcome.replayed_files} of {len(group)} dead letters in "
            f"{time.monotonic() - started:.1f}s"
            + (
                f"; {outcome.lettered_again} records refused again (dead-lettered again)"
                if outcome.lettered_again
                else ""
            ),
            file=out,
        )
        for kept in outcome.kept:
            print(f"  kept {redact_text(kept)}", file=out)
        if outcome.kept:
            status = 1
    return status


def list_letters(config: Any, only: str | None, out: Any = sys.stdout) -> int:
    directory = dead_letter_path(config.agent.data_dir)
    letters, problems = scan(directory)
    for problem in problems:
        print(f"warning: {problem}", file=out)
    shown = [letter for letter in letters if only is None or letter.output == only]
    for letter in shown:
        print(
            f"{letter.data_path}: output={letter.output} tag={letter.tag} "
            f"records={letter.records}: {redact_text(letter.reason)}",
            file=out,
        )
    total = sum(letter.records for letter in shown)
    print(f"{len(shown)} dead letters, {total} records, in {directory}", file=out)
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="container-audit-agent dead-letters",
        description="List the dead-letter directory, or send its records again once the "
        "cause is fixed.",
    )
    parser.add_argument("action", choices=("list", "replay"))
    parser.add_argument("--config", "-c", required=True, help="agent.toml")
    parser.add_argument("--output", help="only the dead letters of this output (its name)")
    args = parser.parse_args(list(argv))
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.action == "list":
        return list_letters(config, args.output)
    return asyncio.run(replay(config, args.output))
