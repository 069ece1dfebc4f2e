"""The S3 output's journal on its own: what survives a restart, a torn line and compaction."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from outputs.s3.journal import Journal, group_digest


def reload(path: Path, keep_done: int = 4096) -> Journal:
    journal = Journal(path, keep_done=keep_done)
    journal.load()
    return journal


def test_states_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s3" / "out.journal"
    journal = reload(path)

    async def write() -> None:
        await journal.begin("k1", ["a", "b"], group_digest(["a", "b"]), journal.take_index())
        await journal.done("k1")
        await journal.begin("k2", ["c"], group_digest(["c"]), journal.take_index())
        await journal.uploading("k2", "upload-2")
        await journal.begin("k3", ["d"], group_digest(["d"]), journal.take_index())
        await journal.drop("k3", retire=True)
        await journal.begin("k4", ["e"], group_digest(["e"]), journal.take_index())
        await journal.drop("k4")

    asyncio.run(write())
    again = reload(path)
    first = again.entry_of("b")
    assert first is not None and first.state == "done" and first.key == "k1"
    pending = again.entry_of("c")
    assert pending is not None and pending.state == "pending" and pending.upload_id == "upload-2"
    assert again.entry_of("d") is None and again.entry_of("e") is None
    assert not again.free_key("k3", group_digest(["d", "x"]))  # retired: may land late
    assert again.free_key("k3", group_digest(["d"]))  # the very same group may rewrite it
    assert again.free_key("k4", "anything")  # certainly not stored: reusable
    assert again.take_index() == 4


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "out.journal"
    journal = reload(path)
    asyncio.run(journal.begin("k1", ["a"], group_digest(["a"]), 0))
    with open(path, "ab") as file:
        file.write(b'{"op":"done","ke')  # killed mid-write
    again = reload(path)
    assert again.torn_lines == 1
    entry = again.entry_of("a")
    assert entry is not None and entry.state == "pending"
    assert b'"ke\n' not in path.read_bytes()  # compacted away at load


def test_compaction_keeps_pending_and_recent_done(tmp_path: Path) -> None:
    path = tmp_path / "out.journal"
    journal = reload(path, keep_done=3)

    async def write() -> None:
        await journal.begin("pending", ["p"], group_digest(["p"]), journal.take_index())
        for n in range(20):  # more lines than 4 x keep_done: compacts while running
            key = f"k{n}"
            await journal.begin(key, [f"c{n}"], group_digest([f"c{n}"]), journal.take_index())
            await journal.done(key)

    asyncio.run(write())
    lines_before_restart = len(path.read_text().splitlines())
    assert lines_before_restart < 2 * 20
    again = reload(path, keep_done=3)
    assert again.entry_of("p") is not None
    assert [again.entry_of(f"c{n}") is not None for n in (16, 17, 18, 19)] == [
        False,
        True,
        True,
        True,
    ]
    assert again.take_index() == 21


def test_journal_and_its_directory_are_owner_only(tmp_path: Path) -> None:
    """Object keys name hosts and tags: the journal under data_dir is 0600 in a 0700 directory,
    also when an older version left them wider."""
    path = tmp_path / "s3" / "out.journal"
    path.parent.mkdir(mode=0o755)
    path.parent.chmod(0o755)
    path.write_text("")
    path.chmod(0o644)
    journal = reload(path)

    async def write() -> None:
        await journal.begin("k1", ["a"], group_digest(["a"]), journal.take_index())

    asyncio.run(write())
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = reload(tmp_path / "other" / "s3" / "new.journal")
    asyncio.run(fresh.begin("k", ["b"], group_digest(["b"]), fresh.take_index()))
    assert stat.S_IMODE((tmp_path / "other" / "s3").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "other" / "s3" / "new.journal").stat().st_mode) == 0o600
