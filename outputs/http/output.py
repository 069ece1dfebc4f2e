"""The ``http`` output: one request per write, its body built from the chunks' encoded lines.

Records are NDJSON in the buffer already, so the body is the chunks' bytes as they are (``ndjson``)
or their lines joined into an array (``json``): nothing is decoded. aiohttp is imported when the
output starts, so a config validates on an install without the ``http`` extra.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from common.redact import quote_body, redact_url
from common.tls import client_context
from outputs.base import (
    Batching,
    BlockedError,
    Chunk,
    FatalError,
    Output,
    OutputContext,
    RetryableError,
)
from outputs.compression import gzip_fast
from outputs.http.config import HttpConfig

if TYPE_CHECKING:
    import aiohttp

RETRYABLE_STATUSES = frozenset({408, 429})
"""4xx answers that say "later", not "never" (every 5xx is retried too)."""
AUTH_STATUSES = frozenset({401, 403, 407})
"""Answers about the credentials, not the data: the records wait (``BlockedError``)."""


def build_body(chunks: Sequence[Chunk], fmt: str) -> bytes:
    """The request body for ``chunks``, in order: NDJSON (every record followed by a newline) or,
    for ``json``, one JSON array of the records."""
    if fmt == "json":
        return b"[" + b",".join(line for chunk in chunks for line in chunk.lines()) + b"]"
    return b"".join(chunk.data() for chunk in chunks)


def build_headers(config: HttpConfig) -> dict[str, str]:
    """Content-Type, Content-Encoding and basic auth, then the user's headers over them."""
    headers = {"Content-Type": config.content_type}
    if config.compress == "gzip":
        headers["Content-Encoding"] = "gzip"
    if config.http_user is not None:
        pair = f"{config.http_user}:{config.http_passwd or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    headers.update(config.headers)
    return headers


def classify(status: int, body: bytes, where: str) -> None:
    """Return for a 2xx answer; raise what the agent should do with any other."""
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} from {where}: {quote_body(body)}".rstrip(": ")
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise RetryableError(reason)
    if status in AUTH_STATUSES:
        raise BlockedError(reason, "auth")
    if 300 <= status < 400:
        # A redirect is about the address, not the data: retried (retry_limit applies), so the
        # url can be fixed before anything is dead-lettered.
        raise RetryableError(f"{reason} (a redirect: set url to the final address)")
    raise FatalError(reason)


def _ssl_context(config: HttpConfig) -> ssl.SSLContext | None:
    if not config.url.startswith("https://"):
        return None
    return client_context(config.ca_file, config.tls_verify)


class HttpOutput(Output):
    type_name = "http"
    config: HttpConfig

    def __init__(self, config: HttpConfig, context: OutputContext) -> None:
        super().__init__(config, context)
        self._headers = build_headers(config)
        self._ssl = _ssl_context(config)
        self._where = redact_url(config.url)
        self._session: aiohttp.ClientSession | None = None
        self._aiohttp: Any = None

    async def start(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else False,
                limit=self.config.workers,
            ),
            timeout=aiohttp.ClientTimeout(total=float(self.config.timeout)),
            skip_auto_headers=("User-Agent",),
        )

    @property
    def batching(self) -> Batching:
        """Chunks ready at once share a request up to ``max_batch_bytes``; nothing waits."""
        limit = int(self.config.max_batch_bytes)
        return Batching(max_chunks=64, max_bytes=limit) if limit else Batching()

    def batch_key(self, chunk: Chunk) -> Hashable:
        return None  # nothing in the request depends on the tag: tags share requests

    async def send(self, chunks: Sequence[Chunk]) -> None:
        """One request carrying ``chunks``; returns once the server answered 2xx."""
        body = build_body(chunks, self.config.format)
        if self.config.compress == "gzip":
            body = gzip_fast(body)
        status, answer = await self._request(body)
        classify(status, answer, self._where)

    async def _request(self, body: bytes) -> tuple[int, bytes]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        aiohttp = self._aiohttp
        try:
            try:
                return await self._exchange(body)
            except aiohttp.ServerDisconnectedError:
                # a pooled keep-alive connection the server had closed: one more try
                return await self._exchange(body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.ready = False
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise RetryableError(f"{self._where}: {detail}") from None

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.request(
            self.config.method,
            self.config.url,
            data=body,
            headers=self._headers,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
        self.ready = True
        return answer.status, payload

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
