"""The dead-letter directory: owner-only files, bounded by dead_letter_max_bytes, and an error
(never a silent "not written") when records cannot be kept."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.buffer.deadletter import DeadLetterDir
from outputs.base import DeadLetterError
from tests.chunks import TestChunk


def chunk(records: int = 10) -> TestChunk:
    return TestChunk(
        "app",
        [b'{"n":%d,"message":"x"}' % n for n in range(records)],
        times=[1_700_000_000.0 + n for n in range(records)],
    )


def test_files_are_owner_only_and_keep_reason_and_times(tmp_path: Path) -> None:
    directory = tmp_path / "dead-letter"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    letters = DeadLetterDir(str(directory))
    whole = chunk()
    path = Path(letters.write_chunk(whole, "es", "rejected: Authorization: Basic c2VjcmV0"))
    part = Path(letters.write(whole, "es", whole.lines()[2:4], "status 400 mapper_parsing"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for data in (path, part):
        reason = data.with_suffix(".json")
        assert stat.S_IMODE(data.stat().st_mode) == 0o600
        assert stat.S_IMODE(reason.stat().st_mode) == 0o600
    doc = json.loads(path.with_suffix(".json").read_text())
    assert doc["records"] == 10 and doc["times"][3] == 1_700_000_003.0
    assert "c2VjcmV0" not in doc["reason"]
    assert json.loads(part.with_suffix(".json").read_text())["times"] == [
        1_700_000_002.0,
        1_700_000_003.0,
    ]
    assert part.read_bytes() == b"".join(line + b"\n" for line in whole.lines()[2:4])
    # The same records again (a resend after a restart) replace the file, not add one.
    again = Path(letters.write(whole, "es", whole.lines()[2:4], "status 400 again"))
    assert again == part
    assert not list(directory.glob("*.tmp"))


def test_a_full_directory_refuses_with_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "dead-letter"
    # Each letter needs its data (~1.5 KB) and a reason file: two do not fit in 3500 bytes.
    letters = DeadLetterDir(str(directory), max_bytes=3500)
    letters.write_chunk(TestChunk("app", [b'{"pad":"' + b"p" * 140 + b'"}'] * 10), "out", "first")
    big = TestChunk("app", [b'{"pad":"' + b"q" * 140 + b'"}'] * 10)
    with pytest.raises(DeadLetterError, match="is full") as raised:
        letters.write_chunk(big, "out", "second")
    assert raised.value.cause == "dead_letter_full"
    assert len(list(directory.glob("*.ndjson"))) == 1
    # Room made by hand (or by a replay): the next try sees it at once.
    for path in directory.iterdir():
        path.unlink()
    letters.write_chunk(big, "out", "second")


def test_an_unwritable_directory_raises_instead_of_losing_records(tmp_path: Path) -> None:
    directory = tmp_path / "dead-letter"
    directory.write_text("a file where the directory should be")
    letters = DeadLetterDir(str(directory))
    with pytest.raises(DeadLetterError) as raised:
        letters.write(chunk(), "es", chunk().lines()[:2], "refused")
    assert raised.value.cause == "dead_letter_unwritable"
