"""Loading agent.toml: TOML -> ``${ENV}`` interpolation -> msgspec structs, with errors that name
the file, the key path and what was expected.

Every problem in the file is reported at once: each section and each component table is
validated on its own, so one bad key does not hide the next. A component's own checks live in
its config struct (``__post_init__`` raising ValueError phrased for the user); building a
component goes through ``component_errors``, the one place where anything a component refuses
becomes a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any, Literal

import msgspec

from agent.buffer.base import BufferConfig
from agent.components import extra_hint, filter_types, input_types, missing_extra, output_types
from agent.filters.base import FilterConfig
from agent.http import split_host_port
from common.units import Duration, Size, config_dec_hook

DEFAULT_DATA_DIR = "/var/lib/audit-agent"
"""The DaemonSet's hostPath and every example use this directory too (a test checks it)."""


class ConfigError(Exception):
    """Config problems, already phrased for the user: "file: key.path: what is wrong", one per
    line in ``problems``."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The agent process: where it keeps its data, how it logs, its HTTP endpoint, shutdown."""

    data_dir: str = DEFAULT_DATA_DIR
    """Buffer chunks, acknowledgements, ``dead-letter/`` and ``corrupt/`` live here."""
    node_name: str = ""
    """This node's name (``${host}`` in S3 keys); defaults to the machine's hostname. The
    DaemonSet sets it from ``NODE_NAME``."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Level of the agent's own log, on stderr."""
    log_format: Literal["plain", "json"] = "plain"
    """The agent's own log as plain lines or JSON objects; times in UTC. Storms of one warning
    (retries, ejected hosts) are written once per 10 s, then counted."""
    http_listen: str | None = None
    """host:port for /healthz, /readyz and /metrics; unset means no HTTP server."""
    grace_period: Duration = Duration(10.0)
    """On SIGTERM, how long outputs may drain before the agent exits (the rest stays buffered)."""
    dead_letter_max_bytes: Size = Size(1024 * 1024 * 1024)
    """Bound on ``data_dir/dead-letter``. When a dead letter would pass it, the output holds its
    chunk in the buffer (retried later, shown in /readyz) instead of deleting anything."""

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise ValueError("data_dir: must not be empty")
        if self.http_listen is not None:
            try:
                split_host_port(self.http_listen)
            except ValueError:
                raise ValueError(
                    f'http_listen: expected "host:port" such as "127.0.0.1:2020" (a port from 0 '
                    f"to 65535), got {self.http_listen!r}"
                ) from None


# Environment variables are upper case (``${S3_BUCKET}``) or carry a default
# (``${aws_region:-us-east-1}``); any other ``${...}`` is a record-field template (``${ident}``,
# ``${sd.origin.ip}``) that components render per record, so it is left as written.
_ENV = re.compile(r"\$\{(?:([A-Z_][A-Z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*):-([^}]*))\}")
_UNRESOLVED = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")


