"""The agent's HTTP endpoint: /healthz, /readyz and /metrics (Prometheus text format).

A few lines of asyncio rather than a web framework: three GET routes, no bodies to parse, and the
core stays free of dependencies.

Bounded against hostile or broken clients so that health checks keep working while they try:
at most ``MAX_CONNECTIONS`` connections (when full, the oldest one still sending its request makes
room for the newcomer: idle and slow clients cannot crowd out a probe), request headers up to
``MAX_HEADER_BYTES`` (larger: ``431``), and ``REQUEST_TIMEOUT`` to send them (slowloris). Each
refusal is counted in ``http_rejected_connections_total{reason=...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec

from agent.metrics import Registry

log = logging.getLogger("agent.http")

Readiness = Callable[[], list[str]]
"""Returns the reasons the agent is not ready; empty when ready."""

MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 8 * 1024
"""Request line and headers; a probe or a Prometheus scrape sends a few hundred bytes."""
REQUEST_TIMEOUT = 5.0
"""From accept to the end of the request headers."""
_DISCARD_BYTES = 64 * 1024
"""Read (and dropped) after a 431 so that closing does not reset the connection under it."""


def split_host_port(listen: str, what: str = "listen") -> tuple[str, int]:
    """ "127.0.0.1:2020", "[::1]:2020", ":2020" -> (host, port); ValueError otherwise."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'{what} must be host:port such as "127.0.0.1:2020", got {listen!r}')
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


class HttpServer:
    def __init__(self, listen: str, registry: Registry, readiness: Readiness) -> None:
        self.host, self.port = split_host_port(listen, "agent.http_listen")
        self.registry = registry
        self.readiness = readiness
        self.metrics = registry.component("http", "http")
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, bool] = {}
        """Open connections, oldest first: False while the request is being read."""

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        connections = self._connections
        if len(connections) >= MAX_CONNECTIONS:
            victim = next((w for w, answering in connections.items() if not answering), None)
            if victim is None:
                self.metrics.inc("http_rejected_connections_total", reason="max_connections")
                return False
            # The oldest connection still sending its request makes room.
            self.metrics.inc("http_rejected_connections_total", reason="evicted_idle")
            del connections[victim]
            victim.transport.abort()
        connections[writer] = False
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit(writer):
            writer.transport.abort()
            return
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    request = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                self.metrics.inc("http_rejected_connections_total", reason="header_too_large")
                self._connections[writer] = True
                await self._respond(
                    writer,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    f"request headers over {MAX_HEADER_BYTES} bytes\n".encode(),
                )
                with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                    async with asyncio.timeout(1):
                        await reader.read(_DISCARD_BYTES)
                return
            except TimeoutError:
                self.metrics.inc("http_rejected_connections_total", reason="timeout")
                return
            if writer not in self._connections:
                return  # evicted meanwhile
            self._connections[writer] = True
            method, _, rest = request.partition(b" ")
            target = rest.split(b" ", 1)[0].decode("latin-1").split("?", 1)[0]
            status, content_type, body = self._route(method.decode("latin-1"), target)
            await self._respond(writer, status, content_type, body, head=method == b"HEAD")
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._connections.pop(writer, None)
            writer.close()

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        status: str,
        content_type: str,
        body: bytes,
        head: bool = False,
    ) -> None:
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(header.encode("latin-1") + (b"" if head else body))
        async with asyncio.timeout(REQUEST_TIMEOUT):
            await writer.drain()

    def _route(self, method: str, target: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if target == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if target == "/readyz":
            reasons = self.readiness()
            body = msgspec.json.encode({"ready": not reasons, "reasons": reasons}) + b"\n"
            status = "200 OK" if not reasons else "503 Service Unavailable"
            return status, "application/json", body
        if target == "/metrics":
            return (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.registry.render().encode(),
            )
        return "404 Not Found", "text/plain", b"try /healthz, /readyz or /metrics\n"
