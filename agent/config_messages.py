"""How config problems are phrased: msgspec's validation errors turned into
"file: key.path: what is wrong", with the allowed values and the nearest known key."""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec


def suggest(key: str, known: list[str]) -> str:
    """ "; did you mean chunk_bytes?" for the nearest known key, or ""."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close and key.rstrip("s") + "s" in known:
        close = [key.rstrip("s") + "s"]
    return f"; did you mean {close[0]}?" if close else ""


def struct_keys(info: Any) -> list[str]:
    keys = [field.encode_name for field in info.fields]
    if info.tag_field is not None:
        keys.append(info.tag_field)
    return keys


def type_at(info: Any, segments: list[str]) -> Any:
    """The msgspec type info at a key path below ``info`` (None when it cannot be told)."""
    for segment in segments:
        if isinstance(info, msgspec.inspect.UnionType):
            members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            structs = [
                t
                for t in members
                if isinstance(t, msgspec.inspect.StructType)
                and (segment.startswith("[") or segment in struct_keys(t))
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


SEGMENT = re.compile(r"\[\d+\]|[^.\[]+")
AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_ENUM = re.compile(r"Invalid enum value (?P<value>.*)$")
_FIELD_FIRST = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>:? .*)$", re.S)


def join_path(base: str, path: str) -> str:
    if not path:
        return base
    if path.startswith("["):
        return base + path
    return f"{base}.{path}" if base else path


def friendly(error: msgspec.ValidationError, cls: type, base: str, source: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" for ``inputs[0]`` becomes
    "agent.toml: inputs[0].port: expected int, got str", with the allowed values of an enum,
    the nearest key to an unknown one, and a struct's own check moved to the key it names."""
    match = AT.match(str(error))
    assert match is not None
    what, path = match.group("what"), (match.group("path") or "").lstrip(".")
    segments = SEGMENT.findall(path)
    root = msgspec.inspect.type_info(cls)
    unknown = _UNKNOWN.match(what)
    if unknown:
        key = unknown.group("key")
        here = type_at(root, segments)
        hint = (
            suggest(key, struct_keys(here)) if isinstance(here, msgspec.inspect.StructType) else ""
        )
        return f"{source}: {join_path(base, join_path(path, key))}: unknown key{hint}"
    missing = _MISSING.match(what)
    if missing:
        where = join_path(base, join_path(path, missing.group("key")))
        return f"{source}: {where}: required key is missing"
    enum = _ENUM.match(what)
    if enum:
        here = type_at(root, segments)
        if isinstance(here, msgspec.inspect.LiteralType):
            allowed = ", ".join(repr(v) for v in here.values)
            value = enum.group("value")
            where = join_path(base, path)
            return f"{source}: {where}: {value} is not allowed; expected one of {allowed}"
    here = type_at(root, segments)
    if isinstance(here, msgspec.inspect.StructType):
        # A struct's own check ("max_bytes (10) must be at least ...", "retry_max: ..."):
        # when it starts with one of the struct's keys, the message belongs to that key.
        first = _FIELD_FIRST.match(what)
        if first and first.group("key") in struct_keys(here):
            path = join_path(path, first.group("key"))
            rest = first.group("rest")
            what = rest[2:] if rest.startswith(": ") else what
    text = what.replace("`", "") if "Expected" in what or "Invalid" in what else what
    text = (
        text[0].lower() + text[1:] if text and text[:1].isupper() and text[1:2].islower() else text
    )
    return f"{source}: {join_path(base, path) or '(top level)'}: {text}"


def toml_kind(value: Any) -> str:
    kinds = [(bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string")]
    kinds += [(list, "an array"), (dict, "a table")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "a date or time")
