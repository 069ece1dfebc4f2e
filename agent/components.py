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
}


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
