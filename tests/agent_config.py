"""The agent's TOML config for tests that run it as a process, built from Python values.

``agent_toml(tmp_path, syslog_input("tcp", port))`` is a whole config: data_dir under
``tmp_path``, a 200 ms buffer flush (records show up quickly), one file output of every tag to
``tmp_path / "out.ndjson"``. Tests pass only what they are about. ``[agent] http_listen`` is left
out: ``AgentProcess`` sets it to a port it watches. Tests about the TOML text itself (config
errors, examples, convert) keep theirs spelled out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

Table = Mapping[str, object]

BUFFER: Table = {"flush_interval": "200ms"}
"""The buffer a test gets unless it says otherwise: chunks seal quickly, records arrive soon."""

PATIENT_OUTPUT: Table = {"retry_base": "50ms", "retry_max": "500ms", "retry_limit": "unlimited"}
"""An output that retries quickly and forever: what delivery tests hold records back with."""


def agent_toml(
    tmp_path: Path,
    *inputs: Table,
    outputs: Sequence[Table] | None = None,
    filters: Sequence[Table] = (),
    agent: Table | None = None,
    buffer: Table | None = None,
    data_dir: Path | None = None,
) -> str:
    """A whole config. ``agent`` and ``buffer`` keys are added to the defaults (and win);
    ``outputs`` default to one file output of every tag to ``tmp_path / "out.ndjson"``."""
    if outputs is None:
        outputs = [file_output(tmp_path / "out.ndjson")]
    parts = [
        table("agent", {"data_dir": data_dir or tmp_path / "data", **(agent or {})}),
        table("buffer", {**BUFFER, **(buffer or {})}),
        *(table("[inputs]", keys) for keys in inputs),
        *(table("[filters]", keys) for keys in filters),
        *(table("[outputs]", keys) for keys in outputs),
    ]
    return "".join(parts)


def syslog_input(
    mode: str = "tcp", port: int | None = None, *, path: Path | str | None = None, **keys: object
) -> Table:
    """A syslog input on ``127.0.0.1:port`` (or the unix socket ``path``)."""
    where = {"path": path} if path is not None else {"listen": f"127.0.0.1:{port}"}
    return {"type": "syslog", "mode": mode, **where, **keys}


def tail_input(paths: Sequence[Path | str], **keys: object) -> Table:
    """A tail input of ``paths`` (globs)."""
    return {"type": "tail", "paths": [str(path) for path in paths], **keys}


def file_output(path: Path, match: str = "*", /, **keys: object) -> Table:
    """A file output of the tags ``match`` selects to ``path``. ``path`` and ``match`` are
    positional only, so a table of output keys unpacked into ``keys`` (``**PATIENT_OUTPUT``)
    type-checks; ``match=`` given by name lands in ``keys`` and wins, the same table."""
    return {"type": "file", "match": match, "path": path, **keys}


def table(name: str, keys: Table) -> str:
    """``[name]`` and its keys; ``name`` in brackets (``"[inputs]"``) makes an array entry."""
    lines = [f"[{name}]", *(f"{key} = {value(item)}" for key, item in keys.items())]
    return "\n".join(lines) + "\n"


def value(item: object) -> str:
    """A TOML value: JSON's strings (escapes included) and numbers are TOML's too."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, Path):
        return json.dumps(str(item))
    if isinstance(item, Mapping):
        return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + " }"
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    return json.dumps(item)
