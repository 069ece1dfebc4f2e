"""fluent-bit's classic format: ``[SECTION]`` headers, ``Key Value`` lines, ``@INCLUDE`` (globs
relative to the including file), ``@SET NAME=value`` and ``${NAME}`` references to them.
A ``${NAME}`` that no ``@SET`` defines is an environment variable: kept as written, which our
config resolves from the environment the same way."""

from __future__ import annotations

import glob
import os
import re

from agent.convert.model import ConvertError, FluentBitConfig, Section, substitute

_HEADER = re.compile(r"^\[\s*([A-Za-z_]+)\s*\]$")
_MAX_DEPTH = 16


class ClassicReader:
    def __init__(self, config: FluentBitConfig) -> None:
        self.config = config
        self.variables: dict[str, str] = {}
        self.root: str | None = None
        """Directory of the main file: an @INCLUDE not found beside the including file is
        looked for there too (fluent-bit resolves includes against the main file)."""

    def substitute(self, value: str, file: str = "", line: int = 0) -> str:
        return substitute(value, self.variables, self.config, file, line)

    def read(self, path: str, depth: int = 0, parsers_only: bool = False) -> None:
        if depth > _MAX_DEPTH:
            raise ConvertError(f"{path}: @INCLUDE nested more than {_MAX_DEPTH} deep (a loop?)")
        if self.root is None:
            self.root = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            raise ConvertError(f"cannot read {path}: {exc.strerror or exc}") from None
        section: Section | None = None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            lowered = line.lower()
            if lowered.startswith("@include"):
                pattern = self.substitute(line[len("@include") :].strip(), path, number)
                self.include(path, number, pattern, depth)
                continue
            if lowered.startswith("@set"):
                name, sep, value = line[len("@set") :].strip().partition("=")
                if not sep or not name.strip():
                    raise ConvertError(f"{path}:{number}: expected @SET NAME=value, got {line!r}")
                self.variables[name.strip()] = self.substitute(value.strip(), path, number)
                continue
            header = _HEADER.match(line)
            if header:
                section = Section(header.group(1).lower(), path, number)
                self.config.add(section)
                continue
            if section is None:
                raise ConvertError(
                    f"{path}:{number}: {line!r} is outside any [SECTION] (expected [SERVICE], "
                    "[INPUT], [FILTER], [OUTPUT], [PARSER] or [MULTILINE_PARSER])"
                )
            key, _, value = line.partition(" ")
            if "\t" in key:
                key, _, rest = key.partition("\t")
                value = rest + " " + value
            section.add(key.strip(), self.substitute(value.strip(), path, number), path, number)

    def include(self, path: str, number: int, pattern: str, depth: int) -> None:
        base = os.path.dirname(os.path.abspath(path))
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        matches = sorted(glob.glob(full))
        if not matches and not os.path.isabs(pattern) and self.root and self.root != base:
            matches = sorted(glob.glob(os.path.join(self.root, pattern)))
        if not matches and not glob.has_magic(full):
            raise ConvertError(f"{path}:{number}: @INCLUDE {pattern}: no such file")
        for match in matches:
            self.read(match, depth + 1)
