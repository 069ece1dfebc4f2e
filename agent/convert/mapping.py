"""fluent-bit sections -> the agent's config (a dict of the agent.toml tables), and a note for
everything that was not carried over as it was: ``left_out`` notes (a setting, a plugin, a parser
with no equivalent here) make ``convert`` exit 3; the other notes say where the agent behaves
differently or already does what a setting asked for."""

from __future__ import annotations

from typing import Any

from agent.convert.map_filters import FilterMapping
from agent.convert.map_inputs import InputMapping
from agent.convert.map_outputs import OutputMapping
from agent.convert.mapping_base import Note, Result, host_port
from agent.convert.model import FluentBitConfig

__all__ = ["Note", "Result", "convert"]


class Mapper(InputMapping, FilterMapping, OutputMapping):
    """The whole config: [SERVICE], then every input, filter and output, then placeholders for
    a file that would otherwise not run."""

    # ------------------------------------------------------------------ service

    def service(self) -> None:
        for section in self.fb.service:
            flush = self.duration(section, "flush")
            if flush is not None:
                self.buffer["flush_interval"] = flush
            level = section.get("log_level")
            if level:
                levels = {
                    "error": "error",
                    "warn": "warning",
                    "warning": "warning",
                    "info": "info",
                    "debug": "debug",
                    "trace": "debug",
                }
                if level.lower() in levels:
                    self.agent["log_level"] = levels[level.lower()]
                else:
                    self.agent["log_level"] = "error"
                    self.note(
                        section,
                        "log_level",
                        f"Log_Level {level}: the agent always logs "
                        'errors; log_level = "error" written',
                    )
            if self.flag(section, "http_server"):
                host = section.get("http_listen") or "0.0.0.0"
                port = section.get("http_port") or "2020"
                self.agent["http_listen"] = host_port(host, port)
            else:
                for key in ("http_listen", "http_port"):
                    section.get(key)
            path = section.get("storage.path")
            if path:
                self.agent["data_dir"] = path
            sync = section.get("storage.sync")
            if sync:
                self.buffer["sync"] = "always" if sync.lower() == "full" else "none"
            grace = self.duration(section, "grace")
            if grace is not None:
                self.agent["grace_period"] = grace
            for key, text in (
                ("daemon", "run the agent under your service manager; it does not fork"),
                ("health_check", "/healthz and /readyz are always served with http_listen"),
                ("hc_errors_count", "/readyz reports each output's state"),
                ("hc_retry_failure_count", "/readyz reports each output's state"),
                ("hc_period", "/readyz reports each output's state"),
                ("storage.metrics", "buffer metrics are always in /metrics"),
                ("storage.checksum", "every frame of a chunk carries a CRC32"),
                ("storage.max_chunks_up", "the disk buffer keeps only open chunks in memory"),
                (
                    "storage.backlog.mem_limit",
                    "the backlog is replayed from disk, chunk by "
                    "chunk; [buffer] max_bytes bounds it",
                ),
                (
                    "storage.delete_irrecoverable_chunks",
                    "damaged chunks are salvaged and the rest moved to data_dir/corrupt, counted",
                ),
                ("hot_reload", "SIGHUP reloads the config"),
                ("coro_stack_size", "no coroutine stacks to size"),
            ):
                entry = section.entry(key)
                if entry:
                    self.result.notes.append(
                        Note(
                            entry.file,
                            entry.line,
                            f"[SERVICE] {entry.key} {entry.value}: not needed ({text})",
                            left_out=False,
                        )
                    )
            section.all("parsers_file")
            self.finish_section(section, "[SERVICE]")
        if not any(s.get("storage.path") for s in self.fb.service) and self.fb.inputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "fluent-bit buffered in memory (no storage.path): the agent "
                    "buffers on disk in [agent] data_dir (/var/lib/audit-agent by default); "
                    '[buffer] type = "memory" gives the old behaviour',
                    left_out=False,
                )
            )

    # ------------------------------------------------------------------ all

    def run(self) -> Result:
        self.service()
        for index, section in enumerate(self.fb.inputs):
            self.input(section, index)
        for section in self.fb.filters:
            self.filter(section)
            if self.pending_after is not None:
                self.filters.append(self.pending_after)
                self.pending_after = None
        for section in self.fb.outputs:
            self.output(section)
        for file, line, text in self.fb.missing:
            self.result.notes.append(Note(file, line, text, left_out=False))
        for section in self.fb.other:
            self.note(section, None, f"[{section.kind.upper()}] section: not translated")
        if not self.inputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "no input could be translated; "
                    "a placeholder syslog input on udp 127.0.0.1:5140 "
                    "is written so the file is valid",
                )
            )
            self.inputs.append({"type": "syslog", "mode": "udp", "listen": "127.0.0.1:5140"})
        if not self.outputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "no output could be translated; "
                    "a stdout output is written so the file is valid",
                )
            )
            self.outputs.append({"type": "stdout", "match": "*"})
        config: dict[str, Any] = {}
        if self.agent:
            config["agent"] = self.agent
        if self.buffer:
            config["buffer"] = self.buffer
        config["inputs"] = self.inputs
        if self.filters:
            config["filters"] = self.filters
        config["outputs"] = self.outputs
        self.result.config = config
        self.result.notes.sort(key=lambda n: (not n.left_out, n.file, n.line))
        return self.result


def convert(fb: FluentBitConfig) -> Result:
    return Mapper(fb).run()
