"""Loading agent.toml: TOML -> ``${ENV}`` interpolation -> msgspec structs, with errors that name
the file, the key path and what was expected.

Every problem in the file is reported at once: each section and each component table is
validated on its own, so one bad key does not hide the next. A component's own checks live in
its config struct (``__post_init__`` raising ValueError phrased for the user); building a
component goes through ``agent.components.build`` inside ``component_errors``, the one place
where anything a component refuses becomes a ``ConfigError``.

Interpolation is in ``agent.interpolation``, the phrasing of problems in
``agent.config_messages``.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any, Literal

import msgspec

from agent.buffer.base import BufferConfig
from agent.components import FAMILIES, ComponentError, missing_extra, refusal, types
from agent.config_messages import AT, SEGMENT, friendly, struct_keys, suggest, toml_kind
from agent.filters.base import FilterConfig
from agent.http import split_host_port
from agent.interpolation import Interpolation, holds_placeholder
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
    inputs = _union([cfg for cfg, _ in types("inputs").values()])
    filters = _union([cfg for cfg, _ in types("filters").values()] or [FilterConfig])
    outputs = _union([cfg for cfg, _ in types("outputs").values()])
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


_SECTIONS: tuple[tuple[str, type], ...] = (("agent", AgentConfig), ("buffer", BufferConfig))
"""The ``[agent]`` and ``[buffer]`` tables: one struct each, every key optional."""
_TOP_LEVEL = [key for key, _ in _SECTIONS] + [family for family, _ in FAMILIES]


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
            self.problem(path, f"expected a table ({shape}), got {toml_kind(raw)}")
            return None
        if family is not None:
            registry = types(family)
            kind = raw.get("type")
            if kind is None:
                self.problem(
                    f"{path}.type", f"required key is missing; expected one of {sorted(registry)}"
                )
                return None
            if not isinstance(kind, str) or kind not in registry:
                hint = suggest(kind, list(registry)) if isinstance(kind, str) else ""
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
        known = struct_keys(info)
        raw = dict(raw)
        for key in [k for k in raw if k not in known]:
            self.problem(f"{path}.{key}", "unknown key" + suggest(key, known))
            del raw[key]
        try:
            # strict=False lets "${WORKERS}"-style strings from the environment fill int fields.
            return msgspec.convert(raw, cls, strict=False, dec_hook=config_dec_hook)
        except msgspec.ValidationError:
            pass
        kept = raw
        if holds_placeholder(raw):
            # Placeholders left as written (--no-environment, or a variable reported unset)
            # may not fit their key (a number, a URL): such keys take their defaults, so the
            # rest of the table is still checked.
            defaults = {f.encode_name for f in info.fields if f.required is False}
            kept = {k: v for k, v in raw.items() if not (k in defaults and holds_placeholder(v))}
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
                self.problems.append(friendly(exc, cls, path, self.source))
                located = AT.match(str(exc))
                where = (located.group("path") or "").lstrip(".") if located else ""
                key = SEGMENT.findall(where)[0] if where else None
                if key is None or key not in optional or key not in candidate:
                    return
                del candidate[key]


@cache
def _unchecked(cls: type) -> type:
    """``cls`` without its ``__post_init__`` checks (--no-environment, placeholders in the way)."""
    return type(cls.__name__, (cls,), {"__post_init__": lambda self: None})


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
    interpolate = Interpolation(source, environment)
    raw = interpolate(raw, "")
    parser = _Parser(source, environment)
    parser.problems.extend(interpolate.problems)
    for key in raw:
        if key not in _TOP_LEVEL:
            near = suggest(key, _TOP_LEVEL)
            for name in _TOP_LEVEL:  # as the user writes it: [buffer], [[inputs]]
                shape = f"[{name}]" if name in dict(_SECTIONS) else f"[[{name}]]"
                near = near.replace(f"mean {name}?", f"mean {shape}?")
            parser.problem(key, "unknown key" + near)
    values: dict[str, Any] = {}
    for key, cls in _SECTIONS:
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
            got = f"a table ([{family}])" if isinstance(items, dict) else toml_kind(items)
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
def component_errors(source: str, where: str | None = None) -> Iterator[None]:
    """The one path from a component that refuses its config to a ``ConfigError`` naming the
    file. ``agent.components.build`` phrases what a component refuses while it is built
    ("filters[2] (grep) 'name': key: problem"); ``where`` names the part for what is raised
    outside it (a filter that cannot start)."""
    try:
        yield
    except ConfigError:
        raise
    except ComponentError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (ValueError, TypeError, ImportError) as exc:
        raise ConfigError(f"{source}: {refusal(where, exc)}") from None
