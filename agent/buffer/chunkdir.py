"""The disk buffer's directories, as fluent-bit's chunkio scans its streams at start::

    data_dir/chunks/<id>.<tag>.chunk     header + frames (agent/buffer/frames.py)
    data_dir/chunks/<id>.acks            outputs that acknowledged the chunk, one JSON string a line
    data_dir/corrupt/                    chunks with an unreadable header, damaged spans cut
                                         from chunk files (<chunk file>.cut-at-<offset>)

At start every chunk file is validated (``scan``): damaged spans are saved to corrupt/ and cut
out of the file (``salvage``), unreadable chunks are moved there whole. The same salvage runs
when a sealed chunk read back for delivery turns out damaged. Blocking file I/O throughout:
callers run it in a thread.
"""

from __future__ import annotations

import logging
import os

import msgspec

from agent.buffer.chunk import (
    ACKS_SUFFIX,
    CHUNK_SUFFIX,
    BufferChunk,
    is_chunk_id,
    parse_chunk_file_name,
)
from agent.buffer.files import fdatasync, open_private, tighten_files, write_all, writev_all
from agent.buffer.frames import (
    CorruptChunk,
    Cut,
    FrameScan,
    decode_header,
    describe_cuts,
    scan_frames,
)

SALVAGE_SUFFIX = ".salvage"
"""A chunk file being rewritten without its damaged spans (replaces the chunk when complete)."""


class Recovered(msgspec.Struct):
    """What the start-up scan found (built in a worker thread, applied on the loop)."""

    chunks: list[tuple[BufferChunk, set[str]]]
    ids: list[str]
    cuts: list[Cut] = msgspec.field(default_factory=list)
    damaged_chunks: int = 0
    corrupt_chunks: int = 0


