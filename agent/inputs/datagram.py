"""The datagram sockets of the syslog input (UDP and UNIX datagram): a non-blocking socket read
from ``loop.add_reader`` and drained until EAGAIN (at most ``_DATAGRAMS_PER_WAKEUP`` per
wake-up), so one callback submits a whole batch. Nothing pushes back on a datagram sender: when
the sink is full it counts the drop, and what the kernel drops for want of receive buffer is read
from /proc/net/udp and counted too.

The reader takes its settings as arguments and imports nothing of the input that owns it."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Any

from agent.inputs.base import InputContext
from agent.inputs.listener import format_address
from agent.logs import REPEATS

_DATAGRAMS_PER_WAKEUP = 1024
_KERNEL_DROPS_INTERVAL = 5.0
_SO_RCVBUFFORCE_LINUX = 33 if sys.platform.startswith("linux") else None


class DatagramReader:
    """A bound UDP or UNIX datagram socket drained from ``loop.add_reader``."""

    def __init__(
        self,
        context: InputContext,
        loop: asyncio.AbstractEventLoop,
        max_message_bytes: int,
        receive_buffer_bytes: int | None,
    ) -> None:
        self.context = context
        self.loop = loop
        self.sink = context.sink
        self.metrics = context.metrics
        self.logger: logging.Logger = context.logger
        self.limit = int(max_message_bytes)
        self.wanted_receive_buffer = receive_buffer_bytes
        # One byte over the limit tells a cut datagram from one that fits exactly.
        self.buffer = bytearray(self.limit + 1)
        self.view = memoryview(self.buffer)
        self.sock: socket.socket | None = None
        self.bound = ""
        self.own_path = ""
        self._inode = 0
        self._kernel_drops = 0
        self._drops_timer: asyncio.TimerHandle | None = None
        self._sources: dict[Any, str] = {}
        """Sender address -> its text (the ``source`` of the batch)."""
        self.receive_buffer = 0
        """Bytes the kernel granted for receive_buffer_bytes (0: the kernel default)."""

    def open_udp(self, host: str, port: int, listen: str) -> None:
        """Bind ``host:port`` (``listen`` as configured, for the error message)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._set_receive_buffer(sock)
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise OSError(
                error.errno, f"{self.context.name}: cannot bind {listen}: {error}"
            ) from error
        self.bound = format_address(sock.getsockname())
        self._serve(sock)
        self._inode = os.fstat(sock.fileno()).st_ino
        self._kernel_drops = _udp_drops(self._inode) or 0
        self._drops_timer = self.loop.call_later(_KERNEL_DROPS_INTERVAL, self._check_drops)

    def open_unix(self, path: str) -> None:
        """Bind the UNIX datagram socket file ``path`` (its directory prepared by the owner)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._set_receive_buffer(sock)
            sock.bind(path)
        except OSError as error:
            sock.close()
            raise OSError(
                error.errno, f"{self.context.name}: cannot bind {path}: {error}"
            ) from error
        self.bound = self.own_path = path
        self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self.drain)

    def _set_receive_buffer(self, sock: socket.socket) -> None:
        wanted = self.wanted_receive_buffer
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
            self.logger.info("%s: receive buffer %d bytes", self.context.name, effective)
        else:
            self.logger.warning(
                "%s: receive buffer %d bytes requested, only %d granted "
                "(raise net.core.rmem_max or grant CAP_NET_ADMIN)",
                self.context.name,
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
                    "%s: receive failed: %s", self.context.name, error, extra=REPEATS
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
                self.context.name,
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
