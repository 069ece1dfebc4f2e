"""Every filter type: ``type`` value in the config -> (config struct, filter class).

The integrator builds the tagged union of ``[[filters]]`` configs from the config structs and
the chain builds filters from the classes.
"""

from __future__ import annotations

from agent.filters.audit import AuditConfig, AuditFilter
from agent.filters.auditd import AuditdConfig, AuditdFilter
from agent.filters.base import Filter, FilterConfig
from agent.filters.grep import GrepConfig, GrepFilter
from agent.filters.kubernetes import KubernetesConfig, KubernetesFilter
from agent.filters.modify import ModifyConfig, ModifyFilter
from agent.filters.multiline import MultilineConfig, MultilineFilter
from agent.filters.nest import NestConfig, NestFilter
from agent.filters.parser import ParserConfig, ParserFilter
from agent.filters.python_filter import PythonConfig, PythonFilter
from agent.filters.record_modifier import RecordModifierConfig, RecordModifierFilter
from agent.filters.rewrite_tag import RewriteTagConfig, RewriteTagFilter
from agent.filters.throttle import ThrottleConfig, ThrottleFilter

FILTER_TYPES: dict[str, tuple[type[FilterConfig], type[Filter]]] = {
    "grep": (GrepConfig, GrepFilter),
    "modify": (ModifyConfig, ModifyFilter),
    "record_modifier": (RecordModifierConfig, RecordModifierFilter),
    "rewrite_tag": (RewriteTagConfig, RewriteTagFilter),
    "throttle": (ThrottleConfig, ThrottleFilter),
    "parser": (ParserConfig, ParserFilter),
    "nest": (NestConfig, NestFilter),
    "multiline": (MultilineConfig, MultilineFilter),
    "python": (PythonConfig, PythonFilter),
    "kubernetes": (KubernetesConfig, KubernetesFilter),
    "audit": (AuditConfig, AuditFilter),
    "auditd": (AuditdConfig, AuditdFilter),
}


def type_name(config: FilterConfig) -> str:
    """The ``type`` value of a filter config struct."""
    tag = type(config).__struct_config__.tag
    return str(tag)
