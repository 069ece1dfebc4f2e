"""The ``audit`` filter's keys."""

from __future__ import annotations

from agent.filters.base import FilterConfig


class AuditConfig(FilterConfig, tag_field="type", tag="audit"):
    rules_file: str | None = None
    """Extra rules (TOML, same format as the defaults); a rule with a default's id replaces it."""
    default_rules: bool = True
    """Load the rules shipped with the agent."""
    disable: list[str] = []
    """Rule ids to turn off."""
    only: list[str] | None = None
    """If given, only these rule ids are on."""
    retag: bool = True
    """Send matching records out under ``<tag_prefix>.<rule id>`` too."""
    keep_original: bool = True
    """With retag: the record also stays in its own stream (marked), not only under the
    audit tag."""
    tag_prefix: str = "audit"
    """With retag: the first part of the tag matching records go out under."""
    field: str = "audit"
    """Top-level key receiving the mark."""
    max_groups: int = 10000
    """Groups a stateful rule tracks at most; the least recently seen is forgotten beyond."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tag_prefix:
            raise ValueError("tag_prefix: cannot be empty")
        if self.max_groups < 1:
            raise ValueError("max_groups: must be at least 1")
