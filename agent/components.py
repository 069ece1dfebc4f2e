"""The component registry: config ``type`` -> (config struct, class), per family.

An output whose extra is not installed (``pip install container-audit-agent[s3]``) still validates
its config; building it then fails with a message naming the extra.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

Registry = dict[str, tuple[type, type]]

_INPUTS = {
    "syslog": ("agent.inputs.syslog", "SyslogInputConfig", "SyslogInput"),
    "tail": ("agent.inputs.tail", "TailInputConfig", "TailInput"),
}
_OUTPUTS = {
    "stdout": ("outputs.stdout", "StdoutConfig", "StdoutOutput"),
    "file": ("outputs.file", "FileConfig", "FileOutput"),
    "null": ("outputs.null", "NullConfig", "NullOutput"),
    "s3": ("outputs.s3", "S3Config", "S3Output"),
    "elasticsearch": ("outputs.elasticsearch", "ElasticsearchConfig", "ElasticsearchOutput"),
    "opensearch": ("outputs.elasticsearch", "OpenSearchConfig", "ElasticsearchOutput"),
    "http": ("outputs.http", "HttpConfig", "HttpOutput"),
}


_EXTRAS = {
    "s3": ("s3", ("aiobotocore",)),
    "elasticsearch": ("elasticsearch", ("aiohttp",)),
    "opensearch": ("elasticsearch", ("aiohttp",)),
    "http": ("http", ("aiohttp",)),
}
"""Output type -> (pip extra, the packages it brings that the output imports when it runs)."""


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


def _load(table: dict[str, tuple[str, str, str]]) -> Registry:
    registry: Registry = {}
    for kind, (module_name, config_name, class_name) in table.items():
        try:
            module: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"agent", "outputs", "parsers"}:
                continue  # component not part of this build
            raise
        registry[kind] = (getattr(module, config_name), getattr(module, class_name))
    return registry


@cache
def input_types() -> Registry:
    return _load(_INPUTS)


@cache
def output_types() -> Registry:
    return _load(_OUTPUTS)


@cache
def filter_types() -> Registry:
    try:
        from agent.filters.registry import FILTER_TYPES
    except ModuleNotFoundError as exc:
        if exc.name == "agent.filters.registry":
            return {}
        raise
    return dict(FILTER_TYPES)
