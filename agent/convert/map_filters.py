"""fluent-bit [FILTER] sections -> the agent's filters."""

from __future__ import annotations

from typing import Any

from agent.convert.mapping_base import MapperBase, Note, parse_bool
from agent.convert.model import Section


class FilterMapping(MapperBase):
    # ------------------------------------------------------------------ filters

    def filter(self, section: Section) -> None:
        plugin = section.plugin
        method = getattr(self, f"filter_{plugin.replace('-', '_')}", None)
        if method is None:
            what = {"lua": "Lua scripts", "wasm": "WASM filters"}.get(plugin, "this filter")
            self.note(
                section,
                None,
                f"[FILTER] {plugin or '(no Name)'}: {what} cannot be "
                'translated; a [[filters]] type = "python" function can do the same',
            )
            return
        target: dict[str, Any] = {"type": plugin}
        self.common(section, target, selector=True)
        if "match" not in target and "match_regex" not in target:
            self.note(
                section,
                None,
                f"[FILTER] {plugin} without Match: fluent-bit applies it "
                "to no record; not written (an agent filter without match takes every tag)",
            )
            for entry in section.entries:
                section.used.add(entry.key.lower())
            return
        extra = method(section, target)
        if extra is not False:
            self.filters.append(target)
        self.finish_section(section, f"[FILTER] {plugin}")

    def _key_value(self, entry_value: str) -> tuple[str, str]:
        key, _, value = entry_value.strip().partition(" ")
        return key, value.strip()

    def filter_grep(self, section: Section, target: dict[str, Any]) -> None:
        for key in ("regex", "exclude"):
            rules = []
            for entry in section.all(key):
                field_name, pattern = self._key_value(entry.value)
                rules.append([self.field(field_name), pattern])
            if rules:
                target[key] = rules
        op = section.get("logical_op")
        if op and op.lower() in ("and", "or", "legacy"):
            target["logical_op"] = op.lower()

    _MODIFY_RULES = (
        "set",
        "add",
        "remove",
        "remove_wildcard",
        "remove_regex",
        "rename",
        "hard_rename",
        "copy",
        "hard_copy",
        "move_to_start",
        "move_to_end",
    )
    _MODIFY_FIELDS = {"set", "add", "remove", "rename", "hard_rename", "copy", "hard_copy"}
    _CONDITIONS = {
        "key_exists": 1,
        "key_does_not_exist": 1,
        "a_key_matches": 1,
        "no_key_matches": 1,
        "key_value_equals": 2,
        "key_value_does_not_equal": 2,
        "key_value_matches": 2,
        "key_value_does_not_match": 2,
        "matching_keys_have_matching_values": 2,
        "matching_keys_do_not_have_matching_values": 2,
    }

    def filter_modify(self, section: Section, target: dict[str, Any]) -> None:
        rules: list[list[Any]] = []
        conditions: list[list[Any]] = []
        for entry in section.entries:
            key = entry.key.lower()
            if key in self._MODIFY_RULES:
                section.used.add(key)
                first, rest = self._key_value(entry.value)
                if key in ("set", "add"):
                    rules.append([key, self.field(first), rest])
                elif key in ("rename", "hard_rename", "copy", "hard_copy"):
                    rules.append([key, self.field(first), self.field(rest)])
                elif key == "remove":
                    rules.append([key, self.field(first)])
                else:
                    rules.append([key, entry.value.strip()])
            elif key == "condition":
                section.used.add(key)
                name, rest = self._key_value(entry.value)
                arity = self._CONDITIONS.get(name.lower())
                if arity is None:
                    self.result.notes.append(
                        Note(entry.file, entry.line, f"[FILTER] modify: Condition {name}: unknown")
                    )
                    continue
                args = [rest] if arity == 1 else list(self._key_value(rest))
                if name.lower() in (
                    "key_exists",
                    "key_does_not_exist",
                    "key_value_equals",
                    "key_value_does_not_equal",
                    "key_value_matches",
                    "key_value_does_not_match",
                ):
                    args[0] = self.field(args[0])
                conditions.append([name.lower(), *args])
        target["rules"] = rules
        if conditions:
            target["condition"] = conditions

    def filter_record_modifier(self, section: Section, target: dict[str, Any]) -> None:
        records = []
        for entry in section.all("record"):
            key, value = self._key_value(entry.value)
            records.append([self.field(key), self.template(value)])
        if records:
            target["record"] = records
        removes = [self.field(e.value) for e in section.all("remove_key")]
        if removes:
            target["remove_keys"] = removes
        allow = [
            e.value.strip() for e in section.all("allowlist_key") + section.all("whitelist_key")
        ]
        if allow:
            target["allowlist_keys"] = allow
        uuid = section.entry("uuid_key")
        if uuid:
            self.note(section, "uuid_key", f"UUID_key {uuid.value}: no equivalent")

    def filter_rewrite_tag(self, section: Section, target: dict[str, Any]) -> None:
        rules: list[list[Any]] = []
        for entry in section.all("rule"):
            parts = entry.value.split()
            if len(parts) < 3:
                self.result.notes.append(
                    Note(
                        entry.file,
                        entry.line,
                        f"[FILTER] rewrite_tag: Rule {entry.value}: expected KEY REGEX TAG KEEP",
                    )
                )
                continue
            key, regex, tag = parts[0], " ".join(parts[1:-2]) if len(parts) > 3 else parts[1], None
            if len(parts) > 3:
                tag, keep_text = parts[-2], parts[-1]
            else:
                tag, keep_text = parts[2], "false"
            keep = bool(parse_bool(keep_text))
            rules.append([self.field(key), regex, self.template(tag), keep])
        target["rules"] = rules

    def filter_throttle(self, section: Section, target: dict[str, Any]) -> None:
        rate = self.number(section, "rate", 1)
        window = self.number(section, "window", 5)
        interval = self.duration(section, "interval")
        seconds = interval if isinstance(interval, int | float) else 1
        target["rate"] = rate * window
        target["window"] = seconds * window
        status = self.flag(section, "print_status")
        if status is not None:
            target["print_status"] = status
        self.note(
            section,
            None,
            f"[FILTER] throttle: Rate {rate} per Interval averaged over "
            f"Window {window} becomes rate = {rate * window} per window = "
            f"{seconds * window}s (a sliding window, no slow start)",
            left_out=False,
        )

    def filter_nest(self, section: Section, target: dict[str, Any]) -> None:
        operation = (section.get("operation") or "nest").lower()
        target["operation"] = operation
        if operation == "nest":
            target["wildcard"] = [e.value.strip() for e in section.all("wildcard")]
            target["nest_under"] = self.field(section.get("nest_under") or "")
        else:
            target["nested_under"] = self.field(section.get("nested_under") or "")
        for key in ("add_prefix", "remove_prefix"):
            value = section.get(key)
            if value:
                target[key] = value

    def filter_parser(self, section: Section, target: dict[str, Any]) -> None:
        key = section.get("key_name") or "log"
        target["key_name"] = self.field(key)
        names = [e for e in section.all("parser")]
        if names:
            parsed = self.parser_filter(section, "parser", names[0].value.strip())
            if parsed:
                target.update(parsed)
            for extra in names[1:]:
                self.result.notes.append(
                    Note(
                        extra.file,
                        extra.line,
                        f"[FILTER] parser: Parser {extra.value}: only the "
                        'first parser is tried; add another [[filters]] type = "parser"',
                    )
                )
        if "format" not in target:
            return False  # type: ignore[return-value]
        reserve = self.flag(section, "reserve_data")
        target["reserve_data"] = bool(reserve)
        preserve = self.flag(section, "preserve_key")
        if preserve is not None:
            target["preserve_key"] = preserve
        return None

    def filter_multiline(self, section: Section, target: dict[str, Any]) -> Any:
        key = section.get("multiline.key_content") or "log"
        made = False
        for entry in section.all("multiline.parser"):
            for name in (n.strip() for n in entry.value.split(",") if n.strip()):
                if name.lower() in ("cri", "docker"):
                    self.note(
                        section,
                        entry.key,
                        f"multiline.parser {name}: partial lines are "
                        "joined by the tail input's format",
                        left_out=False,
                    )
                    continue
                extra = self.multiline_start(section, entry.key, name)
                if extra is not None and not made:
                    target.update(extra)
                    target["key"] = self.field(key)
                    made = True
        flush_ms = self.duration(section, "flush_ms", "ms")
        if flush_ms is not None and made:
            target["flush_timeout"] = flush_ms
        mode = section.entry("mode")
        if mode and mode.value.strip().lower() == "partial_message":
            self.note(
                section,
                "mode",
                "mode partial_message: Docker's and CRI's partial lines "
                "are joined by the tail input's format (docker, cri), not by a filter",
                left_out=not self.has_tail,
            )
        return None if made else False

    def filter_kubernetes(self, section: Section, target: dict[str, Any]) -> None:
        self.copy(
            section,
            target,
            (
                ("kube_url", "kube_url"),
                ("kube_ca_file", "kube_ca_file"),
                ("kube_token_file", "kube_token_file"),
            ),
        )
        self.copy_flags(
            section,
            target,
            (
                ("labels", "labels"),
                ("annotations", "annotations"),
                ("tls.verify", "tls_verify"),
            ),
        )
        merge = self.flag(section, "merge_log")
        if merge:
            parser: dict[str, Any] = {
                "type": "parser",
                "format": "json",
                "key_name": "message",
                "reserve_data": True,
            }
            if "match" in target:
                parser["match"] = target["match"]
            keep = self.flag(section, "keep_log")
            parser["preserve_key"] = True if keep is None else keep
            merge_key = section.get("merge_log_key")
            if merge_key:
                parser["target_key"] = merge_key
            self.pending_after = parser
            self.note(
                section,
                "merge_log",
                'Merge_Log On: a [[filters]] type = "parser" '
                "(json on message) follows the kubernetes filter",
                left_out=False,
            )
        for key in (
            "k8s-logging.parser",
            "k8s-logging.exclude",
            "use_kubelet",
            "kubelet_port",
            "merge_parser",
            "kube_meta_cache_ttl",
            "namespace_labels",
        ):
            entry = section.entry(key)
            if entry and (parse_bool(entry.value) is not False):
                self.note(
                    section,
                    key,
                    f"{entry.key} {entry.value}: no equivalent in the agent's kubernetes filter",
                )
