"""fluent-bit's YAML format: ``env``, ``includes``, ``service``, ``parsers``,
``multiline_parsers``, ``pipeline: {inputs, filters, outputs}``. Needs PyYAML, an optional
extra (``pip install 'container-audit-agent[convert]'``); the classic format needs nothing."""

from __future__ import annotations

import os
from typing import Any

from agent.convert.model import ConvertError, FluentBitConfig, Section, substitute

_MAX_DEPTH = 16
_PIPELINE = {"inputs": "input", "filters": "filter", "outputs": "output"}


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ConvertError(
            "reading fluent-bit's YAML format needs PyYAML: pip install "
            "'container-audit-agent[convert]' (the classic format needs nothing)"
        ) from None
    return yaml


class _YamlReader:
    def __init__(self, config: FluentBitConfig) -> None:
        self.config = config
        self.variables: dict[str, str] = {}
        self.yaml = _yaml()

    def substitute(self, value: str, file: str = "", line: int = 0) -> str:
        return substitute(value, self.variables, self.config, file, line)

    def read(self, path: str, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            raise ConvertError(f"{path}: includes nested more than {_MAX_DEPTH} deep (a loop?)")
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                root = self.yaml.compose(handle)
        except OSError as exc:
            raise ConvertError(f"cannot read {path}: {exc.strerror or exc}") from None
        except self.yaml.YAMLError as exc:
            raise ConvertError(f"{path}: not valid YAML: {exc}") from None
        if root is None:
            return
        if not isinstance(root, self.yaml.MappingNode):
            raise ConvertError(f"{path}:{root.start_mark.line + 1}: expected a mapping at the top")
        for key_node, value in root.value:
            key = str(key_node.value).lower()
            line = key_node.start_mark.line + 1
            if key == "env":
                for name, item in self._pairs(value, path):
                    self.variables[name] = self.substitute(self._scalar(item))
            elif key == "includes":
                for item in self._items(value, path):
                    target = self.substitute(self._scalar(item))
                    base = os.path.dirname(os.path.abspath(path))
                    full = target if os.path.isabs(target) else os.path.join(base, target)
                    if not os.path.exists(full):
                        raise ConvertError(
                            f"{path}:{item.start_mark.line + 1}: include {target}: no such file"
                        )
                    self.read(full, depth + 1)
            elif key == "service":
                self.config.add(self._section("service", value, path, line))
            elif key in ("parsers", "multiline_parsers"):
                kind = key[:-1]
                for item in self._items(value, path):
                    self.config.add(self._section(kind, item, path, item.start_mark.line + 1))
            elif key == "pipeline":
                for name, items in self._pairs(value, path):
                    family = _PIPELINE.get(name.lower())
                    for item in self._items(items, path):
                        item_line = item.start_mark.line + 1
                        self.config.add(
                            self._section(family or name.lower(), item, path, item_line)
                        )
            else:
                self.config.add(self._section(key, value, path, line))

    def _pairs(self, node: Any, path: str) -> list[tuple[str, Any]]:
        if not isinstance(node, self.yaml.MappingNode):
            raise ConvertError(f"{path}:{node.start_mark.line + 1}: expected a mapping")
        return [(str(k.value), v) for k, v in node.value]

    def _items(self, node: Any, path: str) -> list[Any]:
        if isinstance(node, self.yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        if not isinstance(node, self.yaml.SequenceNode):
            raise ConvertError(f"{path}:{node.start_mark.line + 1}: expected a list")
        return list(node.value)

    def _scalar(self, node: Any) -> str:
        if isinstance(node, self.yaml.ScalarNode):
            return str(node.value)
        return self.yaml.serialize(node).strip()

    def _section(self, kind: str, node: Any, path: str, line: int) -> Section:
        section = Section(kind, path, line)
        if not isinstance(node, self.yaml.MappingNode):
            # a section written as something else: kept whole, reported as not translated
            section.add(kind, self._scalar(node), path, line)
            return section
        for key_node, value in node.value:
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if key.lower() == "rules" and kind == "multiline_parser":
                for rule in self._items(value, path):
                    fields = dict(self._pairs(rule, path))
                    parts = [
                        self._scalar(fields.get(k)) if k in fields else ""
                        for k in ("state", "regex", "next_state")
                    ]
                    text = " ".join(f'"{part}"' for part in parts)
                    section.add("rule", text, path, rule.start_mark.line + 1)
            elif isinstance(value, self.yaml.SequenceNode) and all(
                isinstance(item, self.yaml.ScalarNode) for item in value.value
            ):
                # a repeated key (grep's regex, modify's add, ...) written as a list
                for item in value.value:
                    section.add(
                        key,
                        self.substitute(str(item.value), path, item.start_mark.line + 1),
                        path,
                        item.start_mark.line + 1,
                    )
            elif isinstance(value, self.yaml.MappingNode) and key.lower() != "processors":
                # storage: {path: ...} is storage.path
                nested = self._section(kind, value, path, key_line)
                for entry in nested.entries:
                    section.add(f"{key}.{entry.key}", entry.value, entry.file, entry.line)
            else:
                section.add(
                    key, self.substitute(self._scalar(value), path, key_line), path, key_line
                )
        return section


def read_yaml_into(config: FluentBitConfig, path: str) -> None:
    _YamlReader(config).read(path)
