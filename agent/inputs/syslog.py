"""The syslog input: UDP, TCP, UNIX datagram, UNIX stream and RELP sockets.

This module owns the config and the lifecycle and picks the connection kind by ``mode``:
``datagram.DatagramReader`` for udp and unix_dgram, ``stream.StreamConnection`` for tcp and
unix_stream, ``relp.RelpConnection`` for relp. Those modules know the input only through small
protocols (``listener.ListenerOwner``, ``stream.ConnectionOwner``) or plain arguments, so none of
them imports this one.

Stream modes accept connections themselves (``listener.StreamListener``) rather than through
``loop.create_server``: a connection over ``max_connections`` is refused before any transport is
built, and an accept that fails (EMFILE: out of file descriptors) is counted and logged and
accepting pauses briefly with the connection left in the kernel's backlog. uvloop's server (libuv)
would instead accept and close such connections silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import stat
from pathlib import Path
from typing import Literal

from agent.inputs.base import Input, InputConfig, InputContext
from agent.inputs.datagram import DatagramReader
from agent.inputs.framing import Framing
from agent.inputs.listener import (
    OPEN_CONNECTIONS,
    RefusalLog,
    StreamListener,
    connection_budget,
    format_address,
)
from agent.inputs.relp import RelpConnection
from agent.inputs.stream import StreamConnection
from common.units import Size

Mode = Literal["udp", "tcp", "unix_dgram", "unix_stream", "relp"]
NETWORK_MODES = ("udp", "tcp", "relp")
STREAM_MODES = ("tcp", "unix_stream", "relp")
UNIX_MODES = ("unix_dgram", "unix_stream")


class SyslogInputConfig(InputConfig, tag_field="type", tag="syslog"):
    mode: Mode = "udp"
    """Socket kind: udp, tcp, unix_dgram, unix_stream or relp (TCP with acknowledgements)."""
    listen: str | None = None
    """``host:port`` for udp, tcp and relp: ``"127.0.0.1:5514"``, ``"0.0.0.0:514"``,
    ``"[::1]:5514"`` (IPv6 in brackets). Port 0 picks a free port (tests). Required for those
    modes, not allowed with the unix modes."""
    path: str | None = None
    """Socket file for unix_dgram and unix_stream (``"/run/agent/syslog.sock"``). The parent
    directory is created; a stale socket file left by a previous run (nobody listens on it) is
    replaced; a socket another process still serves, or any other kind of file, is an error
    (never deleted). The socket file is removed on stop. Required for those modes, not allowed
    with the network modes."""
    framing: Framing = "auto"
    """Stream modes (tcp, unix_stream): ``newline`` (every message ends with LF; a CR before it
    is dropped too), ``octet_counted`` (RFC 6587 ``LEN SP MSG``), or ``auto``: decided per
    connection by its first bytes (digits then a space: octet-counted)."""
    max_message_bytes: Size = Size(64 * 1024)
    """A longer message is cut to this size; the record is flagged ``truncated`` and
    ``input_truncated_total`` counts it. The rest of the message is skipped (counted in
    ``input_discarded_bytes_total``); the connection goes on. Also bounds a RELP frame, whatever
    its DATALEN announces."""
    socket_mode: str = "0660"
    """Permissions of the socket file (unix modes), an octal string."""
    receive_buffer_bytes: Size | None = Size(32 * 1024 * 1024)
    """udp and unix_dgram: ``SO_RCVBUF``, the kernel queue that absorbs bursts and stalls
    (how much time it buys: docs/inputs.md). The value granted is logged; Linux caps it at
    ``net.core.rmem_max`` unless the agent has ``CAP_NET_ADMIN`` (then ``SO_RCVBUFFORCE`` is
    used); a capped value is logged once as a warning."""
    max_connections: int = 1024
    """Stream modes and relp: connections beyond this are closed at once, counted in
    ``input_connections_rejected_total{reason="max_connections"}`` and logged (at most every
    10 s, with the count); while an input is at its limit ``/readyz`` answers 503 saying so."""

    def __post_init__(self) -> None:
        if self.mode in NETWORK_MODES:
            if self.path is not None:
                raise ValueError(
                    f'path is only for the unix modes; mode "{self.mode}" takes listen'
                )
            if not self.listen:
                raise ValueError(
                    f'listen is required for mode "{self.mode}" (e.g. "127.0.0.1:5514")'
                )
            parse_listen(self.listen)
        else:
            if self.listen is not None:
                raise ValueError(f'listen is only for network modes; mode "{self.mode}" takes path')
            if not self.path:
                raise ValueError(
                    f'path is required for mode "{self.mode}" (e.g. "/run/agent/syslog.sock")'
                )
        parse_socket_mode(self.socket_mode)
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1 byte")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:5514"`` -> ``("127.0.0.1", 5514)``; ``"[::1]:5514"`` -> ``("::1", 5514)``."""
    host, sep, port_text = listen.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f'listen must be "host:port" such as "127.0.0.1:5514" or "[::1]:5514", got {listen!r}'
        )
    if ":" in host or bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"listen: {host!r} is not an IPv6 address in {listen!r}") from None
        if not bracketed:
            raise ValueError(
                f'listen: an IPv6 address goes in brackets ("[::1]:5514"), got {listen!r}'
            )
    return host, int(port_text)


