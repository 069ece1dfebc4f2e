"""The configuration reference, generated from the config structs.

Every key is declared once, in its component's config struct: its type and default in the field,
its meaning in the attribute docstring right after it (read here from the class source with
``ast``, inherited fields included). ``python -m agent --print-reference`` prints the whole
reference; ``make docs`` (``python -m agent.reference --write``) writes it to docs/reference.md
and refreshes the generated blocks that README.md and docs/*.md embed between
``<!-- reference:begin NAME -->`` and ``<!-- reference:end -->``. tests/test_reference.py fails
when a committed file differs from what this module prints.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from agent.buffer.base import BufferConfig
from agent.components import FAMILIES
from agent.components import types as registered
from agent.config import AgentConfig
from agent.filters.base import FilterConfig
from agent.inputs.base import InputConfig
from common.units import Duration, Size
from outputs.base import OutputConfig

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path("docs/reference.md")
"""The generated file, relative to the repository root."""

_BEGIN = re.compile(
    r"^<!-- reference:begin (?P<name>[\w.-]+) -->\n.*?^<!-- reference:end -->", re.S | re.M
)
"""A generated block: the markers start their lines (an indented example of them is left alone)."""

_SECTIONS: list[tuple[str, type]] = [("agent", AgentConfig), ("buffer", BufferConfig)]
_BASES: list[tuple[str, type]] = [
    ("inputs", InputConfig),
    ("filters", FilterConfig),
    ("outputs", OutputConfig),
]
"""The keys every component of a family takes (blocks ``inputs.common``, ...)."""


# ------------------------------------------------------------------------------ docstrings


@cache
def _own_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of the fields ``cls`` itself declares (not inherited ones)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    docs: dict[str, str] = {}
    for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Every field's docstring, the nearest class in the MRO that documents it winning (a
    subclass that only changes a default keeps its base's words)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if isinstance(klass, type) and issubclass(klass, msgspec.Struct) and klass is not (
            msgspec.Struct
        ):
            docs.update(_own_docs(klass))
    return docs


def undocumented(cls: type) -> list[str]:
    """The keys of ``cls`` without a docstring."""
    docs = field_docs(cls)
    info: Any = msgspec.inspect.type_info(cls)
    return [f.encode_name for f in info.fields if f.name not in docs]


# ------------------------------------------------------------------------- types, defaults


def _type_name(hint: Any) -> str:
    """A field's annotation in the user's words (TOML types; Literal choices in their order)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " \\| ".join(f"`{_toml(v)}`" for v in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in args if t is not type(None))
    if origin in (list, tuple, set, frozenset):
        return f"array of {_type_name(args[0])}" if args else "array"
    if origin is dict:
        return f"table of {_type_name(args[1])}" if args else "table"
    names = {Duration: "duration", Size: "size", str: "string", int: "integer", float: "number"}
    if hint is bool:
        return "boolean"
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return "table"
    return names.get(hint, "any")


def _fields(cls: type) -> list[Any]:
    """The fields of ``cls``: those its own class declares first, then its bases' (so the keys
    every output or filter takes come last)."""
    info: Any = msgspec.inspect.type_info(cls)
    fields = {f.name: f for f in info.fields}
    order: list[str] = []
    for klass in cls.__mro__:
        for name in getattr(klass, "__annotations__", {}):
            if name in fields and name not in order:
                order.append(name)
    order += [name for name in fields if name not in order]
    return [fields[name] for name in order]


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0:
        return "0s"
    milliseconds = seconds * 1000
    if milliseconds == int(milliseconds):
        return f"{int(milliseconds)}ms"
    return f"{seconds:g}s"