class _Interpolation:
    """``${VAR}`` and ``${var:-default}`` in every string value (not in keys, not in TOML
    syntax, so an environment value can never change the config's structure). Without
    ``environment`` (``--no-environment``) an unset variable is no error: ``${VAR}`` is left as
    written, and ``unresolved`` holds the keys left so."""

    def __init__(self, source: str, environment: bool) -> None:
        self.source = source
        self.environment = environment
        self.problems: list[str] = []
        self.unresolved: list[str] = []

    def __call__(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self._string(value, path) if "${" in value else value
        if isinstance(value, dict):
            return {
                key: self(item, f"{path}.{key}" if path else key) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    def _string(self, value: str, path: str) -> str:
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            default = match.group(3) if match.group(2) else None
            env = os.environ.get(name)
            if env is not None and (env != "" or default is None):
                return env
            if default is not None:
                return default
            missing.append(name)
            return match.group(0)

        result = _ENV.sub(substitute, value)
        if missing and self.environment:
            names = ", ".join(dict.fromkeys(missing))
            plural = "s" if len(set(missing)) > 1 else ""
            self.problems.append(
                f"{self.source}: {path}: environment variable{plural} {names} not set"
                if plural
                else f"{self.source}: {path}: environment variable {names} is not set"
            )
        elif missing:
            self.unresolved.append(f"{path} = {value!r}")
        return result


def _union(configs: list[type]) -> Any:
    first, *rest = configs
    result: Any = first
    for item in rest:
        result = result | item
    return result


@cache
def config_type() -> type[msgspec.Struct]:
    """The root config struct; built at run time because the unions of component configs come
    from the component registry."""
    inputs = _union([cfg for cfg, _ in input_types().values()])
    filters = _union([cfg for cfg, _ in filter_types().values()] or [FilterConfig])
    outputs = _union([cfg for cfg, _ in output_types().values()])
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


_FAMILIES = {"inputs": input_types, "filters": filter_types, "outputs": output_types}
_SECTIONS: dict[str, type] = {"agent": AgentConfig, "buffer": BufferConfig}
_TOP_LEVEL = ["agent", "buffer", "inputs", "filters", "outputs"]


# ------------------------------------------------------------------------------ messages


def _suggest(key: str, known: list[str]) -> str:
    """ "; did you mean chunk_bytes?" for the nearest known key, or ""."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close and key.rstrip("s") + "s" in known:
        close = [key.rstrip("s") + "s"]
    return f"; did you mean {close[0]}?" if close else ""


def _keys(info: Any) -> list[str]:
    keys = [field.encode_name for field in info.fields]
    if info.tag_field is not None:
        keys.append(info.tag_field)
    return keys


def _type_at(info: Any, segments: list[str]) -> Any:
    """The msgspec type info at a key path below ``info`` (None when it cannot be told)."""
    for segment in segments:
        if isinstance(info, msgspec.inspect.UnionType):
            members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            structs = [
                t
                for t in members
                if isinstance(t, msgspec.inspect.StructType)
                and (segment.startswith("[") or segment in _keys(t))
            ]
            info = (structs or members or [None])[0]
        if isinstance(info, msgspec.inspect.StructType):
            fields = {field.encode_name: field.type for field in info.fields}
            if segment not in fields:
                return None
            info = fields[segment]
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType):
            info = info.item_type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.VarTupleType):
            info = info.item_type
        else:
            return None
    if isinstance(info, msgspec.inspect.UnionType):
        literal = [t for t in info.types if isinstance(t, msgspec.inspect.LiteralType)]
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        return (literal or structs or [info])[0]
    return info


_SEGMENT = re.compile(r"\[\d+\]|[^.\[]+")
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_ENUM = re.compile(r"Invalid enum value (?P<value>.*)$")
_FIELD_FIRST = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>:? .*)$", re.S)


def _join(base: str, path: str) -> str:
    if not path:
        return base
    if path.startswith("["):
        return base + path
    return f"{base}.{path}" if base else path


def _friendly(error: msgspec.ValidationError, cls: type, base: str, source: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" for ``inputs[0]`` becomes
    "agent.toml: inputs[0].port: expected int, got str", with the allowed values of an enum,
    the nearest key to an unknown one, and a struct's own check moved to the key it names."""
    match = _AT.match(str(error))
    assert match is not None
    what, path = match.group("what"), (match.group("path") or "").lstrip(".")
    segments = _SEGMENT.findall(path)
    root = msgspec.inspect.type_info(cls)
    unknown = _UNKNOWN.match(what)
    if unknown:
        key = unknown.group("key")
        here = _type_at(root, segments)
        hint = _suggest(key, _keys(here)) if isinstance(here, msgspec.inspect.StructType) else ""
        return f"{source}: {_join(base, _join(path, key))}: unknown key{hint}"
    missing = _MISSING.match(what)
    if missing:
        return (
            f"{source}: {_join(base, _join(path, missing.group('key')))}: required key is missing"
        )
    enum = _ENUM.match(what)
    if enum:
        here = _type_at(root, segments)
        if isinstance(here, msgspec.inspect.LiteralType):
            allowed = ", ".join(repr(v) for v in here.values)
            value = enum.group("value")
            where = _join(base, path)
            return f"{source}: {where}: {value} is not allowed; expected one of {allowed}"
    here = _type_at(root, segments)
    if isinstance(here, msgspec.inspect.StructType):
        # A struct's own check ("max_bytes (10) must be at least ...", "retry_max: ..."):
        # when it starts with one of the struct's keys, the message belongs to that key.
        first = _FIELD_FIRST.match(what)
        if first and first.group("key") in _keys(here):
            path = _join(path, first.group("key"))
            rest = first.group("rest")
            what = rest[2:] if rest.startswith(": ") else what
    text = what.replace("`", "") if "Expected" in what or "Invalid" in what else what
    text = (
        text[0].lower() + text[1:] if text and text[:1].isupper() and text[1:2].islower() else text
    )
    return f"{source}: {_join(base, path) or '(top level)'}: {text}"


# ------------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, source: str, environment: bool) -> None:
        self.source = source
        self.environment = environment
        self.problems: list[str] = []
        self.skipped: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{self.source}: {path}: {text}")

    def table(self, raw: Any, path: str, family: str | None, cls: type | None) -> Any:
        """One section or component table, every problem in it recorded; None if invalid."""
        if not isinstance(raw, dict):
            shape = "[[" + family + "]]" if family else "[" + path + "]"
            self.problem(path, f"expected a table ({shape}), got {_toml_kind(raw)}")
            return None
        if family is not None:
            registry = _FAMILIES[family]()
            kind = raw.get("type")
            if kind is None:
                self.problem(
                    f"{path}.type", f"required key is missing; expected one of {sorted(registry)}"
                )
                return None
            if not isinstance(kind, str) or kind not in registry:
                hint = _suggest(kind, list(registry)) if isinstance(kind, str) else ""
                self.problem(
                    f"{path}.type",
                    f"invalid value {kind!r}; expected one of {sorted(registry)}{hint}",
                )
                return None
            cls = registry[kind][0]
            if family == "outputs":
                needs = missing_extra(kind)
                if needs:
                    self.problem(path, needs)
        assert cls is not None
        info: Any = msgspec.inspect.type_info(cls)
        known = _keys(info)
        raw = dict(raw)
        for key in [k for k in raw if k not in known]:
            self.problem(f"{path}.{key}", "unknown key" + _suggest(key, known))
            del raw[key]
        try:
            # strict=False lets "${WORKERS}"-style strings from the environment fill int fields.
            return msgspec.convert(raw, cls, strict=False, dec_hook=config_dec_hook)
        except msgspec.ValidationError:
            pass
        kept = raw
        if _holds_placeholder(raw):
            # Placeholders left as written (--no-environment, or a variable reported unset)
            # may not fit their key (a number, a URL): such keys take their defaults, so the
            # rest of the table is still checked.
            defaults = {f.encode_name for f in info.fields if f.required is False}
            kept = {k: v for k, v in raw.items() if not (k in defaults and _holds_placeholder(v))}
            if kept != raw:
                try:
                    return msgspec.convert(kept, cls, strict=False, dec_hook=config_dec_hook)
                except msgspec.ValidationError:
                    pass
            # Checks that combine keys may trip over a value that is still a placeholder: the
            # table's keys and types are checked, its cross-key checks are skipped (with the
            # environment, the unset variable is already reported; without, --check says so).
            for candidate in (raw, kept):
                try:
                    table: Any = msgspec.convert(
                        candidate, _unchecked(cls), strict=False, dec_hook=config_dec_hook
                    )
                except msgspec.ValidationError:
                    continue
                if not self.environment:
                    self.skipped.append(path)
                return table
        self._every_problem(kept, cls, info, path)
        return None

    def _every_problem(self, raw: dict[str, Any], cls: type, info: Any, path: str) -> None:
        """Record the table's problems: msgspec stops at the first, so a key with a wrong value
        is set aside (when it has a default) and the rest converted again, until the rest
        converts or a check of the struct itself (which needs every key) refuses it."""
        optional = {f.encode_name for f in info.fields if f.required is False}
        candidate = dict(raw)
        for _ in range(len(raw) + 1):
            try:
                msgspec.convert(candidate, cls, strict=False, dec_hook=config_dec_hook)
                return
            except msgspec.ValidationError as exc:
                self.problems.append(_friendly(exc, cls, path, self.source))
                located = _AT.match(str(exc))
                where = (located.group("path") or "").lstrip(".") if located else ""
                key = _SEGMENT.findall(where)[0] if where else None
                if key is None or key not in optional or key not in candidate:
                    return
                del candidate[key]


@cache
def _unchecked(cls: type) -> type:
    """``cls`` without its ``__post_init__`` checks (--no-environment, placeholders in the way)."""
    return type(cls.__name__, (cls,), {"__post_init__": lambda self: None})


def _toml_kind(value: Any) -> str:
    kinds = [(bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string")]
    kinds += [(list, "an array"), (dict, "a table")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date or time")


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return _UNRESOLVED.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_placeholder(v) for v in value)
    return False


def parse_config(
    text: str,
    source: str = "agent.toml",
    *,
    environment: bool = True,
    unresolved: list[str] | None = None,
) -> Any:
    """Validate a config text; raises ConfigError listing every problem for the user.

    ``environment=False`` (``--no-environment``) checks a config whose variables may not be
    set: a ``${VAR}`` whose variable is unset is accepted as written, a key whose value holds
    one is checked only for existing (and its table's cross-key checks are skipped), and
    ``unresolved`` (if given) receives each such key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    interpolate = _Interpolation(source, environment)
    raw = interpolate(raw, "")
    parser = _Parser(source, environment)
    parser.problems.extend(interpolate.problems)
    for key in raw:
        if key not in _TOP_LEVEL:
            near = _suggest(key, _TOP_LEVEL)
            for name in _TOP_LEVEL:  # as the user writes it: [buffer], [[inputs]]
                shape = f"[{name}]" if name in _SECTIONS else f"[[{name}]]"
                near = near.replace(f"mean {name}?", f"mean {shape}?")
            parser.problem(key, "unknown key" + near)
    values: dict[str, Any] = {}
    for key, cls in _SECTIONS.items():
        values[key] = parser.table(raw.get(key, {}), key, None, cls)
    for family in ("inputs", "filters", "outputs"):
        items = raw.get(family)
        if items is None:
            if family != "filters":
                parser.problem(
                    family, f"required key is missing; add at least one [[{family}]] table"
                )
            values[family] = []
            continue
        if not isinstance(items, list):
            got = f"a table ([{family}])" if isinstance(items, dict) else _toml_kind(items)
            parser.problem(family, f"expected an array of tables ([[{family}]]), got {got}")
            values[family] = []
            continue
        values[family] = [
            parser.table(item, f"{family}[{i}]", family, None) for i, item in enumerate(items)
        ]
    parser.problems.extend(_name_components(values, source))
    if parser.problems:
        raise ConfigError(_dedupe(parser.problems))
    config = config_type()(**values)
    if unresolved is not None:
        unresolved.extend(interpolate.unresolved)
        unresolved.extend(
            f"{path}: checks across its keys skipped (a placeholder is in the way)"
            for path in parser.skipped
        )
    return config


def _dedupe(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))


def load_config(path: str, *, environment: bool = True, unresolved: list[str] | None = None) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return parse_config(text, path, environment=environment, unresolved=unresolved)


def default_config_text() -> str:
    return resources.files("agent").joinpath("default.toml").read_text(encoding="utf-8")


def _name_components(values: dict[str, Any], source: str) -> list[str]:
    """Give every component its default name ("<type>.<position>"); the problems of names
    used twice in a family. A table that failed validation (None) is skipped."""
    problems = []
    for family in ("inputs", "filters", "outputs"):
        seen: dict[str, str] = {}
        for position, component in enumerate(values[family]):
            if component is None:
                continue
            kind = component.__struct_config__.tag
            if not component.name:
                component.name = f"{kind}.{position}"
            where = f"{family}[{position}].name"
            if component.name in seen:
                problems.append(
                    f"{source}: {where}: name {component.name!r} is already used by "
                    f"{seen[component.name]}"
                )
            seen[component.name] = where
    return problems


@contextlib.contextmanager
def component_errors(source: str, where: str | None) -> Iterator[None]:
    """The one path from a component that refuses its config (a check of its struct, a bad
    regex found while building, a missing optional package) to a ``ConfigError`` that names
    the file and the component. Every component is built inside it."""
    try:
        yield
    except ConfigError:
        raise
    except msgspec.ValidationError as exc:
        raise ConfigError(_prefix(source, where) + str(exc)) from None
    except (ValueError, TypeError, ImportError) as exc:
        text = str(exc)
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            text = extra_hint(exc.name) or text
        raise ConfigError(_prefix(source, where) + text) from None


def _prefix(source: str, where: str | None) -> str:
    return f"{source}: {where}: " if where else f"{source}: "
