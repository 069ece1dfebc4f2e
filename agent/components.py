"""The component registry: one table per family, config ``type`` -> the module, config struct and
class of that component; and ``build``, the one way any component is made from its config.

Adding a component is one line in its family's table. The tables name modules as strings, so
that reading this file imports no component (and no component imports this file back); the
first look-up of a family imports every entry of it, and an entry that does not resolve (a
typo, a renamed class) fails that look-up loudly instead of dropping the component.

An output whose extra is not installed (``pip install container-audit-agent[s3]``) still validates
its config: its module imports the extra's packages only when it runs. Building it then fails
with a message naming the extra.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from functools import cache
from typing import Any

INPUTS = {
    "syslog": ("agent.inputs.syslog", "SyslogInputConfig", "SyslogInput"),
    "tail": ("agent.inputs.tail", "TailInputConfig", "TailInput"),
}
FILTERS = {
    "grep": ("agent.filters.grep", "GrepConfig", "GrepFilter"),
    "modify": ("agent.filters.modify", "ModifyConfig", "ModifyFilter"),
    "record_modifier": (
        "agent.filters.record_modifier",
        "RecordModifierConfig",
        "RecordModifierFilter",
    ),
    "rewrite_tag": ("agent.filters.rewrite_tag", "RewriteTagConfig", "RewriteTagFilter"),
    "throttle": ("agent.filters.throttle", "ThrottleConfig", "ThrottleFilter"),
    "parser": ("agent.filters.parser", "ParserConfig", "ParserFilter"),
    "nest": ("agent.filters.nest", "NestConfig", "NestFilter"),
    "multiline": ("agent.filters.multiline", "MultilineConfig", "MultilineFilter"),
    "python": ("agent.filters.python_filter", "PythonConfig", "PythonFilter"),
    "kubernetes": ("agent.filters.kubernetes", "KubernetesConfig", "KubernetesFilter"),
    "audit": ("agent.filters.audit", "AuditConfig", "AuditFilter"),
    "auditd": ("agent.filters.auditd", "AuditdConfig", "AuditdFilter"),
}
OUTPUTS = {
    "stdout": ("outputs.stdout", "StdoutConfig", "StdoutOutput"),
    "file": ("outputs.file", "FileConfig", "FileOutput"),
    "null": ("outputs.null", "NullConfig", "NullOutput"),
    "s3": ("outputs.s3", "S3Config", "S3Output"),
    "elasticsearch": ("outputs.elasticsearch", "ElasticsearchConfig", "ElasticsearchOutput"),
    "opensearch": ("outputs.elasticsearch", "OpenSearchConfig", "ElasticsearchOutput"),
    "http": ("outputs.http", "HttpConfig", "HttpOutput"),
}

FAMILIES = (("inputs", INPUTS), ("filters", FILTERS), ("outputs", OUTPUTS))
"""The ``[[inputs]]``, ``[[filters]]`` and ``[[outputs]]`` arrays of the config, in its order."""

Registry = dict[str, tuple[type, type]]
"""``type`` -> (config struct, class) of one family."""


_EXTRAS = {
    "s3": ("s3", ("aiobotocore",)),
    "elasticsearch": ("elasticsearch", ("aiohttp",)),
    "opensearch": ("elasticsearch", ("aiohttp",)),
    "http": ("http", ("aiohttp",)),
}
"""Output type -> (pip extra, the packages it brings that the output imports when it runs)."""


class ComponentError(ValueError):
    """A component refused its config, phrased for the user as
    ``filters[2] (grep) 'name': regex[0][1]: invalid regular expression ...``."""


def _install_hint(extra: str) -> str:
    return f"pip install 'container-audit-agent[{extra}]'"


def missing_extra(kind: str) -> str | None:
    """What to install when the ``kind`` output's optional packages cannot be imported, as
    ``--check`` and the start report it; None when they can."""
    extra, modules = _EXTRAS.get(kind, ("", ()))
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return (
                f"the {kind} output needs the {module} package, which cannot be imported "
                f"({exc}): {_install_hint(extra)}"
            )
    return None


def extra_hint(module: str) -> str | None:
    """The message for a missing optional package ``module`` (None: not an extra of ours)."""
    for extra, modules in _EXTRAS.values():
        if module.split(".")[0] in modules:
            return f"the {module} package is not installed: {_install_hint(extra)}"
    return None


def _resolve(family: str, kind: str, entry: tuple[str, str, str]) -> tuple[type, type]:
    module_name, config_name, class_name = entry
    try:
        module = importlib.import_module(module_name)
        return getattr(module, config_name), getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        # A broken table is a bug of this build, never a config problem: say which line.
        raise RuntimeError(
            f"agent/components.py: {family} {kind!r} -> {module_name}.{config_name}/"
            f"{class_name}: {exc}"
        ) from exc


@cache
def types(family: str) -> Registry:
    """Every component of ``family`` ("inputs", "filters", "outputs"): ``type`` ->
    (config struct, class), every module of the family imported."""
    table = dict(FAMILIES)[family]
    return {kind: _resolve(family, kind, entry) for kind, entry in table.items()}


def input_types() -> Registry:
    return types("inputs")


def filter_types() -> Registry:
    return types("filters")


def output_types() -> Registry:
    return types("outputs")


def type_name(config: Any) -> str:
    """The ``type`` value of a component's config struct."""
    return str(type(config).__struct_config__.tag)


def label(family: str, index: int, config: Any) -> str:
    """How a refusal names a component: ``filters[2] (grep) 'drop-health'``."""
    text = f"{family}[{index}] ({type_name(config)})"
    name = getattr(config, "name", "")
    return f"{text} {name!r}" if name else text


def refusal(where: str | None, exc: Exception) -> str:
    """``where``: what a component that refused its config raised, phrased for the user (a
    missing optional package names the extra that brings it)."""
    text = str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        text = extra_hint(exc.name) or text
    return f"{where}: {text}" if where else text


@contextlib.contextmanager
def refusals(where: str) -> Iterator[None]:
    """Whatever a component raises while it is built from its config (a check, a regular
    expression that does not compile, a missing optional package) becomes a ``ComponentError``
    "``where``: problem"; the agent reports it as a config error naming the file."""
    try:
        yield
    except ComponentError:
        raise
    except (ValueError, TypeError, ImportError) as exc:
        raise ComponentError(refusal(where, exc)) from None


def build(family: str, index: int, config: Any, context: Any) -> Any:
    """The component ``config`` describes, at position ``index`` of ``family``, running with
    ``context``; ``ComponentError`` "family[index] (type) 'name': key: problem" if it refuses."""
    with refusals(label(family, index, config)):
        known = types(family)
        kind = type_name(config)
        if kind not in known:
            raise ValueError(f"unknown type {kind!r}; expected one of {sorted(known)}")
        return known[kind][1](config, context)