def _size(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return str(count)


def _toml(value: Any) -> str:
    """A default as the user would write it in agent.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return f'"{_duration(float(value))}"'
    if isinstance(value, Size):
        return f'"{_size(int(value))}"' if _size(int(value)) != str(int(value)) else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple | frozenset | set):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _default(field: Any) -> str:
    if field.required:
        return "required"
    factory = field.default_factory
    value = field.default if field.default is not msgspec.NODEFAULT else factory()
    if value is None:
        return "unset"
    return f"`{_toml(value)}`"


# ------------------------------------------------------------------------------ rendering


_CODE = re.compile(r"``(.+?)``|`([^`]+)`")


def _cell(text: str) -> str:
    """A docstring (reStructuredText-ish: ````code````) as one Markdown table cell: code spans
    in single backticks, ``<`` and ``>`` outside them escaped (else a "<type>" is an HTML tag)."""
    text = " ".join(text.split())
    parts, last = [], 0
    for match in _CODE.finditer(text):
        parts.append(_escape(text[last : match.start()]))
        parts.append("`" + (match.group(1) or match.group(2)) + "`")
        last = match.end()
    parts.append(_escape(text[last:]))
    return "".join(parts).replace("|", "\\|")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _summary(cls: type) -> str:
    """The component's own description: its config class's docstring, else its module's."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        doc = sys.modules[cls.__module__].__doc__ or ""
    paragraphs = inspect.cleandoc(doc).split("\n\n") if doc else []
    return " ".join(paragraphs[0].split()) if paragraphs else ""


def key_table(cls: type) -> str:
    """The Markdown table of every key ``cls`` takes."""
    info: Any = msgspec.inspect.type_info(cls)
    docs = field_docs(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    if info.tag_field is not None:
        rows.append(
            f"| `{info.tag_field}` | `{_toml(info.tag)}` | required | selects this component |"
        )
    hints = typing.get_type_hints(cls)
    for field in _fields(cls):
        rows.append(
            f"| `{field.encode_name}` | {_type_name(hints[field.name])} | {_default(field)} | "
            f"{_cell(docs.get(field.name, ''))} |"
        )
    return "\n".join(rows) + "\n"


def _components() -> Iterator[tuple[str, str, type]]:
    """(block name, heading, config struct) of every section and registered component."""
    for section, cls in _SECTIONS:
        yield section, f"`[{section}]`", cls
    for family, _ in FAMILIES:
        for kind, (cls, _) in registered(family).items():
            yield f"{family}.{kind}", f'`[[{family}]]` `type = "{kind}"`', cls


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def blocks() -> dict[str, str]:
    """Every generated block by name: one key table per section and component (``agent``,
    ``buffer``, ``outputs.s3``, ...) and ``index``, the overview the README embeds."""
    result: dict[str, str] = {}
    index = ["| section | what it is |", "|---|---|"]
    for name, heading, cls in _components():
        result[name] = key_table(cls)
        link = f"{REFERENCE.as_posix()}#{_anchor(heading)}"
        first = re.split(r"(?<=\.)\s", _summary(cls), maxsplit=1)[0].rstrip(".")
        index.append(f"| [{heading}]({link}) | {_cell(first)} |")
    result["index"] = "\n".join(index) + "\n"
    for family, base in _BASES:
        result[f"{family}.common"] = key_table(base)
    return result


def render() -> str:
    """The whole reference (docs/reference.md)."""
    parts = [
        "# Configuration reference",
        "",
        "<!-- Generated by `make docs` (python -m agent.reference --write) from the config",
        "     structs and their docstrings: edit those, not this file. -->",
        "",
        "One TOML file. Unknown keys are errors. `${VAR}` and `${VAR:-default}` take values from",
        "the environment. Durations are seconds or strings with a unit (`\"500ms\"`, `\"3s\"`,",
        '`"10m"`); sizes are bytes or strings with a unit (`"64KiB"`, `"2MiB"`, `"1GiB"`).',
        "",
    ]
    family = None
    tables = blocks()
    for name, heading, cls in _components():
        group = name.split(".")[0] if "." in name else "sections"
        if group != family:
            family = group
            title = "Sections" if group == "sections" else f"`[[{group}]]`"
            parts += [f"## {title}", ""]
        parts += [f"### {heading}", ""]
        summary = _summary(cls)
        if summary:
            parts += [summary, ""]
        parts.append(tables[name])
    return "\n".join(parts)


# ------------------------------------------------------------------------------- files


def _embedding_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def refreshed(text: str, tables: dict[str, str], where: str = "") -> str:
    """``text`` with every generated block replaced by what the generator prints now."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in tables:
            raise KeyError(f"{where}: no generated block named {name!r}")
        return f"<!-- reference:begin {name} -->\n{tables[name]}<!-- reference:end -->"

    return _BEGIN.sub(replace, text)


def expected_files(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file and every file embedding a generated block, with the content the
    generator gives it now."""
    tables = blocks()
    files = {root / REFERENCE: render()}
    for path in _embedding_files(root):
        if path in files or not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        if "<!-- reference:begin" in text:
            files[path] = refreshed(text, tables, str(path))
    return files


def stale_files(root: Path = ROOT) -> list[Path]:
    """The files whose committed content differs from what the generator prints."""
    return [
        path
        for path, text in expected_files(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write(root: Path = ROOT) -> list[Path]:
    """Bring every generated file up to date; the files that changed."""
    changed = stale_files(root)
    for path, text in expected_files(root).items():
        if path in changed:
            path.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.reference")
    parser.add_argument(
        "--write", action="store_true", help="update docs/reference.md and the embedded blocks"
    )
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render())
        return 0
    for path in write():
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
