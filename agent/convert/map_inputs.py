"""fluent-bit [INPUT] sections -> the agent's inputs (syslog in every mode, tail)."""

from __future__ import annotations

import re
from typing import Any

from agent.convert.mapping_base import MapperBase, host_port, parse_bool
from agent.convert.model import Section


class InputMapping(MapperBase):
    # ------------------------------------------------------------------ inputs

    def input(self, section: Section, index: int) -> None:
        plugin = section.plugin
        method = getattr(self, f"input_{plugin.replace('-', '_')}", None)
        if method is None:
            self.note(
                section,
                None,
                f"[INPUT] {plugin or '(no Name)'}: no such input in the "
                "agent (it has syslog and tail); not translated",
            )
            return
        target: dict[str, Any] = {"type": plugin}
        tag = section.get("tag")
        target["tag"] = tag if tag else f"{plugin}.{index}"
        self.common(section, target, selector=False)
        method(section, target)
        self.inputs.append(target)
        self.finish_section(section, f"[INPUT] {plugin}")

    def input_syslog(self, section: Section, target: dict[str, Any]) -> None:
        modes = {"udp": "udp", "tcp": "tcp", "unix_udp": "unix_dgram", "unix_tcp": "unix_stream"}
        mode = (section.get("mode") or "unix_udp").lower()
        if mode not in modes:
            self.note(section, "mode", f"Mode {mode}: unknown; unix_dgram written")
            mode = "unix_udp"
        target["mode"] = modes[mode]
        if mode in ("udp", "tcp"):
            host = section.get("listen") or "0.0.0.0"
            port = section.get("port") or "5140"
            target["listen"] = host_port(host, port)
            section.get("path")
        else:
            path = section.get("path")
            if path:
                target["path"] = path
            else:
                self.note(
                    section,
                    None,
                    "[INPUT] syslog: a unix mode without Path; "
                    'path = "/tmp/fluent-bit.sock" written (set the real one)',
                )
                target["path"] = "/tmp/fluent-bit.sock"
            perm = section.get("unix_perm")
            if perm:
                target["socket_mode"] = perm if perm.startswith("0") else "0" + perm
            for key in ("listen", "port"):
                section.get(key)
        parser = section.get("parser")
        if parser:
            fmt = self.parser_format(section, "parser", parser)
            if fmt:
                target["format"] = fmt
        size = self.size(section, "buffer_max_size")
        if size is not None:
            target["max_message_bytes"] = size
        receive = self.size(section, "receive_buffer_size")
        if receive is not None:
            target["receive_buffer_bytes"] = receive
        source = section.get("source_address_key")
        if source:
            target["source_key"] = source

    def input_tail(self, section: Section, target: dict[str, Any]) -> None:
        paths = [p.strip() for e in section.all("path") for p in e.value.split(",") if p.strip()]
        if paths:
            target["paths"] = paths
        excludes = [
            p.strip() for e in section.all("exclude_path") for p in e.value.split(",") if p.strip()
        ]
        if excludes:
            target["exclude"] = excludes
        tag = target["tag"]
        if "*" in tag:
            containers = all(
                p.startswith(("/var/log/containers", "/var/log/pods"))
                for p in paths or ["/var/log/containers"]
            )
            fields = "${namespace_name}.${pod_name}.${container_name}" if containers else "${path}"
            new = tag.replace("*", fields, 1)
            self.note(
                section,
                "tag",
                f"Tag {tag}: '*' (the file's path) becomes {new!r}; a "
                "Match on the old prefix still selects these records",
                left_out=False,
            )
            target["tag"] = new
        self.copy_flags(section, target, (("read_from_head", "read_from_head"),))
        for key, ours in (
            ("refresh_interval", "refresh_interval"),
            ("rotate_wait", "rotate_wait"),
            ("ignore_older", "ignore_older"),
        ):
            seconds = self.duration(section, key)
            if seconds is not None:
                target[ours] = seconds
        size = self.size(section, "buffer_max_size")
        if size is not None:
            target["max_line_bytes"] = size
        path_key = section.get("path_key")
        if path_key:
            target["path_key"] = path_key
        skip = section.entry("skip_long_lines")
        if skip and parse_bool(skip.value):
            self.note(
                section,
                "skip_long_lines",
                "Skip_Long_Lines On: a longer line is cut "
                "at max_line_bytes and flagged truncated (counted), not skipped",
                left_out=False,
            )
        key_entry = section.entry("key")
        if key_entry and key_entry.value != "log":
            self.note(section, "key", f"Key {key_entry.value}: the line is always in message")
        formats: list[str] = []
        entries = section.all("multiline.parser") + section.all("parser")
        for entry in entries:
            for name in (n.strip() for n in entry.value.split(",") if n.strip()):
                lowered = name.lower()
                if lowered in ("cri", "docker"):
                    formats.append(lowered)
                elif lowered.startswith("docker") and self.fb.parsers.get(name) is not None:
                    formats.append("docker")
                else:
                    extra = self.multiline_start(section, entry.key, name)
                    if extra is not None:
                        extra["match"] = re.sub(r"\$\{[^}]*\}", "*", target["tag"])
                        extra["key"] = "message"
                        extra["stream_keys"] = ["stream"]  # the tag is per container already
                        self.filters.append(extra)
        if formats:
            target["format"] = formats[0] if len(set(formats)) == 1 else "auto"
