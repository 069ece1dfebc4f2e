"""Compression of already-encoded output bytes: gzip, zstd or none, streamed.

A ``Compressor`` takes pieces of one object in order (``compress``) and ends it (``finish``),
so an output can compress each chunk as it arrives instead of holding the whole object
uncompressed. The result is a single gzip member or a single zstd frame, which every reader
handles (some readers stop after the first of concatenated members).

zlib and zstandard release the GIL while they work, so callers may run ``compress`` in a
thread (``asyncio.to_thread``) to keep the event loop free, one call at a time per compressor.

zstd needs the optional ``zstandard`` package; ``check_available`` raises a ValueError naming
the config key when it is missing, so a config that asks for it fails at load, not at upload.

gzip goes through zlib-ng when it is installed (the ``fast`` extra): about twice as fast as
zlib at the same level for about the same ratio (``deflate_level`` says what level 1 becomes),
and its output is gzip that every reader takes (docs/performance.md#gzip-through-zlib-ng).
"""

from __future__ import annotations

import io
from typing import Literal, Protocol

try:
    from zlib_ng import zlib_ng as deflate

    GZIP_IMPLEMENTATION = "zlib-ng"
except ImportError:  # pragma: no cover - the fast extra is not installed
    import zlib as deflate  # type: ignore[no-redef]

    GZIP_IMPLEMENTATION = "zlib"


def deflate_level(level: int) -> int:
    """The level to ask the compressor for, given zlib's level 1-9. zlib-ng's level 1 is a
    weaker strategy than zlib's (objects 15-30 % larger on NDJSON logs); its level 2 compresses
    as well as zlib's level 1 or better, at about half its CPU, so 1 means 2 there."""
    return 2 if level == 1 and GZIP_IMPLEMENTATION == "zlib-ng" else level


FAST_GZIP_LEVEL = deflate_level(1)
"""The level of request bodies (Elasticsearch, http): the cheapest that still shrinks NDJSON
logs more than tenfold."""

Compression = Literal["gzip", "zstd", "none"]

EXTENSIONS: dict[str, str] = {"gzip": ".gz", "zstd": ".zst", "none": ""}
"""File name suffix for each compression (appended after ``.ndjson``)."""

CONTENT_TYPES: dict[str, str] = {
    "gzip": "application/gzip",
    "zstd": "application/zstd",
    "none": "application/x-ndjson",
}
"""Default Content-Type of an object holding NDJSON with each compression."""

DEFAULT_LEVELS: dict[str, int] = {"gzip": 6, "zstd": 3, "none": 0}
LEVEL_RANGES: dict[str, tuple[int, int]] = {"gzip": (1, 9), "zstd": (1, 22), "none": (0, 0)}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes:
        """Compressed bytes for ``data`` (possibly empty: the compressor may hold some back)."""
        ...

    def finish(self) -> bytes:
        """The remaining compressed bytes; the compressor cannot be used afterwards."""
        ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _Gzip:
    def __init__(self, level: int) -> None:
        # wbits 31: a gzip header and trailer around the deflate stream.
        self._compressor = deflate.compressobj(deflate_level(level), deflate.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def finish(self) -> bytes:
        return self._compressor.flush(deflate.Z_FINISH)


def gzip_fast(data: bytes) -> bytes:
    """``data`` as one gzip member at ``FAST_GZIP_LEVEL``: request bodies, compressed on the
    event loop, where a higher level costs several times the CPU for a small gain
    (docs/performance.md, "Elasticsearch: gzip level")."""
    compressor = deflate.compressobj(FAST_GZIP_LEVEL, deflate.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        self._compressor = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._compressor.compress(data)
        return out

    def finish(self) -> bytes:
        out: bytes = self._compressor.flush()
        return out


def check_available(compression: str, key: str = "compression") -> None:
    """Raise ValueError (naming ``key``) if ``compression`` is unknown or its module is missing."""
    if compression not in EXTENSIONS:
        raise ValueError(f'{key} must be "gzip", "zstd" or "none", got {compression!r}')
    if compression == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise ValueError(
                f'{key} = "zstd" needs the zstandard package: pip install zstandard '
                '(or container-audit-agent[zstd]), or use "gzip"'
            ) from None


def check_level(compression: str, level: int | None, key: str = "compression_level") -> int:
    """The level to use: ``level`` if valid for ``compression``, else its default."""
    if level is None:
        return DEFAULT_LEVELS[compression]
    low, high = LEVEL_RANGES[compression]
    if compression == "none" or not low <= level <= high:
        raise ValueError(f"{key} for {compression} must be between {low} and {high}, got {level}")
    return level


def new_compressor(compression: str, level: int | None = None) -> Compressor:
    level = check_level(compression, level)
    if compression == "gzip":
        return _Gzip(level)
    if compression == "zstd":
        return _Zstd(level)
    if compression == "none":
        return _Identity()
    raise ValueError(f"unknown compression {compression!r}")


def compress(compression: str, data: bytes, level: int | None = None) -> bytes:
    """One-shot compression of ``data`` as a complete object."""
    compressor = new_compressor(compression, level)
    return compressor.compress(data) + compressor.finish()


def decompress(compression: str, data: bytes) -> bytes:
    """Everything in ``data``, including concatenated gzip members or zstd frames."""
    if compression == "none":
        return data
    if compression == "gzip":
        import gzip

        return gzip.decompress(data)
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(data), read_across_frames=True
        )
        return reader.read()
    raise ValueError(f"unknown compression {compression!r}")
