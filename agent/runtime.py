"""Wires components from the config and runs them.

inputs -> ingest (parse, filter, encode) -> buffer -> delivery -> outputs.

Start order: buffer (recovery), outputs and their dispatchers, inputs, HTTP. Stop order on
SIGTERM/SIGINT: inputs stop accepting, held-back filter records are flushed, open chunks are
sealed, outputs drain for ``grace_period``, then whatever is left stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from typing import Any

from agent.buffer.base import Buffer
from agent.buffer.factory import build_buffer
from agent.components import input_types, output_types
from agent.config import component_errors
from agent.deadletter import DeadLetterDir
from agent.delivery import Dispatcher
from agent.filters.base import FilterContext
from agent.filters.chain import FilterChain
from agent.http import HttpServer
from agent.ingest import IngestSink, Store
from agent.inputs.base import Input, InputContext
from agent.metrics import Registry
from agent.router import Router
from outputs.base import Chunk, Output, OutputContext

log = logging.getLogger("agent")

HOUSEKEEPING_INTERVAL = 0.2


class Agent:
    def __init__(self, config: Any, source: str = "agent.toml") -> None:
        self.config = config
        self.source = source
        self.registry = Registry()
        self.node_name = config.agent.node_name or socket.gethostname()
        with component_errors(source, "outputs"):
            self.router = Router.from_outputs(config.outputs)
        with component_errors(source, "buffer"):
            self.buffer: Buffer = build_buffer(
                config.buffer,
                config.agent.data_dir,
                self.registry.component("buffer", config.buffer.type),
                logging.getLogger("agent.buffer"),
            )
        self.dead_letters = DeadLetterDir(f"{config.agent.data_dir}/dead-letter")
        self.outputs: dict[str, Output] = {}
        self.dispatchers: list[Dispatcher] = []
        self.inputs: list[Input] = []
        self.chain: FilterChain | None = None
        self.http: HttpServer | None = None
        self._stopping = False
        self.drain_on_stop = True
        """False on a reload with a disk buffer: unacknowledged chunks stay on disk for the
        next pipeline, so there is nothing to wait for."""

    # ------------------------------------------------------------------------------- build

    def _build(self) -> None:
        config = self.config
        outputs = output_types()
        for out_config in config.outputs:
            kind = out_config.__struct_config__.tag
            name = out_config.name
            context = OutputContext(
                name=name,
                data_dir=config.agent.data_dir,
                node_name=self.node_name,
                logger=logging.getLogger(f"agent.output.{name}"),
                metrics=self.registry.component(name, kind),
                dead_letter=self._partial_dead_letter(name, kind),
            )
            with self._config_errors(f"outputs[{len(self.outputs)}] ({kind})"):
                output = outputs[kind][1](out_config, context)
            self.outputs[name] = output
            self.dispatchers.append(
                Dispatcher(name, output, self.buffer, self.registry.component(name, kind))
            )

        if config.filters:
            with self._config_errors(None):
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

        inputs = input_types()
        for in_config in config.inputs:
            kind = in_config.__struct_config__.tag
            metrics = self.registry.component(in_config.name, kind)
            where = f"inputs[{len(self.inputs)}] ({kind})"
            with self._config_errors(where):
                sink = IngestSink(in_config, self.buffer, self.chain, self.store, metrics)
            input_context = InputContext(
                name=in_config.name,
                logger=logging.getLogger(f"agent.input.{in_config.name}"),
                metrics=metrics,
                sink=sink,
            )
            with self._config_errors(where):
                self.inputs.append(inputs[kind][1](in_config, input_context))

    def _config_errors(self, where: str | None) -> contextlib.AbstractContextManager[None]:
        """A component that rejects its config (a bad regex, a missing extra) is a config error
        naming the file and the component: ``agent.config.component_errors``, the one path."""
        return component_errors(self.source, where)

    def _partial_dead_letter(self, name: str, kind: str) -> Any:
        metrics = self.registry.component(name, kind)

        def dead_letter(chunk: Chunk, lines: Any, reason: str) -> None:
            path = self.dead_letters.write(chunk, name, lines, reason)
            metrics.inc("output_dead_lettered_records_total", len(lines), reason="record")
            log.error(
                "output %s: %d records of chunk %s refused by the destination, kept in %s: %s",
                name,
                len(lines),
                chunk.id,
                path,
                reason,
            )

        return dead_letter

    # --------------------------------------------------------------------------------- run

    def build(self) -> None:
        """Construct every component (no sockets, no files): ConfigError if one refuses."""
        if not self.inputs:
            self._build()

    async def run(self, stop: asyncio.Event) -> None:
        self.build()
        await self.buffer.open(self.router.routes)
        for output in self.outputs.values():
            await output.start()
        for dispatcher in self.dispatchers:
            dispatcher.start()
        started: list[Input] = []
        try:
            if self.chain is not None:
                await self.chain.start()
            for item in self.inputs:
                await item.start()
                started.append(item)
                log.info("input %s listening on %s", item.context.name, item.describe())
        except BaseException:
            for item in started:
                await item.stop()
            if self.chain is not None:
                await self.chain.stop()
            await self._stop_outputs()
            await self.buffer.close()
            raise
        if self.config.agent.http_listen:
            self.http = HttpServer(self.config.agent.http_listen, self.registry, self.not_ready)
            await self.http.start()
            log.info("http on %s:%d (/healthz /readyz /metrics)", self.http.host, self.http.port)
        for item in self.config.inputs:
            if "${" not in item.tag and not self.router.routes(item.tag) and not self.chain:
                log.warning(
                    "input %s: no output matches its tag %r; its records will be dropped (counted "
                    "in router_dropped_records_total)",
                    item.name,
                    item.tag,
                )
        self.registry.set("up", 1, ())
        self.registry.collectors.append(self._collect)
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        log.info(
            "agent running: %d inputs, %d filters, %d outputs, %s buffer in %s",
            len(self.inputs),
            len(self.config.filters),
            len(self.outputs),
            self.config.buffer.type,
            self.config.agent.data_dir,
        )
        try:
            await stop.wait()
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)
            await self.shutdown()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            if self.chain is not None:
                self.store.put(self.chain.flush(time.monotonic()))
            self.buffer.seal_due(time.time())

    async def shutdown(self) -> None:
        self._stopping = True
        for item in self.inputs:
            try:
                await item.stop()
            except Exception:
                log.exception("input %s: error while stopping", item.context.name)
        if self.chain is not None:
            self.store.put(self.chain.close())
            await self.chain.stop()
        self.buffer.seal_due(math.inf)
        if self.drain_on_stop:
            await self._drain(float(self.config.agent.grace_period))
        await self._stop_outputs()
        await self.buffer.close()
        if self.http is not None:
            await self.http.stop()
        left = {name: self.buffer.pending(name) for name in self.outputs}
        if any(left.values()):
            log.warning("stopped with chunks still buffered for the next start: %s", left)
        else:
            log.info("stopped; buffer empty")

    async def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            waiting = [name for name in self.outputs if self.buffer.pending(name)]
            if not waiting:
                return
            # Outputs that group chunks (S3) hold them until flushed.
            remaining = max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.gather(*(self.outputs[name].flush() for name in waiting))
            except TimeoutError:
                return
            await asyncio.sleep(0.05)

    async def _stop_outputs(self) -> None:
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
        reasons += [f"input {i.context.name} not serving" for i in self.inputs if not i.ready]
        if not self.buffer.has_room():
            reasons.append("buffer full")
        if self.store.write_error is not None:
            reasons.append(f"buffer not writable: {self.store.write_error}")
        reasons += [f"output {name} not ready" for name, o in self.outputs.items() if not o.ready]
        return reasons

    def _collect(self) -> None:
        stats = self.buffer.stats()
        buffer_labels = (("name", "buffer"), ("type", self.config.buffer.type))
        self.registry.set("buffer_chunks", stats.chunks, buffer_labels)
        self.registry.set(
            "buffer_bytes", stats.memory_bytes, (*buffer_labels, ("location", "memory"))
        )
        self.registry.set("buffer_bytes", stats.disk_bytes, (*buffer_labels, ("location", "disk")))
        for dispatcher in self.dispatchers:
            labels = (("name", dispatcher.name), ("type", dispatcher.output.type_name))
            self.registry.set("output_pending_chunks", self.buffer.pending(dispatcher.name), labels)
            self.registry.set("output_up", 1 if dispatcher.output.ready else 0, labels)
