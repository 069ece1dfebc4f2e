"""A real HTTP server on loopback that takes whatever the ``http`` output posts and records it.

    with HttpSink() as sink:
        sink.respond(503, b"busy", times=2)     # the next two requests get 503, then 200 again
        sink.respond(400, b"bad", echo=True)    # the answer quotes the request's headers
        sink.requests                           # every request: method, path, headers, body
        sink.records()                          # the records of the 2xx-answered requests

The server (aiohttp.web) runs its own event loop in a thread, so it serves sync and async tests
alike: an output driven in the test's loop, or an agent process.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.conftest import free_port
from tests.peers.base import Peer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    """The body as it came over the wire (compressed if the client compressed it)."""
    status: int
    """What the sink answered."""

    @property
    def body(self) -> bytes:
        if self.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(self.raw)
        return self.raw

    def records(self) -> list[dict[str, Any]]:
        """The records posted (decoded JSON, any shape): a JSON array or NDJSON lines."""
        body = self.body
        if self.headers.get("Content-Type", "").startswith("application/json"):
            decoded: list[dict[str, Any]] = json.loads(body)
            return decoded
        return [json.loads(line) for line in body.split(b"\n") if line]


@dataclass
class _Answer:
    status: int
    body: bytes
    times: int | None
    echo: bool


class HttpSink(Peer):
    def __init__(self, path: str = "/ingest") -> None:
        self.port = free_port()
        self.path = path
        self.requests: list[Received] = []
        self._answers: list[_Answer] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def respond(
        self, status: int, body: bytes = b"", *, times: int | None = None, echo: bool = False
    ) -> None:
        """Answer ``status`` (and ``body``; with ``echo`` also every request header, as a
        debugging proxy does) to the next ``times`` requests, or to all until ``clear``."""
        with self._lock:
            self._answers.append(_Answer(status, body, times, echo))

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def records(self) -> list[dict[str, Any]]:
        return [record for request in self.accepted() for record in request.records()]

    def _next(self) -> _Answer:
        with self._lock:
            if not self._answers:
                return _Answer(200, b'{"ok":true}', None, False)
            answer = self._answers[0]
            if answer.times is not None:
                answer.times -= 1
                if answer.times == 0:
                    self._answers.pop(0)
            return answer

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        answer = self._next()
        body = answer.body
        if answer.echo:
            body += b"\n" + "\n".join(f"{k}: {v}" for k, v in request.headers.items()).encode()
        with self._lock:
            self.requests.append(
                Received(request.method, request.path, dict(request.headers), raw, answer.status)
            )
        return web.Response(status=answer.status, body=body, content_type="text/plain")

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress off: the test sees the body as it came over the wire.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> HttpSink:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