class ChunkDir:
    """Chunk files and acknowledgement files under ``chunks_dir``, and ``corrupt_dir`` beside."""

    def __init__(self, chunks_dir: str, corrupt_dir: str, logger: logging.Logger) -> None:
        self.chunks_dir = chunks_dir
        self.corrupt_dir = corrupt_dir
        self.logger = logger

    def scan(self) -> Recovered:
        """Validate every chunk file, oldest first (blocking; runs in a thread)."""
        names = sorted(os.listdir(self.chunks_dir))
        result = Recovered(chunks=[], ids=[])
        try:
            corrupt = os.listdir(self.corrupt_dir)
        except OSError:
            corrupt = []
        foreign = []
        for name in corrupt:
            chunk_id = name.split(".", 1)[0]
            if is_chunk_id(chunk_id):
                result.ids.append(chunk_id)
            else:
                foreign.append(name)
        if foreign:
            self.logger.info(
                "%s holds %d files whose names are not the buffer's (e.g. %s): left alone, not "
                "taken into account for chunk ids", self.corrupt_dir, len(foreign), min(foreign),
            )
        tightened = tighten_files(self.chunks_dir, names) + tighten_files(self.corrupt_dir, corrupt)
        if tightened:
            self.logger.warning("made %d files under %s and %s owner-only (0600)",
                                tightened, self.chunks_dir, self.corrupt_dir)
        live: set[str] = set()
        for name in names:
            parsed = parse_chunk_file_name(name)
            if parsed is None:
                self._not_a_chunk(name)
                continue
            chunk_id = parsed[0]
            result.ids.append(chunk_id)
            path = os.path.join(self.chunks_dir, name)
            try:
                with open(path, "rb") as file:
                    content = file.read()
                if not content:
                    # Created, then the process died before its first write: holds nothing.
                    self.logger.info("removing empty chunk file %s", path)
                    self.unlink(path)
                    self.unlink(self.acks_path(chunk_id))
                    continue
                header, header_end = decode_header(content)
                if header.id != chunk_id:
                    raise CorruptChunk(f"header names chunk {header.id!r}")
            except (OSError, CorruptChunk) as exc:
                self.logger.error("chunk file %s is unreadable (%s): moved to %s",
                                  path, exc, self.corrupt_dir)
                self.move_aside(path, chunk_id)
                result.corrupt_chunks += 1
                continue
            scan = scan_frames(content, header_end, keep=False)
            file_bytes = len(content)
            if scan.cuts:
                file_bytes = self.salvage(path, content, header_end, scan)
                self.logger.warning(
                    "chunk file %s: %s; kept the %d records of its intact frames (the cut "
                    "bytes are in %s)", path, describe_cuts(scan.cuts), scan.records,
                    self.corrupt_dir,
                )
                result.cuts += scan.cuts
                result.damaged_chunks += 1
            del content
            if not scan.records:
                self.unlink(path)
                self.unlink(self.acks_path(chunk_id))
                continue
            live.add(chunk_id)
            chunk = BufferChunk(
                header.id,
                header.tag,
                header.created,
                scan.records,
                scan.size,
                path=path,
                file_bytes=file_bytes,
            )
            result.chunks.append((chunk, self.read_acks(chunk_id)))
        for name in names:
            if name.endswith(ACKS_SUFFIX) and name[: -len(ACKS_SUFFIX)] not in live:
                self.unlink(os.path.join(self.chunks_dir, name))
        return result


    def _not_a_chunk(self, name: str) -> None:
        path = os.path.join(self.chunks_dir, name)
        if name.endswith(ACKS_SUFFIX) and is_chunk_id(name[: -len(ACKS_SUFFIX)]):
            return  # an acknowledgement file: handled with its chunk
        if name.endswith(CHUNK_SUFFIX + SALVAGE_SUFFIX) and parse_chunk_file_name(
            name[: -len(SALVAGE_SUFFIX)]
        ):
            # A rewrite the process did not finish: the chunk itself is still whole.
            self.logger.info("removing %s: an unfinished rewrite of a damaged chunk", path)
            self.unlink(path)
            return
        self.logger.warning(
            "ignoring %s: not a file of the buffer's (chunk files are named "
            "<13 digits>-<12 digits>.<tag>.chunk); left as it is", path,
        )


    def salvage(self, path: str, content: bytes, header_end: int, scan: FrameScan) -> int:
        """Save the damaged spans of a chunk file to corrupt/ and rewrite it with its intact
        frames only (a damaged tail is simply truncated); returns the file's new length. If the
        rewrite fails the file stays as it is (its intact frames are found again when read)."""
        if not scan.cuts:
            return len(content)
        name = os.path.basename(path)
        for cut in scan.cuts:
            self._save_cut(name, content, cut)
        if len(scan.cuts) == 1 and scan.cuts[0].end == len(content):
            os.truncate(path, scan.cuts[0].offset)
            return scan.cuts[0].offset
        view = memoryview(content)
        kept = [view[:header_end]] + [view[a:b] for a, b in scan.kept(header_end)]
        temporary = path + SALVAGE_SUFFIX
        try:
            fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                written = writev_all(fd, kept)  # type: ignore[arg-type]
                fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
        except OSError as exc:
            self.logger.error("cannot rewrite %s without its damaged spans: %s", path, exc)
            self.unlink(temporary)
            return len(content)
        return written


    def _save_cut(self, name: str, content: bytes, cut: Cut) -> None:
        saved = os.path.join(self.corrupt_dir, f"{name}.cut-at-{cut.offset}")
        try:
            fd = open_private(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                write_all(fd, content[cut.offset : cut.end])
            finally:
                os.close(fd)
        except OSError as exc:
            self.logger.warning("cannot save the damaged bytes of %s to %s: %s", name, saved, exc)


    def move_aside(self, path: str, chunk_id: str) -> None:
        for source in (path, self.acks_path(chunk_id)):
            try:
                os.replace(source, os.path.join(self.corrupt_dir, os.path.basename(source)))
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.logger.error("cannot move %s to %s: %s", source, self.corrupt_dir, exc)


    def acks_path(self, chunk_id: str) -> str:
        return os.path.join(self.chunks_dir, chunk_id + ACKS_SUFFIX)


    def read_acks(self, chunk_id: str) -> set[str]:
        try:
            with open(self.acks_path(chunk_id), "rb") as file:
                content = file.read()
        except FileNotFoundError:
            return set()
        acked = set()
        for line in content.split(b"\n"):
            try:
                acked.add(msgspec.json.decode(line, type=str))
            except msgspec.DecodeError:
                continue  # an empty or torn last line
        return acked


    def unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.logger.error("cannot delete %s: %s", path, exc)

    def persist_ack(self, chunk_id: str, output: str) -> None:
        fd = open_private(self.acks_path(chunk_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            write_all(fd, msgspec.json.encode(output) + b"\n")
        finally:
            os.close(fd)

    def delete(self, chunk: BufferChunk) -> None:
        """The chunk left the buffer: its file and its acknowledgements go."""
        if chunk.path is not None:
            self.unlink(chunk.path)
        self.unlink(self.acks_path(chunk.id))
