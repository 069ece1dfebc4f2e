"""The agent's HTTP endpoint: /healthz, /readyz and /metrics (Prometheus text format).

A few lines of asyncio rather than a web framework: three GET routes, no bodies to parse, and the
core stays free of dependencies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from agent.metrics import Registry

log = logging.getLogger("agent.http")

Readiness = Callable[[], list[str]]
"""Returns the reasons the agent is not ready; empty when ready."""


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
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            target = rest.split(b" ", 1)[0].decode("latin-1").split("?", 1)[0]
            status, content_type, body = self._route(method.decode("latin-1"), target)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

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
