"""A fluent-bit configuration's files: the main one (classic or YAML), and the parsers files its
[SERVICE] names, which are classic even beside a YAML main file."""

from __future__ import annotations

import os

from agent.convert.classic import ClassicReader
from agent.convert.model import FluentBitConfig
from agent.convert.yaml_reader import read_yaml_into


def read_classic(path: str) -> FluentBitConfig:
    """The main file, its includes, and the parsers files its [SERVICE] names."""
    config = FluentBitConfig(source=path)
    reader = ClassicReader(config)
    reader.read(path)
    read_parsers_files(config, path, reader)
    return config


def read_parsers_files(config: FluentBitConfig, path: str, reader: ClassicReader | None) -> None:
    """``Parsers_File`` of every [SERVICE], relative to the main file (classic format, both
    for classic and YAML main files)."""
    reader = reader or ClassicReader(config)
    base = os.path.dirname(os.path.abspath(path))
    for service in config.service:
        for entry in service.all("parsers_file"):
            target = entry.value
            full = target if os.path.isabs(target) else os.path.join(base, target)
            if not os.path.exists(full):
                config.missing.append(
                    (
                        entry.file,
                        entry.line,
                        f"Parsers_File {target}: not "
                        "found here; parsers named from it are unknown (the "
                        "built-in names syslog-rfc5424/3164, cri, docker, "
                        "json still translate)",
                    )
                )
                continue
            if full.endswith((".yaml", ".yml")):
                read_yaml_into(config, full)
            else:
                reader.read(full)


def read_yaml(path: str) -> FluentBitConfig:
    """The YAML main file, its includes, and the parsers files its service names."""
    config = FluentBitConfig(source=path)
    read_yaml_into(config, path)
    read_parsers_files(config, path, None)
    return config
