"""Tag matching: which outputs (and filters) take a tag."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any


def glob_to_regex(pattern: str) -> str:
    """fluent-bit's Match: ``*`` spans any characters, dots included; everything else is literal."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


class TagMatcher:
    """``match`` (glob) or ``match_regex``; neither means every tag."""

    def __init__(self, match: str | None = None, match_regex: str | None = None) -> None:
        if match is not None and match_regex is not None:
            raise ValueError("give match or match_regex, not both")
        self.description = (
            f"match_regex={match_regex!r}" if match_regex is not None else f"match={match or '*'!r}"
        )
        try:
            source = match_regex if match_regex is not None else glob_to_regex(match or "*")
            self._regex = re.compile(source)
        except re.error as exc:
            raise ValueError(f"invalid match_regex {match_regex!r}: {exc}") from None
        self.matches = lru_cache(maxsize=4096)(self._matches)

    def _matches(self, tag: str) -> bool:
        return self._regex.search(tag) is not None


class Router:
    """tag -> the outputs whose ``match``/``match_regex`` selects it, in config order."""

    @classmethod
    def from_outputs(cls, outputs: Iterable[Any]) -> Router:
        """From output configs (anything with ``name``, ``match`` and ``match_regex``)."""
        return cls([(out.name, TagMatcher(out.match, out.match_regex)) for out in outputs])

    def __init__(self, outputs: list[tuple[str, TagMatcher]]) -> None:
        self._outputs = outputs
        self._cache: dict[str, tuple[str, ...]] = {}

    def routes(self, tag: str) -> tuple[str, ...]:
        found = self._cache.get(tag)
        if found is None:
            found = tuple(name for name, matcher in self._outputs if matcher.matches(tag))
            if len(self._cache) < 65536:  # tags templated from fields could be unbounded
                self._cache[tag] = found
        return found
