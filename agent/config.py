"""Loading agent.toml: TOML -> ``${ENV}`` interpolation -> msgspec structs, with errors that name
the file, the key path and what was expected."""

from __future__ import annotations

import os
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal

import msgspec

from agent.buffer.base import BufferConfig
from agent.components import filter_types, input_types, output_types
from agent.filters.base import FilterConfig
from outputs.base import Duration, Size, config_dec_hook


class ConfigError(Exception):
    """A config problem, already phrased for the user: "file: key.path: what is wrong"."""


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = "/var/lib/container-audit-agent"
    """Buffer chunks, acknowledgements and the dead-letter directory live here."""
    node_name: str = ""
    """This node's name (S3 keys, ``${host}``); defaults to the machine's hostname."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["plain", "json"] = "plain"
    http_listen: str | None = None
    """host:port for /healthz, /readyz and /metrics; unset means no HTTP server."""
    grace_period: Duration = Duration(10.0)
    """On SIGTERM, how long outputs may drain before the agent exits (the rest stays buffered)."""
    dead_letter_max_bytes: Size = Size(1024 * 1024 * 1024)
    """Bound on ``data_dir/dead-letter``. When a dead letter would pass it, the output holds its
    chunk in the buffer (retried later, shown in /readyz) instead of deleting anything."""


# Environment variables are upper case (``${S3_BUCKET}``) or carry a default
# (``${aws_region:-us-east-1}``); any other ``${...}`` is a record-field template (``${ident}``,
# ``${sd.origin.ip}``) that components render per record, so it is left as written.
_ENV = re.compile(r"\$\{(?:([A-Z_][A-Z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*):-([^}]*))\}")


def _interpolate(value: Any, path: str, source: str) -> Any:
    """``${VAR}`` and ``${var:-default}`` in every string value (not in keys, not in TOML
    syntax, so an environment value can never change the config's structure)."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            default = match.group(3) if match.group(2) else None
            env = os.environ.get(name)
            if env is not None and (env != "" or default is None):
                return env
            if default is not None:
                return default
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

        return _ENV.sub(substitute, value)
    if isinstance(value, dict):
        return {
            key: _interpolate(item, f"{path}.{key}" if path else key, source)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(item, f"{path}[{i}]", source) for i, item in enumerate(value)]
    return value


@cache
def config_type() -> type[msgspec.Struct]:
    """The root config struct; built at run time because the unions of component configs come
    from the component registry."""

    def union(configs: list[type]) -> Any:
        first, *rest = configs
        result: Any = first
        for item in rest:
            result = result | item
        return result

    inputs = union([cfg for cfg, _ in input_types().values()])
    filters = union([cfg for cfg, _ in filter_types().values()] or [FilterConfig])
    outputs = union([cfg for cfg, _ in output_types().values()])
    return msgspec.defstruct(
        "Config",
        [
            ("agent", AgentConfig, msgspec.field(default_factory=AgentConfig)),
            ("buffer", BufferConfig, msgspec.field(default_factory=BufferConfig)),
            ("inputs", list[inputs]),  # type: ignore[valid-type]
            ("filters", list[filters], msgspec.field(default_factory=list)),  # type: ignore[valid-type]
            ("outputs", list[outputs]),  # type: ignore[valid-type]
        ],
        kw_only=True,
        forbid_unknown_fields=True,
    )


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")


def _friendly(error: msgspec.ValidationError, raw: dict[str, Any], source: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.inputs[0].port`" becomes
    "agent.toml: inputs[0].port: expected int, got str"."""
    match = _AT.match(str(error))
    assert match is not None
    what, path = match.group("what"), (match.group("path") or "").lstrip(".")
    unknown = _UNKNOWN.match(what)
    if unknown:
        key = f"{path}.{unknown.group('key')}" if path else unknown.group("key")
        return f"{source}: {key}: unknown key"
    missing = _MISSING.match(what)
    if missing:
        key = f"{path}.{missing.group('key')}" if path else missing.group("key")
        return f"{source}: {key}: required key is missing"
    if path.endswith(".type") and what.startswith("Invalid value"):
        family = path.split("[")[0]
        known = {"inputs": input_types, "filters": filter_types, "outputs": output_types}.get(
            family
        )
        if known is not None:
            return f"{source}: {path}: {what.lower()}; expected one of {sorted(known())}"
    if what.startswith("Object missing required field `type`"):
        return f"{source}: {path}.type: required key is missing"
    text = what.replace("`", "")
    return f"{source}: {path or '(top level)'}: {text[0].lower() + text[1:] if text else text}"


def parse_config(text: str, source: str = "agent.toml") -> Any:
    """Validate a config text; raises ConfigError with a message for the user."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    raw = _interpolate(raw, "", source)
    try:
        # strict=False lets "${WORKERS}"-style strings from the environment fill int fields.
        config = msgspec.convert(raw, config_type(), strict=False, dec_hook=config_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_friendly(exc, raw, source)) from None
    _name_components(config, source)
    return config


def load_config(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return parse_config(text, path)


def default_config_text() -> str:
    return resources.files("agent").joinpath("default.toml").read_text(encoding="utf-8")


def _name_components(config: Any, source: str) -> None:
    """Give every component its default name ("<type>.<position>") and reject duplicates."""
    for family in ("inputs", "filters", "outputs"):
        seen: dict[str, str] = {}
        for position, component in enumerate(getattr(config, family)):
            kind = component.__struct_config__.tag
            if not component.name:
                component.name = f"{kind}.{position}"
            where = f"{family}[{position}].name"
            if component.name in seen:
                raise ConfigError(
                    f"{source}: {where}: name {component.name!r} is already used by "
                    f"{seen[component.name]}"
                )
            seen[component.name] = where
