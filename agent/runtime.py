"""Wires components from the config and runs them.

inputs -> ingest (parse, filter, encode) -> buffer -> delivery -> outputs.

Every component is made by ``agent.components.build`` inside ``component_errors``: whatever one
refuses is a config error naming the file and the component. A SIGHUP hands one ``Agent`` over
to the next (``agent.reload``).

Start order: buffer (recovery), outputs and their dispatchers, inputs, HTTP. Stop order on
SIGTERM/SIGINT: inputs stop accepting, held-back filter records are flushed, open chunks are
sealed, outputs drain for ``grace_period``, then whatever is left stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import socket
import time
from typing import Any

from agent import __version__
from agent.buffer.base import Buffer
from agent.buffer.factory import build_buffer
from agent.components import build, label, refusals
from agent.config import component_errors
from agent.delivery import DEAD_LETTER_REASONS, DeadLetterSink, Dispatcher
from agent.filters.base import FilterContext
from agent.filters.chain import FilterChain
from agent.http import HttpServer
from agent.ingest import IngestSink, Store
from agent.inputs.base import Input, InputContext
from agent.metrics import Registry
from agent.router import Router
from common.checksum import IMPLEMENTATION as CHECKSUM
from outputs.base import BLOCKED_CAUSES, Output, OutputContext

log = logging.getLogger("agent")

HOUSEKEEPING_INTERVAL = 0.2
MIN_SEAL_WAIT = 0.005
"""Shortest sleep before a seal check: a chunk due now is sealed on the next turn, while a
busy input keeps pushing its pause time ahead without the check spinning."""

INPUT_COUNTERS = (
    "input_records_total",
    "input_bytes_total",
    "input_frames_total",
    "input_truncated_total",
    "parse_errors_total",
)
STREAM_INPUT_COUNTERS = (
    "input_connections_total",
    "input_framing_errors_total",
    "input_discarded_bytes_total",
)
FILE_INPUT_COUNTERS = ("input_rotations_total", "input_truncations_total", "input_lost_bytes_total")
REJECTED_CONNECTION_REASONS = ("max_connections", "open_files", "accept_error", "stopping")
OUTPUT_COUNTERS = (
    "output_records_total",
    "output_bytes_total",
    "output_chunks_total",
    "output_retries_total",
)
BUFFER_COUNTERS = (
    "buffer_corrupt_chunks_total",
    "buffer_deleted_chunks_total",
    "buffer_recovered_chunks_total",
    "buffer_recovered_records_total",
)


class Agent:
    def __init__(
        self, config: Any, source: str = "agent.toml", registry: Registry | None = None
    ) -> None:
        self.config = config
        self.source = source
        self.registry = registry if registry is not None else Registry()
        """A reload passes the running pipeline's: counters go on across pipelines."""
        self.registry.gauges.pop("build_info", None)
        self.registry.set(
            "build_info",
            1,
            (
                ("checksum", CHECKSUM),
                ("python", platform.python_version()),
                ("version", __version__),
            ),
        )
        self.node_name = config.agent.node_name or socket.gethostname()
        with component_errors(source, "outputs"):
            self.router = Router.from_outputs(config.outputs)
        with component_errors(source), refusals(f"buffer ({config.buffer.type})"):
            self.buffer: Buffer = build_buffer(
                config.buffer,
                config.agent.data_dir,
                self.registry.component("buffer", config.buffer.type),
                logging.getLogger("agent.buffer"),
                int(config.agent.dead_letter_max_bytes),
            )
        self.dead_letters = self.buffer.dead_letters
        self.outputs: dict[str, Output] = {}
        self.dispatchers: list[Dispatcher] = []
        self.inputs: list[Input] = []
        self.chain: FilterChain | None = None
        self.http: HttpServer | None = None
        self._built = False
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.drain_on_stop = True
        """False on a reload with a disk buffer: unacknowledged chunks stay on disk for the
        next pipeline, so there is nothing to wait for."""

    # ------------------------------------------------------------------------------- build

    def _build(self) -> None:
        config = self.config
        for index, out_config in enumerate(config.outputs):
            kind = out_config.__struct_config__.tag
            name = out_config.name
            metrics = self.registry.component(name, kind)
            letters = DeadLetterSink(
                name,
                self.dead_letters,
                metrics,
                self.registry.component("buffer", config.buffer.type),
            )
            context = OutputContext(
                name=name,
                data_dir=config.agent.data_dir,
                node_name=self.node_name,
                logger=logging.getLogger(f"agent.output.{name}"),
                metrics=metrics,
                dead_letter=letters.write,
                dead_lettered=letters.count,
            )
            with self._config_errors():
                output: Output = build("outputs", index, out_config, context)
            self.outputs[name] = output
            self.dispatchers.append(Dispatcher(name, output, self.buffer, metrics, letters))

        if config.filters:
            with self._config_errors():
                self.chain = FilterChain(
                    [
                        (
                            cfg,
                            FilterContext(
                                name=cfg.name,
                                logger=logging.getLogger(f"agent.filter.{cfg.name}"),
                                metrics=self.registry.component(
                                    cfg.name, cfg.__struct_config__.tag
                                ),
                            ),
                        )
                        for cfg in config.filters
                    ]
                )
        self.store = Store(self.buffer, self.router, self.registry.component("router", "router"))

        for index, in_config in enumerate(config.inputs):
            self.inputs.append(self.make_input(index, in_config))

    def _declare_counters(self) -> None:
        """Every counter whose labels are known now is exported as 0 from the start, as
        fluent-bit does: ``increase()`` then sees the first drop, retry or dead letter."""
        registry = self.registry
        for in_config in self.config.inputs:
            metrics = registry.component(in_config.name, in_config.__struct_config__.tag)
            mode = getattr(in_config, "mode", "")
            stream = mode in ("tcp", "unix_stream", "relp")
            for name in INPUT_COUNTERS + (STREAM_INPUT_COUNTERS if stream else ()):
                metrics.declare(name)
            if not mode:  # a file input: the files are its queue, it never drops for a full buffer
                for name in FILE_INPUT_COUNTERS:
                    metrics.declare(name)
                continue
            if mode == "udp":
                metrics.declare("input_kernel_drops_total")
            reasons = ["buffer_full", "reloading", "buffer_error"]
            if stream:
                reasons.remove("buffer_error")  # a stream input retries instead
                metrics.declare("input_retried_records_total", reason="buffer_error")
            for reason in reasons:
                metrics.declare("input_dropped_records_total", reason=reason)
            if stream:
                for reason in REJECTED_CONNECTION_REASONS:
                    metrics.declare("input_connections_rejected_total", reason=reason)
                pauses = ("buffer_full", "unread_answers") if mode == "relp" else ("buffer_full",)
                for reason in pauses:
                    metrics.declare("input_backpressure_pauses_total", reason=reason)
        for cfg in self.config.filters:
            metrics = registry.component(cfg.name, cfg.__struct_config__.tag)
            metrics.declare("filter_records_total", direction="in")
            metrics.declare("filter_records_total", direction="out")
            metrics.declare("filter_dropped_records_total")
        buffer = registry.component("buffer", self.config.buffer.type)
        for name in BUFFER_COUNTERS:
            buffer.declare(name)
        for reason in ("torn", "checksum", "malformed"):
            buffer.declare("buffer_cut_bytes_total", reason=reason)
            buffer.declare("buffer_cut_frames_total", reason=reason)
        for reason in ("no_route", "drop_oldest", "corrupt"):
            buffer.declare("buffer_dropped_records_total", reason=reason)
            buffer.declare("buffer_dropped_bytes_total", reason=reason)
        for dispatcher in self.dispatchers:
            metrics = registry.component(dispatcher.name, dispatcher.output.type_name)
            for name in OUTPUT_COUNTERS:
                metrics.declare(name)
            for reason in DEAD_LETTER_REASONS:
                metrics.declare("output_dead_lettered_records_total", reason=reason)
            for cause in BLOCKED_CAUSES:
                metrics.declare("output_blocked_total", cause=cause)
            buffer.declare("buffer_dead_letter_records_total", output=dispatcher.name)
            buffer.declare("buffer_dead_letter_chunks_total", output=dispatcher.name)
        registry.component("router", "router").declare(
            "router_dropped_records_total", reason="no_route"
        )

    def make_input(self, index: int, in_config: Any) -> Input:
        """The input at ``index`` of ``[[inputs]]``, submitting to this pipeline."""
        kind = in_config.__struct_config__.tag
        metrics = self.registry.component(in_config.name, kind)
        with self._config_errors(), refusals(label("inputs", index, in_config)):
            sink = IngestSink(in_config, self.buffer, self.chain, self.store, metrics)
        input_context = InputContext(
            name=in_config.name,
            logger=logging.getLogger(f"agent.input.{in_config.name}"),
            metrics=metrics,
            sink=sink,
            data_dir=self.config.agent.data_dir,
        )
        with self._config_errors():
            item: Input = build("inputs", index, in_config, input_context)
        return item

    def _config_errors(self, where: str | None = None) -> contextlib.AbstractContextManager[None]:
        """A component that rejects its config (a bad regex, a missing extra) is a config error
        naming the file and the component: ``agent.config.component_errors``, the one path."""
        return component_errors(self.source, where)

    # --------------------------------------------------------------------------------- run

    def build(self) -> None:
        """Construct every component (no sockets, no files): ConfigError if one refuses."""
        if not self._built:
            self._built = True
            self._build()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until ``stop`` is set, shut down."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def start(self) -> None:
        self.build()
        await self.open_pipeline()
        started: list[Input] = []
        try:
            if self.chain is not None:
                with self._config_errors("filters"):  # e.g. no API server to be found
                    await self.chain.start()
            for item in self.inputs:
                await item.start()
                started.append(item)
                log.info("input %s listening on %s", item.context.name, item.describe())
            if self.config.agent.http_listen:
                self.http = HttpServer(self.config.agent.http_listen, self.registry, self.not_ready)
                await self.http.start()
                log.info(
                    "http on %s:%d (/healthz /readyz /metrics)", self.http.host, self.http.port
                )
        except BaseException:
            for item in started:
                await item.stop()
            await self.close_pipeline(drain=False)
            raise
        self.announce_running()

    async def open_pipeline(self, outputs_started: bool = False) -> None:
        """Buffer (recovery), outputs, their dispatchers, housekeeping."""
        await self.buffer.open(self.router.routes)
        self._declare_counters()  # once this pipeline runs (not for a reload that failed)
        if not outputs_started:
            await self.start_outputs()
        for dispatcher in self.dispatchers:
            dispatcher.start()
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="housekeeping")
        self.registry.collectors.append(self._collect)

    async def start_outputs(self) -> None:
        started: list[Output] = []
        try:
            for output in self.outputs.values():
                await output.start()
                started.append(output)
        except BaseException:
            for output in started:
                with contextlib.suppress(Exception):
                    await output.stop()
            raise

    def announce_running(self) -> None:
        for item in self.config.inputs:
            if "${" not in item.tag and not self.router.routes(item.tag) and not self.chain:
                log.warning(
                    "input %s: no output matches its tag %r; its records will be dropped (counted "
                    "in router_dropped_records_total)",
                    item.name,
                    item.tag,
                )
        self.registry.set("up", 1, ())
        log.info(
            "agent running: %d inputs, %d filters, %d outputs, %s buffer in %s",
            len(self.inputs),
            len(self.config.filters),
            len(self.outputs),
            self.config.buffer.type,
            self.config.agent.data_dir,
        )

    async def stop(self) -> None:
        """SIGTERM/SIGINT: inputs stop, filters flush, chunks are sealed, outputs drain."""
        self._stopping = True
        for item in self.inputs:
            try:
                await item.stop()
            except Exception:
                log.exception("input %s: error while stopping", item.context.name)
        await self.close_pipeline(self.drain_on_stop)
        if self.http is not None:
            await self.http.stop()
        left = {name: self.buffer.pending(name) for name in self.outputs}
        if any(left.values()):
            log.warning("stopped with chunks still buffered for the next start: %s", left)
        else:
            log.info("stopped; buffer empty")

    async def close_pipeline(self, drain: bool) -> None:
        """Housekeeping ends, held-back filter records go to the buffer, open chunks are sealed,
        outputs drain (``drain``) and stop, the buffer closes."""
        if self._housekeeping_task is not None:
            self._housekeeping_task.cancel()
            await asyncio.gather(self._housekeeping_task, return_exceptions=True)
            self._housekeeping_task = None
        with contextlib.suppress(ValueError):
            self.registry.collectors.remove(self._collect)
        if self.chain is not None:
            self.store.put(self.chain.close())
            await self.chain.stop()
        self.buffer.seal_due(math.inf)
        if drain:
            await self._drain(float(self.config.agent.grace_period))
        await self.stop_outputs()
        await self.buffer.close()

    async def _housekeeping(self) -> None:
        chain_flushed = time.monotonic()
        while True:
            # Wake when the buffer will next seal a chunk (the end of a burst goes out as soon
            # as its input paused, not up to a tick later), and at least every tick.
            delay = HOUSEKEEPING_INTERVAL
            if (seal_at := self.buffer.next_seal()) is not None:
                delay = min(delay, max(seal_at - time.time(), MIN_SEAL_WAIT))
            await asyncio.sleep(delay)
            if self.chain is not None and time.monotonic() - chain_flushed >= HOUSEKEEPING_INTERVAL:
                chain_flushed = time.monotonic()
                self.store.put(self.chain.flush(chain_flushed))
            self.buffer.seal_due(time.time())

    async def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for dispatcher in self.dispatchers:
            dispatcher.drain()  # partial groups are written now, not after their max_age
        while time.monotonic() < deadline:
            if not any(self.buffer.pending(name) for name in self.outputs):
                return
            await asyncio.sleep(0.05)

    async def stop_outputs(self) -> None:
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        for name, output in self.outputs.items():
            try:
                await output.stop()
            except Exception:
                log.exception("output %s: error while stopping", name)

    # ------------------------------------------------------------------------- observability

    def not_ready(self) -> list[str]:
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        reasons += [f"input {i.context.name} {p}" for i in self.inputs for p in i.problems()]
        if not self.buffer.has_room():
            reasons.append("buffer full")
        if self.store.write_error is not None:
            reasons.append(f"buffer not writable: {self.store.write_error}")
        reasons += [f"output {name} not ready" for name, o in self.outputs.items() if not o.ready]
        reasons += [r for d in self.dispatchers if (r := d.not_ready()) is not None]
        return reasons

    def _collect(self) -> None:
        # buffer_chunks and buffer_bytes are the buffer's own: fresh for the scrape.
        self.buffer.update_gauges()
        for dispatcher in self.dispatchers:
            labels = (("name", dispatcher.name), ("type", dispatcher.output.type_name))
            self.registry.set("output_pending_chunks", self.buffer.pending(dispatcher.name), labels)
            self.registry.set("output_up", 1 if dispatcher.output.ready else 0, labels)
        self.registry.set("dead_letter_bytes", self.dead_letters.used_bytes(), ())
        self.registry.set("dead_letter_max_bytes", self.dead_letters.max_bytes, ())
        # For alerts: the buffer's fill ratio and /readyz's answer, as series.
        self.registry.set("buffer_max_bytes", int(self.config.buffer.max_bytes), ())
        self.registry.set("ready", 0 if self.not_ready() else 1, ())
