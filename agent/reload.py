"""SIGHUP: one running pipeline hands over to the next without losing a record, keeping the
inputs whose config did not change with their sockets and connections."""

from __future__ import annotations

import logging

from agent.http import HttpServer
from agent.ingest import IngestSink
from agent.inputs.base import Input
from agent.runtime import Agent

log = logging.getLogger("agent")


class PipelineLost(Exception):
    """A reload closed the running pipeline and neither the new one nor the previous one could
    open again (the disk under data_dir failed): the process must exit, its supervisor restarts
    it."""


class ReloadFailed(Exception):
    """A reload failed after the running pipeline closed; ``running`` is what runs now."""

    def __init__(self, running: Agent, cause: Exception) -> None:
        super().__init__(str(cause))
        self.running = running


async def hand_over(old: Agent, new: Agent) -> None:
    """SIGHUP: replace the running pipeline ``old`` by ``new`` (built, not started) without
    losing a record. Inputs whose config did not change move to ``new`` as they are, with
    their sockets and open connections; what they receive meanwhile waits in their sink.
    Inputs that changed or went away stop (draining what they read into ``old``).
    Raises, with ``old`` still running, if ``new`` cannot start its inputs, its HTTP
    listener or its outputs."""
    new.build()
    running = {id(item.config): item for item in old.inputs}
    kept: list[Input] = []
    for index, item in enumerate(new.inputs):
        same = next((o for o in old.inputs if o.config == item.config), None)
        if same is not None and id(same.config) in running:
            del running[id(same.config)]
            new.inputs[index] = same
            kept.append(same)
    stopping = [o for o in old.inputs if id(o.config) in running]
    starting = [i for i in new.inputs if not any(i is k for k in kept)]
    log.info(
        "SIGHUP: inputs kept with their connections: %s; restarted or started: %s; stopped: %s",
        ", ".join(i.context.name for i in kept) or "none",
        ", ".join(i.context.name for i in starting) or "none",
        ", ".join(i.context.name for i in stopping) or "none",
    )
    for item in new.inputs:
        _sink(item).hold()

    for item in stopping:
        try:
            await item.stop()  # drains into the old pipeline
        except Exception:
            log.exception("input %s: error while stopping", item.context.name)
    started: list[Input] = []
    http = old.http
    new_http = old.config.agent.http_listen != new.config.agent.http_listen
    try:
        if new.chain is not None:
            await new.chain.start()
        for item in starting:
            await item.start()
            started.append(item)
            log.info("input %s listening on %s", item.context.name, item.describe())
        if new_http and new.config.agent.http_listen:
            http = HttpServer(new.config.agent.http_listen, old.registry, new.not_ready)
            await http.start()
            log.info("http on %s:%d (/healthz /readyz /metrics)", http.host, http.port)
        await new.start_outputs()
    except BaseException:
        if new.chain is not None:
            await new.chain.stop()
        if http is not old.http and http is not None:
            await http.stop()
        for item in started:
            await item.stop()
        await _restore(old, stopping, [*kept, *started])
        raise
    # No way back from here: the old pipeline closes, the new one opens.
    try:
        await old.close_pipeline(drain=old.config.buffer.type == "memory")
    except Exception:  # a disk error while sealing: the chunks on disk stay for the next
        log.exception("SIGHUP: error while closing the previous pipeline")
    if new_http:
        if old.http is not None:
            await old.http.stop()
        new.http = http if new.config.agent.http_listen else None
    else:
        new.http = old.http
        if new.http is not None:
            new.http.readiness = new.not_ready
    # Gauges of what is gone go (the new buffer sets its own when it opens).
    old.registry.retain(
        {i.context.name for i in new.inputs}
        | set(new.outputs)
        | {f.name for f in new.config.filters}
    )
    for item in kept:
        _sink(item).rebind(new.buffer, new.chain, new.store)
    try:
        await new.open_pipeline(outputs_started=True)
    except Exception as exc:
        try:
            fallback = await _fall_back(old, new, exc)
        except Exception as again:
            raise PipelineLost(
                f"neither the new nor the previous buffer can open: {exc}; {again}"
            ) from again
        raise ReloadFailed(fallback, exc) from exc
    for item in new.inputs:
        _sink(item).release()
    for item in kept:
        log.debug(
            "input %s kept across the reload with %d open connections",
            item.context.name,
            item.open_connections(),
        )
    new.announce_running()


async def _fall_back(old: Agent, new: Agent, exc: Exception) -> Agent:
    """The new pipeline's buffer cannot open (a data_dir that cannot be created or is
    locked): this config's buffer and outputs run again behind the new inputs."""
    log.error(
        "SIGHUP: the new pipeline cannot open its buffer (%s); running the previous "
        "buffer and outputs behind the new inputs",
        exc,
    )
    await new.stop_outputs()
    fallback = Agent(old.config, old.source, old.registry)
    fallback.build()
    fallback.inputs = new.inputs
    fallback.http = new.http
    if fallback.http is not None:
        fallback.http.readiness = fallback.not_ready
    for item in fallback.inputs:
        _sink(item).rebind(fallback.buffer, fallback.chain, fallback.store)
    await fallback.open_pipeline()
    for item in fallback.inputs:
        _sink(item).release()
    fallback.announce_running()
    return fallback


async def _restore(old: Agent, stopped: list[Input], held: list[Input]) -> None:
    """A reload failed before ``old`` closed: start again the inputs it stopped and
    let the held ones (kept, or started then stopped again) submit here."""
    for item in stopped:
        index = old.inputs.index(item)
        fresh = old.make_input(index, item.config)
        try:
            await fresh.start()
        except Exception:
            log.exception("input %s: cannot listen again after a failed reload", fresh.context.name)
            continue
        old.inputs[index] = fresh
    for item in held:
        _sink(item).rebind(old.buffer, old.chain, old.store)
        _sink(item).release()


def _sink(item: Input) -> IngestSink:
    sink = item.context.sink
    assert isinstance(sink, IngestSink)
    return sink
