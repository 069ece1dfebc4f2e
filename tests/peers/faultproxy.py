"""A small HTTP reverse proxy on loopback that can be told to misbehave, for output tests.

It forwards every request to ``target`` unchanged (the Host header too, so signed requests stay
valid) until a rule says otherwise. Rules apply to requests matching a predicate, a number of
times or until cleared:

    with FaultProxy("http://127.0.0.1:9000") as proxy:
        proxy.throttle(times=3)                   # 503 SlowDown (S3's throttling XML)
        proxy.fail(500, body=b"...", times=1)     # any status and body
        proxy.delay(2.0)                          # forward after a pause
        proxy.slow_answer(3.0)                    # forward at once, answer 3 s later
        proxy.drop(times=1)                       # close the connection, no answer
        proxy.hang(when=lambda r: r.method == "PUT")  # never answer (nor read the body)
        proxy.down(); proxy.up()                  # refuse connections (listener closed)
        proxy.clear()
        proxy.requests                            # (method, path_qs) of everything received

The proxy runs its own event loop in a thread, so it serves sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout, web

from tests.conftest import free_port
from tests.peers.base import Peer

Predicate = Callable[[web.Request], bool]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<RequestId>FAULTPROXY</RequestId></Error>"
)
SERVICE_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
    b"<Message>Service is unable to handle request.</Message>"
    b"<RequestId>FAULTPROXY</RequestId></Error>"
)


@dataclass
class Rule:
    action: str  # "respond" | "delay" | "slow_answer" | "drop" | "hang"
    when: Predicate
    times: int | None  # None: until cleared
    status: int = 503
    body: bytes = b""
    content_type: str = "application/xml"
    seconds: float = 0.0
    hits: int = 0


def always(_request: web.Request) -> bool:
    return True


class FaultProxy(Peer):
    def __init__(self, target: str, port: int | None = None) -> None:
        self.target = target.rstrip("/")
        self.port = port or free_port()
        self.requests: list[tuple[str, str]] = []
        self.faults = 0
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: ClientSession | None = None
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------ control

    def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        times: int | None = None,
        when: Predicate = always,
        content_type: str = "application/xml",
    ) -> None:
        self._add(Rule("respond", when, times, status, body, content_type))

    def throttle(self, *, times: int | None = None, when: Predicate = always) -> None:
        """S3's throttling answer: 503 with a SlowDown error document."""
        self.respond(503, SLOW_DOWN, times=times, when=when)

    def unavailable(self, *, times: int | None = None, when: Predicate = always) -> None:
        self.respond(503, SERVICE_UNAVAILABLE, times=times, when=when)

    def fail(self, status: int, body: bytes = b"", **kwargs: object) -> None:
        self.respond(status, body, **kwargs)  # type: ignore[arg-type]

    def delay(self, seconds: float, *, times: int | None = None, when: Predicate = always) -> None:
        self._add(Rule("delay", when, times, seconds=seconds))

    def slow_answer(
        self, seconds: float, *, times: int | None = None, when: Predicate = always
    ) -> None:
        """Forward at once, answer ``seconds`` later: the write happened, the client may not
        know it."""
        self._add(Rule("slow_answer", when, times, seconds=seconds))

    def drop(self, *, times: int | None = None, when: Predicate = always) -> None:
        """Close the connection without an answer, before forwarding (a reset mid-request)."""
        self._add(Rule("drop", when, times))

    def hang(self, *, times: int | None = None, when: Predicate = always) -> None:
        """Accept the request and never answer it (nor read its body) until ``clear``."""
        self._add(Rule("hang", when, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self._loop.call_soon_threadsafe(self._release.set)

    def down(self) -> None:
        """Close the listener (new connections are refused) and drop open connections."""
        asyncio.run_coroutine_threadsafe(self._stop_site(), self._loop).result(timeout=30)

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start_site(), self._loop).result(timeout=30)

    def _add(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _match(self, request: web.Request) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.when(request):
                    rule.hits += 1
                    if rule.times is not None and rule.hits >= rule.times:
                        self._rules.remove(rule)
                    return rule
        return None

    # ------------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._site is None:
            return self._drop(request)
        self.requests.append((request.method, request.path_qs))
        rule = self._match(request)
        if rule is not None:
            self.faults += 1
            if rule.action == "respond":
                await request.read()
                return web.Response(
                    status=rule.status, body=rule.body, content_type=rule.content_type
                )
            if rule.action == "drop":
                return self._drop(request)
            if rule.action == "hang":
                self._release.clear()
                await self._release.wait()
                return self._drop(request)
            if rule.action == "delay":
                await asyncio.sleep(rule.seconds)
            if rule.action == "slow_answer":
                answer = await self._forward(request)
                await asyncio.sleep(rule.seconds)
                return answer
        return await self._forward(request)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Close the connection without an answer (what a crashed or unplugged peer does)."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=out_headers)

    async def _start_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _stop_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self._release.set()

    async def _open(self) -> None:
        self._session = ClientSession(
            timeout=ClientTimeout(total=300),
            auto_decompress=False,
            skip_auto_headers=["User-Agent", "Accept", "Accept-Encoding", "Content-Type"],
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._start_site()

    async def _close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
