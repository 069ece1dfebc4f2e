"""The tag selection every output and filter takes: ``match`` (a glob) or ``match_regex``."""

from __future__ import annotations

import re


def check_selector(match: str | None, match_regex: str | None) -> None:
    """The tag selection of an output or a filter: ``match`` (a glob) or ``match_regex``, not
    both, and a regular expression that compiles; ValueError phrased for the user."""
    if match is not None and match_regex is not None:
        raise ValueError("match_regex: give match or match_regex, not both")
    if match_regex is not None:
        try:
            re.compile(match_regex)
        except re.error as exc:
            raise ValueError(
                f"match_regex: invalid regular expression {match_regex!r}: {exc}"
            ) from None
