"""Discards every chunk, acknowledging it at once: for benchmarks and for dry runs."""

from __future__ import annotations

from collections.abc import Sequence

from outputs.base import Chunk, Output, OutputConfig


class NullConfig(
    OutputConfig, tag_field="type", tag="null", kw_only=True, forbid_unknown_fields=True
):
    pass


class NullOutput(Output):
    type_name = "null"

    async def send(self, chunks: Sequence[Chunk]) -> None:
        return None
