"""The syslog input: UDP, TCP, UNIX datagram, UNIX stream and RELP sockets.

Datagram modes read a non-blocking socket from ``loop.add_reader`` and drain it until EAGAIN
(at most ``_DATAGRAMS_PER_WAKEUP`` per wake-up), so one callback submits a whole batch. Stream
modes are asyncio protocols: every read is framed (``framing.StreamFramer``) and submitted as one
batch; while the sink has no room the connection stops reading, so TCP/UNIX flow control pushes
back on the sender (rsyslog keeps the backlog in its queue). RELP lives in ``relp.py``.

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
import logging
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any, Literal, cast

from agent.inputs.base import Input, InputConfig, InputContext
from agent.inputs.framing import StreamFramer
from agent.inputs.listener import (
    OPEN_CONNECTIONS,
    RefusalLog,
    StreamListener,
    connection_budget,
    format_address,
)
from agent.logs import REPEATS
from common.units import Size

Mode = Literal["udp", "tcp", "unix_dgram", "unix_stream", "relp"]
NETWORK_MODES = ("udp", "tcp", "relp")
STREAM_MODES = ("tcp", "unix_stream", "relp")
UNIX_MODES = ("unix_dgram", "unix_stream")

_DATAGRAMS_PER_WAKEUP = 1024
_KERNEL_DROPS_INTERVAL = 5.0
_SO_RCVBUFFORCE_LINUX = 33 if sys.platform.startswith("linux") else None


class SyslogInputConfig(InputConfig, tag_field="type", tag="syslog"):
    mode: Mode = "udp"
    listen: str | None = None
    """``host:port`` for udp, tcp and relp; ``[::1]:5514`` for IPv6; port 0 picks a free one."""
    path: str | None = None
    """Socket file for unix_dgram and unix_stream."""
    framing: Literal["auto", "newline", "octet_counted"] = "auto"
    """Stream framing (tcp, unix_stream); auto decides per connection."""
    max_message_bytes: Size = Size(64 * 1024)
    """A longer message is cut at this size and flagged truncated."""
    socket_mode: str = "0660"
    """Permissions of the socket file (unix modes), octal."""
    receive_buffer_bytes: Size | None = Size(32 * 1024 * 1024)
    """SO_RCVBUF for udp and unix_dgram: the kernel queue that absorbs a stall. 32 MiB holds
    ~0.5 s at 100,000 datagrams/s of ~250 bytes (the kernel counts ~1.3 KiB for each). Forced
    past net.core.rmem_max with CAP_NET_ADMIN; without it the kernel caps it (logged once)."""
    max_connections: int = 1024
    """Stream modes: further connections are closed at once (counted in
    ``input_connections_rejected_total{reason="max_connections"}``; /readyz says so)."""

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
        self._datagram: _DatagramReader | None = None
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
            self._datagram = _DatagramReader(self, loop)
            self._datagram.open()
            self._bound = self._datagram.bound
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
            from agent.inputs.relp import RelpConnection

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
            self.context.name, connection.source or "a local peer", len(self._connections),
        )
        return True

    def problems(self) -> list[str]:
        problems = super().problems()
        if self._running and len(self._connections) >= self.config.max_connections:
            problems.append(
                f"at max_connections ({self.config.max_connections}): refusing new connections"
            )
        elif self._running and self.config.mode in STREAM_MODES and not self.within_file_budget():
            problems.append("at the open-file limit: refusing new connections")
        return problems

    def connection_closed(self, connection: StreamConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            OPEN_CONNECTIONS[0] -= 1
            self.context.metrics.set("input_active_connections", len(self._connections))
            self.context.logger.debug(
                "%s: connection from %s closed (%d open)",
                self.context.name, connection.source or "a local peer", len(self._connections),
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


# ---------------------------------------------------------------------------------- streams


class StreamConnection(asyncio.Protocol):
    """One TCP or UNIX stream connection: frames every read, submits it as one batch, and
    stops reading while the sink is full."""

    def __init__(self, owner: SyslogInput) -> None:
        self.owner = owner
        self.sink = owner.context.sink
        self.metrics = owner.context.metrics
        self.logger = owner.context.logger
        config = owner.config
        self.framer = StreamFramer(config.framing, int(config.max_message_bytes))
        self.transport: asyncio.Transport | None = None
        self.source = config.path or ""
        self._registered = False
        self._closed = False
        self._eof = False
        self._warned = False
        self._waiting: asyncio.Task[None] | None = None
        self._yielding = False
        """Reading paused until the next loop iteration (``_yield_to_loop``)."""
        self._held: list[tuple[list[bytes], list[int], Any]] = []
        """Batches read but not yet taken by the sink (it was full), with their tokens."""

    # asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer and isinstance(peer, tuple):
            self.source = format_address(peer)
        if not self.owner.connection_opened(self):
            self.transport.abort()
            return
        self._registered = True

    def data_received(self, data: bytes) -> None:
        self.metrics.inc("input_bytes_total", len(data))
        frames, truncated = self.framer.feed(data)
        self._report_framer()
        if frames:
            self.deliver(frames, truncated)
            self._yield_to_loop()

    def _yield_to_loop(self) -> None:
        """One read per loop iteration. uvloop (libuv) reads a busy socket up to 32 times per
        iteration, 8 MiB of messages parsed before any other callback runs: outputs then
        advance one step per such burst, fall behind, and their chunks are evicted from
        memory and read back from disk. Pausing until the next iteration lets every task
        take its turn between two reads (TCP flow control holds the sender meanwhile)."""
        if self._yielding or self._waiting is not None or self._closed or self.transport is None:
            return
        self._yielding = True
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._resume_after_yield)

    def _resume_after_yield(self) -> None:
        self._yielding = False
        if self._waiting is not None or self._closed or self.transport is None:
            return  # waiting for room: _wait_for_room resumes
        if self.may_read():
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        frames, truncated = self.framer.finish()
        self._report_framer()
        if frames:
            self.deliver(frames, truncated)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if not self._eof:
            # Reset by the peer or closed by our stop: a partial message read so far is kept.
            frames, truncated = self.framer.finish()
            self._report_framer()
            if frames:
                self.metrics.inc("input_frames_total", len(frames))
                self._held.append((frames, truncated, None))
        if self._held and self.submit_held_on_close:
            # Nothing more will be read: hand over what is held even if the sink then counts
            # it as dropped, rather than losing it silently.
            for frames, truncated, _ in self._held:
                self.sink.submit(frames, self.source, truncated)
        self._held.clear()
        if self._waiting is not None:
            self._waiting.cancel()
        if self._registered:
            self.owner.connection_closed(self)

    # batches and backpressure --------------------------------------------------------

    submit_held_on_close = True
    """Plain syslog senders cannot resend; RELP senders resend whatever was not answered."""

    def deliver(self, frames: list[bytes], truncated: list[int], token: Any = None) -> None:
        self.metrics.inc("input_frames_total", len(frames))
        if truncated:
            self.metrics.inc("input_truncated_total", len(truncated))
        if self._held or not self.sink.has_room():
            self._held.append((frames, truncated, token))
            self._pause()
            return
        if not self.sink.submit(frames, self.source, truncated):
            self._held.append((frames, truncated, token))
            self._pause()
            return
        self.submitted(token)
        if not self.sink.has_room():
            self._pause()

    def submitted(self, token: Any) -> None:
        """The sink took the batch ``token`` came with (RELP acknowledges it once committed)."""

    def _pause(self) -> None:
        if self._waiting is not None or self._closed or self.transport is None:
            return
        self.transport.pause_reading()
        self.metrics.inc("input_backpressure_pauses_total", reason="buffer_full")
        self._waiting = asyncio.get_running_loop().create_task(self._wait_for_room())

    async def _wait_for_room(self) -> None:
        try:
            while True:
                await self.sink.wait_room()
                while self._held and self.sink.has_room():
                    frames, truncated, token = self._held[0]
                    if not self.sink.submit(frames, self.source, truncated):
                        break
                    self._held.pop(0)
                    self.submitted(token)
                if not self._held and self.sink.has_room():
                    break
                if self._held and self.sink.has_room():
                    await asyncio.sleep(0.01)  # taken by another input in between; retry
        finally:
            self._waiting = None
        if not self._closed and self.transport is not None and self.may_read():
            self.transport.resume_reading()

    def may_read(self) -> bool:
        return True

    def _report_framer(self) -> None:
        framer = self.framer
        if framer.framing_errors:
            self.metrics.inc("input_framing_errors_total", framer.framing_errors)
            if not self._warned:
                # Once per connection: a peer sending garbage must not flood our own log.
                self._warned = True
                self.logger.warning(
                    "%s: malformed octet-counted frame from %s kept as a newline-framed message "
                    "(further ones on this connection are only counted)",
                    self.owner.context.name,
                    self.source,
                )
            framer.framing_errors = 0
        if framer.discarded_bytes:
            self.metrics.inc("input_discarded_bytes_total", framer.discarded_bytes)
            framer.discarded_bytes = 0

    # shutdown -------------------------------------------------------------------------

    async def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._held.clear()
        if self.transport is not None:
            self.transport.abort()


# -------------------------------------------------------------------------------- datagrams


class _DatagramReader:
    """A bound UDP or UNIX datagram socket drained from ``loop.add_reader``."""

    def __init__(self, owner: SyslogInput, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.sink = owner.context.sink
        self.metrics = owner.context.metrics
        self.logger: logging.Logger = owner.context.logger
        self.limit = int(owner.config.max_message_bytes)
        # One byte over the limit tells a cut datagram from one that fits exactly.
        self.buffer = bytearray(self.limit + 1)
        self.view = memoryview(self.buffer)
        self.sock: socket.socket | None = None
        self.bound = ""
        self.own_path = owner.config.path or ""
        self._inode = 0
        self._kernel_drops = 0
        self._drops_timer: asyncio.TimerHandle | None = None
        self._sources: dict[Any, str] = {}
        """Sender address -> its text (the ``source`` of the batch)."""
        self.receive_buffer = 0
        """Bytes the kernel granted for receive_buffer_bytes (0: the kernel default)."""

    def open(self) -> None:
        config = self.owner.config
        if config.mode == "udp":
            assert config.listen is not None
            host, port = parse_listen(config.listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                self._set_receive_buffer(sock)
                sock.bind((host, port))
            except OSError as error:
                sock.close()
                raise OSError(
                    error.errno, f"{self.owner.context.name}: cannot bind {config.listen}: {error}"
                ) from error
            self.bound = format_address(sock.getsockname())
        else:
            assert config.path is not None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                self._set_receive_buffer(sock)
                sock.bind(config.path)
            except OSError as error:
                sock.close()
                raise OSError(
                    error.errno, f"{self.owner.context.name}: cannot bind {config.path}: {error}"
                ) from error
            self.bound = config.path
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self.drain)
        if config.mode == "udp":
            self._inode = os.fstat(sock.fileno()).st_ino
            self._kernel_drops = _udp_drops(self._inode) or 0
            self._drops_timer = self.loop.call_later(_KERNEL_DROPS_INTERVAL, self._check_drops)

    def _set_receive_buffer(self, sock: socket.socket) -> None:
        wanted = self.owner.config.receive_buffer_bytes
        if wanted is None:
            return
        # SO_RCVBUFFORCE passes net.core.rmem_max when we have CAP_NET_ADMIN. Python's socket
        # module does not export it; on Linux it is 33.
        force = getattr(socket, "SO_RCVBUFFORCE", _SO_RCVBUFFORCE_LINUX)
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, int(wanted))
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(wanted))
        # Linux reports twice what was set (it counts its bookkeeping) and silently caps the
        # value at net.core.rmem_max unless SO_RCVBUFFORCE was allowed.
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        if effective >= int(wanted):
            self.logger.info("%s: receive buffer %d bytes", self.owner.context.name, effective)
        else:
            self.logger.warning(
                "%s: receive buffer %d bytes requested, only %d granted "
                "(raise net.core.rmem_max or grant CAP_NET_ADMIN)",
                self.owner.context.name,
                int(wanted),
                effective,
            )
        self.receive_buffer = effective

    def drain(self) -> None:
        sock = self.sock
        if sock is None:
            return
        limit = self.limit
        view = self.view
        buffer = self.buffer
        receive = sock.recvfrom_into
        sources = self._sources
        if len(sources) > 4096:  # many short-lived senders: keep the cache bounded
            sources.clear()
        batches: dict[str, tuple[list[bytes], list[int]]] = {}
        received = 0
        count = 0
        for _ in range(_DATAGRAMS_PER_WAKEUP):
            try:
                size, address = receive(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                self.logger.warning(
                    "%s: receive failed: %s", self.owner.context.name, error, extra=REPEATS
                )
                break
            received += size
            if size and buffer[size - 1] == 0x0A:
                size -= 1
            if not size:
                continue
            # Senders are few and send many datagrams each: format each address once.
            source = sources.get(address)
            if source is None:
                source = sources[address] = self._source(address)
            batch = batches.get(source)
            if batch is None:
                batch = batches[source] = ([], [])
            if size > limit:
                batch[1].append(len(batch[0]))
                size = limit
            batch[0].append(bytes(view[:size]))
            count += 1
        if not batches:
            return
        metrics = self.metrics
        metrics.inc("input_bytes_total", received)
        metrics.inc("input_frames_total", count)
        truncated_total = 0
        for source, (frames, truncated) in batches.items():
            truncated_total += len(truncated)
            self.sink.submit(frames, source, truncated)
        if truncated_total:
            metrics.inc("input_truncated_total", truncated_total)

    def _source(self, address: Any) -> str:
        if isinstance(address, tuple):
            return format_address(address)
        if address:
            return address.decode(errors="replace") if isinstance(address, bytes) else str(address)
        return self.own_path

    def _check_drops(self) -> None:
        drops = _udp_drops(self._inode)
        if drops is not None and drops > self._kernel_drops:
            self.metrics.inc("input_kernel_drops_total", drops - self._kernel_drops)
            self.logger.warning(
                "%s: the kernel dropped %d datagrams (receive buffer full); "
                "consider raising receive_buffer_bytes",
                self.owner.context.name,
                drops - self._kernel_drops,
            )
            self._kernel_drops = drops
        if self.sock is not None:
            self._drops_timer = self.loop.call_later(_KERNEL_DROPS_INTERVAL, self._check_drops)

    def close(self) -> None:
        if self._drops_timer is not None:
            self._drops_timer.cancel()
            self._drops_timer = None
        if self.sock is not None:
            self.drain()  # what the kernel already holds for us is read, not lost
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


def _udp_drops(inode: int) -> int | None:
    """The ``drops`` column of /proc/net/udp{,6} for the socket with ``inode``."""
    wanted = str(inode)
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as file:
                next(file, None)
                for line in file:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == wanted:
                        return int(fields[12])
        except OSError:
            continue
    return None
