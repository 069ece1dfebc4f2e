"""``python -m agent --config agent.toml``: run the pipeline; ``--check``: validate and print it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from agent import __version__
from agent.config import ConfigError, default_config_text, load_config, parse_config

log = logging.getLogger("agent")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="container-audit-agent",
        description="Syslog in (UDP, TCP, UNIX sockets, RELP), S3 and Elasticsearch out, "
        "with a disk buffer in between.",
    )
    parser.add_argument("--config", "-c", help="agent.toml (default: the embedded local config)")
    parser.add_argument(
        "--check", action="store_true", help="validate the config, print the pipeline, exit"
    )
    parser.add_argument(
        "--no-environment",
        action="store_true",
        help="with --check: check the config alone, not this machine: a ${VAR} whose variable "
        "is unset is accepted as written (for a CI job without the secrets), and data_dir and "
        "the listen addresses are not probed",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop when installed (auto), or force one",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--print-reference",
        action="store_true",
        help="print the configuration reference (Markdown, generated from the config structs)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if args.no_environment and not args.check:
        parser.error("--no-environment only goes with --check (a run needs its environment)")
    return args


def _selector(component: Any) -> str:
    if component.match_regex:
        return f"match_regex={component.match_regex!r}"
    return f"match={component.match or '*'!r}"


def describe(config: Any, source: str) -> str:
    """The resolved pipeline, for --check: components, where they listen, and the routes."""
    from agent.router import Router

    router = Router.from_outputs(config.outputs)
    lines = [f"config OK: {source}"]
    agent = config.agent
    lines.append(
        f"agent: data_dir={agent.data_dir} http_listen={agent.http_listen or 'off'} "
        f"grace_period={float(agent.grace_period):g}s log={agent.log_level}/{agent.log_format}"
    )
    buf = config.buffer
    lines.append(
        f"buffer: {buf.type} chunk_bytes={int(buf.chunk_bytes)} max_bytes={int(buf.max_bytes)} "
        f"flush_interval={float(buf.flush_interval):g}s sync={buf.sync} when_full={buf.when_full}"
    )
    for item in config.inputs:
        where = getattr(item, "path", None) or getattr(item, "listen", "")
        if isinstance(getattr(item, "paths", None), list):  # tail: its globs
            where = " ".join(item.paths)
        mode = getattr(item, "mode", "")
        routes = (
            "templated tag: routed per record"
            if "${" in item.tag
            else "-> " + (", ".join(router.routes(item.tag)) or "NO OUTPUT (records dropped)")
        )
        lines.append(
            f"input {item.name}: {item.__struct_config__.tag} {mode + ' ' if mode else ''}{where} "
            f"tag={item.tag!r} format={item.format} {routes}"
        )
    for item in config.filters:
        lines.append(f"filter {item.name}: {item.__struct_config__.tag} {_selector(item)}")
    for item in config.outputs:
        lines.append(
            f"output {item.name}: {item.__struct_config__.tag} {_selector(item)} "
            f"workers={item.workers} retry_limit={item.retry_limit}"
        )
    unrouted = sorted(
        {i.tag for i in config.inputs if "${" not in i.tag and not router.routes(i.tag)}
    )
    for tag in unrouted:
        lines.append(f"warning: no output matches tag {tag!r}; its records would be dropped")
    return "\n".join(lines)


def _install_loop(choice: str) -> str:
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(
                "--loop uvloop: uvloop is not installed (pip install uvloop)"
            ) from None
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def _serve(config: Any, config_path: str | None) -> None:
    """Run until SIGTERM/SIGINT. SIGHUP reloads the config (``_reload``)."""
    from agent.reload import PipelineLost
    from agent.runtime import Agent

    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    agent = Agent(config, config_path or "<embedded default config>")
    await agent.start()
    lost = False
    try:
        while not stop.is_set():
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(reload.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if stop.is_set():
                break
            reload.clear()
            if config_path is None:
                log.warning("SIGHUP: nothing to reload, the embedded default config is running")
                continue
            agent = await _reload(agent, config_path)
    except PipelineLost:
        lost = True  # nothing runs that could be stopped; exit and let the supervisor restart
        raise
    finally:
        if not lost:
            await agent.stop()


async def _reload(agent: Any, config_path: str) -> Any:
    """A valid new config replaces the running pipeline: unchanged inputs keep their sockets and
    connections, the disk buffer carries every unacknowledged record across, counters go on.
    Whatever goes wrong (an invalid config, a port that is taken, a component that refuses to
    start) is logged and the running pipeline goes on: a reload never ends the process.
    Returns the agent that runs now."""
    from agent.reload import PipelineLost, ReloadFailed, hand_over
    from agent.runtime import Agent

    try:
        new_config = load_config(config_path)
        new = Agent(new_config, config_path, agent.registry)
        new.build()
    except Exception as exc:
        log.error("SIGHUP: config not reloaded, keeping the running one: %s", _reason(exc))
        return agent
    log.info("SIGHUP: reloading %s", config_path)
    try:
        await hand_over(agent, new)
    except ReloadFailed as exc:
        log.error("SIGHUP: config not reloaded: %s", _reason(exc.__cause__ or exc))
        return exc.running
    except PipelineLost:
        raise
    except Exception as exc:
        log.error("SIGHUP: config not reloaded, keeping the running one: %s", _reason(exc))
        log.debug("the reload failed here", exc_info=True)
        return agent
    return new


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {text}"


def _load(args: argparse.Namespace, unresolved: list[str] | None = None) -> tuple[Any, str]:
    """The config the command line names, or the embedded default; raises ConfigError."""
    environment = not getattr(args, "no_environment", False)
    if args.config:
        config = load_config(args.config, environment=environment, unresolved=unresolved)
        return config, args.config
    source = "<embedded default config>"
    text = default_config_text()
    return parse_config(text, source, environment=environment, unresolved=unresolved), source


def _config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"config error: {problem}", file=sys.stderr)
    if len(exc.problems) > 1:
        print(f"{len(exc.problems)} config errors", file=sys.stderr)
    return 2


def _print(text: str) -> None:
    """Print to stdout; a reader that went away (``--check | head -1``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the failed flush at exit: point stdout at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def check(args: argparse.Namespace) -> int:
    """``--check``: what the run would refuse (the config, its components, and on this machine
    data_dir and the listen addresses), every problem at once; the pipeline when it is fine."""
    from agent.preflight import preflight
    from agent.runtime import Agent

    unresolved: list[str] = []
    try:
        config, source = _load(args, unresolved)
        Agent(config, source).build()
        if not args.no_environment:
            problems = preflight(config, source)
            if problems:
                raise ConfigError(problems)
    except ConfigError as exc:
        return _config_error(exc)
    text = describe(config, source)
    if args.no_environment:
        text = text.replace("config OK:", "config structure OK (--no-environment):", 1)
        text += "".join(f"\nnot checked: {item}" for item in unresolved)
    _print(text)
    return 0


def run(args: argparse.Namespace, runtime_dir: str | None) -> int:
    """Run until SIGTERM/SIGINT (exit 0); a config the run would refuse exits 2."""
    from agent.preflight import preflight
    from agent.reload import PipelineLost

    try:
        config, source = _load(args)
        problems = preflight(config, source)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return _config_error(exc)

    from agent.logs import setup_logging

    setup_logging(args.log_level or config.agent.log_level, config.agent.log_format)
    from agent.resources import check_open_file_budget, raise_open_file_limit

    raise_open_file_limit()
    check_open_file_budget(config.inputs)
    loop_name = _install_loop(args.loop)
    log.info(
        "container-audit-agent %s starting (%s loop, config %s)", __version__, loop_name, source
    )
    if runtime_dir:
        log.info("embedded default config: runtime files in %s", runtime_dir)
    try:
        asyncio.run(_serve(config, args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config error: %s", problem)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except PipelineLost as exc:
        log.error("exiting: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dead-letters"]:
        from agent.replay import main as dead_letters

        return dead_letters(argv[1:])
    if argv[:1] == ["convert"]:
        from agent.convert import main as convert

        return convert(argv[1:])
    args = _arguments(argv)
    if args.print_reference:
        from agent.reference import render

        sys.stdout.write(render())
        return 0
    runtime_dir = None
    if not args.config:
        # The embedded default puts its sockets and data here; removed on the way out, whatever
        # the way out is (--check included).
        runtime_dir = tempfile.mkdtemp(prefix="audit-agent-")
        os.environ.setdefault("AGENT_RUNTIME_DIR", runtime_dir)
    try:
        return check(args) if args.check else run(args, runtime_dir)
    finally:
        if runtime_dir:
            shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