def parse_socket_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f'socket_mode must be octal permissions such as "0660", got {value!r}')
    return mode


class SyslogInput(Input):
    def __init__(self, config: SyslogInputConfig, context: InputContext) -> None:
        super().__init__(config, context)
        self.config: SyslogInputConfig = config
        self._server: StreamListener | None = None
        self._datagram: DatagramReader | None = None
        self._connections: set[StreamConnection] = set()
        self._bound: str | None = None
        self._running = False
        self._refusals = RefusalLog(context)

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        if config.mode in UNIX_MODES:
            assert config.path is not None
            kind = socket.SOCK_DGRAM if config.mode == "unix_dgram" else socket.SOCK_STREAM
            _prepare_socket_path(config.path, kind)
        if config.mode in ("udp", "unix_dgram"):
            reader = DatagramReader(
                self.context, loop, config.max_message_bytes, config.receive_buffer_bytes
            )
            if config.mode == "udp":
                assert config.listen is not None
                reader.open_udp(*parse_listen(config.listen), config.listen)
            else:
                assert config.path is not None
                reader.open_unix(config.path)
            self._datagram = reader
            self._bound = reader.bound
        elif config.mode == "unix_stream":
            assert config.path is not None
            try:
                self._server = StreamListener.unix(self, loop, config.path)
            except OSError as error:
                raise OSError(
                    error.errno, f"{self.context.name}: cannot listen on {config.path}: {error}"
                ) from error
            self._bound = config.path
        else:
            assert config.listen is not None
            host, port = parse_listen(config.listen)
            try:
                self._server = StreamListener.tcp(self, loop, host, port)
            except OSError as error:
                raise OSError(
                    error.errno, f"{self.context.name}: cannot listen on {config.listen}: {error}"
                ) from error
            sockname = self._server.sockets[0].getsockname()
            self._bound = format_address(sockname)
        if config.mode in UNIX_MODES:
            assert config.path is not None
            os.chmod(config.path, parse_socket_mode(config.socket_mode))
        self._running = True

    def _stop_listening(self) -> None:
        """No new datagrams or connections; the stream server object stays for ``stop`` to wait
        on its closing."""
        self._running = False
        if self._datagram is not None:
            self._datagram.close()
            self._datagram = None
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Close the listener and every connection. RELP sessions first get the answers for
        what was committed and a ``serverclose``."""
        self._stop_listening()
        connections = list(self._connections)
        await asyncio.gather(*(c.shutdown() for c in connections), return_exceptions=True)
        # A closed transport reports connection_lost on a later loop iteration, and that is
        # where what a connection read but could not yet submit goes to the sink: wait for it,
        # so a reload closes the old buffer only after a stopped input drained into it.
        for _ in range(100):
            if not self._connections:
                break
            await asyncio.sleep(0.01)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        self._remove_socket_file()

    def abort(self) -> None:
        """Drop the listener and every connection at once, answering nothing: what a crash
        looks like to the peers (used by crash-safety tests)."""
        self._stop_listening()
        self._server = None
        for connection in list(self._connections):
            connection.abort()
        self._remove_socket_file()

    @property
    def ready(self) -> bool:
        return self._running

    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def bound(self) -> str | None:
        """Where it actually listens (``ip:port`` with the real port, or the socket path)."""
        return self._bound

    def describe(self) -> str:
        config = self.config
        where = self._bound or config.listen or config.path
        return f"syslog {config.mode} {where}"

    # ------------------------------------------------------------------- internals

    def make_protocol(self) -> asyncio.Protocol:
        if self.config.mode == "relp":
            return RelpConnection(self)
        return StreamConnection(self)

    def _remove_socket_file(self) -> None:
        path = self.config.path
        if path and self.config.mode in UNIX_MODES:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)

    @property
    def listen_path(self) -> str:
        """The UNIX socket path, for a peer that has no address of its own."""
        return self.config.path or ""

    def admits(self, pending: int = 0) -> bool:
        """Room for one more connection (``pending``: accepted, not yet registered)."""
        return self._running and len(self._connections) + pending < self.config.max_connections

    @staticmethod
    def within_file_budget(pending: int = 0) -> bool:
        """Room for one more connection in the process's open-file budget: all stream inputs
        together leave ``SPARE_FILES`` descriptors for files, HTTP and outputs, so a flood of
        connections cannot make the buffer's next chunk file fail with EMFILE."""
        return OPEN_CONNECTIONS[0] + pending < connection_budget()

    def refused(self, source: str, reason: str, detail: str = "") -> None:
        """A connection refused (``max_connections``) or an accept that failed: counted with
        the reason, logged at most once per ``listener.REFUSAL_LOG_INTERVAL`` with how many."""
        self.context.metrics.inc("input_connections_rejected_total", reason=reason)
        if self._running:
            self._refusals.note(source, reason, detail or self._refusal_detail(reason))

    def _refusal_detail(self, reason: str) -> str:
        if reason == "max_connections":
            return f"max_connections ({self.config.max_connections}) reached"
        if reason == "open_files":
            return (
                f"the process's open-file budget ({connection_budget()} connections for all "
                "inputs, from RLIMIT_NOFILE) is used up"
            )
        return reason

    def connection_opened(self, connection: StreamConnection) -> bool:
        """Registers a new connection; False (and counted) when over ``max_connections``."""
        if self._server is not None:
            self._server.settled(connection)
        metrics = self.context.metrics
        if not self.admits():
            self.refused(connection.source, "max_connections" if self._running else "stopping")
            return False
        if not self.within_file_budget():
            self.refused(connection.source, "open_files")
            return False
        self._connections.add(connection)
        OPEN_CONNECTIONS[0] += 1
        metrics.inc("input_connections_total")
        metrics.set("input_active_connections", len(self._connections))
        self.context.logger.debug(
            "%s: connection from %s opened (%d open)",
            self.context.name,
            connection.source or "a local peer",
            len(self._connections),
        )
        return True

    def problems(self) -> list[str]:
        problems = super().problems()
        if self._running and len(self._connections) >= self.config.max_connections:
            problems.append(
                f"at max_connections ({self.config.max_connections}): refusing new connections"
            )
        elif (
            self._running
            and self.config.mode in STREAM_MODES
            and (
                not self.within_file_budget()
                or (self._server is not None and self._server.out_of_descriptors)
            )
        ):
            problems.append("at the open-file limit: refusing new connections")
        return problems

    def connection_closed(self, connection: StreamConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            OPEN_CONNECTIONS[0] -= 1
            self.context.metrics.set("input_active_connections", len(self._connections))
            self.context.logger.debug(
                "%s: connection from %s closed (%d open)",
                self.context.name,
                connection.source or "a local peer",
                len(self._connections),
            )


def _prepare_socket_path(path: str, kind: socket.SocketKind) -> None:
    """Create the parent directory; replace a stale socket file (one nobody listens on any
    more); refuse to take over a live socket or to replace anything that is not a socket."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
    with socket.socket(socket.AF_UNIX, kind) as probe:
        try:
            probe.connect(path)
        except OSError:
            pass  # refused: the socket is stale
        else:
            raise OSError(errno.EADDRINUSE, f"{path} is in use by another process")
    os.unlink(path)
