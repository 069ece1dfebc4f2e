"""``${ENV}`` interpolation of the config's string values, the first step after TOML and before
the values meet their structs (``agent.config``)."""

from __future__ import annotations

import os
import re
from typing import Any

# Environment variables are upper case (``${S3_BUCKET}``) or carry a default
# (``${aws_region:-us-east-1}``); any other ``${...}`` is a record-field template (``${ident}``,
# ``${sd.origin.ip}``) that components render per record, so it is left as written.
_ENV = re.compile(r"\$\{(?:([A-Z_][A-Z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*):-([^}]*))\}")
UNRESOLVED = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")


class Interpolation:
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


def holds_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return UNRESOLVED.search(value) is not None
    if isinstance(value, dict):
        return any(holds_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_placeholder(v) for v in value)
    return False
