"""The stream inputs' listening sockets, with an accept loop of their own instead of
``loop.create_server``: a connection over ``max_connections`` or over the process's open-file
budget is refused before any transport is built, and an accept that fails while a connection
waits (EMFILE under uvloop would be silent) is counted and retried shortly, the connection left
waiting in the backlog."""

from __future__ import annotations

import asyncio
import errno
import functools
import math
import resource
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.inputs.base import InputContext
from agent.resources import SPARE_FILES

ACCEPTS_PER_WAKEUP = 64
BACKLOG = 1024
ACCEPT_PAUSE = 0.5
"""Seconds accepting pauses after an accept failed for want of resources (EMFILE)."""
OUT_OF_DESCRIPTORS_FOR = 5.0
"""How long after it refused a connection for want of descriptors (the open-file budget used up,
or an accept that failed with EMFILE) the listener still says so in /readyz: a flood is refused
in a burst, and a probe a moment later must still see why."""
REFUSAL_LOG_INTERVAL = 10.0
"""Refused connections are logged at most once per interval per input (with a count)."""


class ListenerOwner(Protocol):
    """What a listener asks of the input that owns it."""

    @property
    def ready(self) -> bool: ...

    @property
    def listen_path(self) -> str: ...

    def admits(self, pending: int = 0) -> bool: ...

    def within_file_budget(self, pending: int = 0) -> bool: ...

    def refused(self, source: str, reason: str, detail: str = "") -> None: ...

    def make_protocol(self) -> asyncio.Protocol: ...


def format_address(address: Any) -> str:
    """The peer as ``ip:port`` (``[ip]:port`` for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


class RefusalLog:
    """One warning when refusing starts, then at most one per interval with the count."""

    def __init__(self, context: InputContext) -> None:
        self.context = context
        self._last = -math.inf
        self._unlogged = 0

    def note(self, source: str, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last < REFUSAL_LOG_INTERVAL:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more refused since the last warning)" if self._unlogged else ""
        self._last, self._unlogged = now, 0
        self.context.logger.warning(
            "%s: refusing a connection from %s: %s%s; counted in "
            'input_connections_rejected_total{reason="%s"}, logged at most every %gs',
            self.context.name,
            source or "a client",
            detail,
            more,
            reason,
            REFUSAL_LOG_INTERVAL,
        )


class _Setup:
    """One accepted connection on its way to the owner; ``protocol`` once made."""

    __slots__ = ("protocol",)

    def __init__(self) -> None:
        self.protocol: asyncio.Protocol | None = None


class StreamListener:
    """Listening stream sockets with our own accept loop (see the module's docstring). Offers
    what ``SyslogInput`` used of ``asyncio.Server``: ``sockets``, ``close``, ``wait_closed``."""

    def __init__(
        self, owner: ListenerOwner, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket]
    ) -> None:
        self.owner = owner
        self.loop = loop
        self.sockets = sockets
        self._pending: set[asyncio.Task[Any]] = set()
        """Connection setups not finished yet (``wait_closed`` awaits them)."""
        self._unsettled: set[_Setup] = set()
        """Connections accepted that the owner has not counted yet: from the accept until the
        owner registers (or refuses) the connection in ``connection_made`` and calls
        ``settled``, or until the setup fails. Counting one here and in the owner at once
        refused connections under the limit; counting it in neither (between the protocol made
        and ``connection_made``, a turn of the loop later) let a flood build transports, each
        holding descriptors, past the limit."""
        self._setups: dict[asyncio.Protocol, _Setup] = {}
        """The setup of each protocol made whose connection the owner has not settled yet."""
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        self._descriptors_failed = -math.inf
        for sock in sockets:
            sock.setblocking(False)
            sock.listen(BACKLOG)
            loop.add_reader(sock.fileno(), self._accept, sock)

    @classmethod
    def tcp(
        cls, owner: ListenerOwner, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> StreamListener:
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                if port == 0:
                    break  # one socket: a second family would get another free port
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return cls(owner, loop, sockets)

    @classmethod
    def unix(
        cls, owner: ListenerOwner, loop: asyncio.AbstractEventLoop, path: str
    ) -> StreamListener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        return cls(owner, loop, [sock])

    def _accept(self, listening: socket.socket) -> None:
        owner = self.owner
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                # EMFILE/ENFILE (out of descriptors), ENOBUFS/ENOMEM: the connection stays in
                # the backlog; try again shortly instead of spinning on a readable socket.
                if error.errno in (errno.EMFILE, errno.ENFILE):
                    self._descriptors_failed = time.monotonic()
                    if not _connection_waiting(listening):
                        # The kernel takes a descriptor before it looks at the backlog: at the
                        # limit, an accept after the last waiting connection fails too. Nothing
                        # was refused; the next connection wakes the loop again.
                        return
                owner.refused("", "accept_error", f"accept failed: {error}")
                self._pause()
                return
            source = format_address(address) if address else owner.listen_path
            unsettled = len(self._unsettled)
            if not owner.admits(unsettled):
                owner.refused(source, "max_connections" if owner.ready else "stopping")
                conn.close()
                continue
            if not owner.within_file_budget(unsettled):
                self._descriptors_failed = time.monotonic()
                owner.refused(source, "open_files")
                conn.close()
                continue
            setup = _Setup()
            self._unsettled.add(setup)
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(self._protocol_factory(setup), conn)
            )
            self._pending.add(task)
            task.add_done_callback(functools.partial(self._connected, setup))

    @property
    def out_of_descriptors(self) -> bool:
        """A connection was refused for want of file descriptors just now (the budget used up,
        or an accept or the accepted connection's setup failed with EMFILE): the process is at its
        open-file limit even if the connections it holds are within their budget (the
        buffer's files, HTTP and outputs hold descriptors too)."""
        return time.monotonic() - self._descriptors_failed < OUT_OF_DESCRIPTORS_FOR

    def _protocol_factory(self, setup: _Setup) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            protocol = setup.protocol = self.owner.make_protocol()
            self._setups[protocol] = setup
            return protocol

        return make

    def settled(self, protocol: asyncio.Protocol) -> None:
        """The owner has registered or refused this protocol's connection: from now on the owner
        counts it (or it is gone), so the accept loop stops counting it."""
        setup = self._setups.pop(protocol, None)
        if setup is not None:
            self._unsettled.discard(setup)

    def _connected(self, setup: _Setup, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        self._unsettled.discard(setup)
        if setup.protocol is not None:
            self._setups.pop(setup.protocol, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            # A setup that fails for want of descriptors shows in /readyz as a failed accept
            # does (neither asyncio nor uvloop 0.23 takes a new descriptor here, so it is rare).
            if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
                self._descriptors_failed = time.monotonic()
            self.owner.refused("", "accept_error", f"connection setup failed: {error}")

    def _pause(self) -> None:
        if self._resume is not None or self._closed:
            return
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())
        self._resume = self.loop.call_later(ACCEPT_PAUSE, self._unpause)

    def _unpause(self) -> None:
        self._resume = None
        if self._closed:
            return
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _connection_waiting(listening: socket.socket) -> bool:
    """A connection is waiting in the listening socket's backlog (a poll of it takes no
    descriptor, unlike ``select.select``, which also fails past descriptor 1023)."""
    poller = select.poll()
    poller.register(listening.fileno(), select.POLLIN)
    return bool(poller.poll(0))


OPEN_CONNECTIONS = [0]
"""Stream connections open in the process, all inputs together."""


def connection_budget() -> int:
    """How many stream connections the open-file limit allows, all inputs together."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return max(soft - SPARE_FILES, soft // 2)
