"""HTTP to an Elasticsearch/OpenSearch cluster: hosts with round-robin, failover and temporary
ejection, authentication (basic, API key, bearer token, AWS SigV4), TLS and gzip.

aiohttp (and botocore for SigV4) are imported when the transport is built, not when the config
module is imported, so a config validates on an install without the ``elasticsearch`` extra.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.tls import client_context
from outputs.compression import gzip_fast
from outputs.elasticsearch.config import ElasticsearchConfig

if TYPE_CHECKING:
    import aiohttp


class TransportError(Exception):
    """No host answered (connection refused, reset, timeout, TLS failure)."""


@dataclass
class Host:
    url: str
    ejected_until: float = 0.0
    failures: int = 0


@dataclass
class Response:
    status: int
    body: bytes
    host: str


def build_ssl_context(config: ElasticsearchConfig) -> ssl.SSLContext | None:
    uses_tls = any(url.startswith("https://") for url in config.host_list)
    if not uses_tls:
        return None
    return client_context(config.ca_file, config.verify_tls, config.cert_file, config.key_file)


class SigV4Signer:
    """Signs requests for Amazon OpenSearch Service (``es``) or Serverless (``aoss``) with the
    botocore credential chain (environment, shared files, web identity / IRSA, instance role)."""

    def __init__(self, region: str | None, service: str) -> None:
        try:
            import botocore.session
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
        except ModuleNotFoundError:
            raise ValueError(
                "aws_auth needs botocore: pip install 'container-audit-agent[s3]'"
            ) from None
        session = botocore.session.get_session()
        self.region = region or session.get_config_variable("region")
        if not self.region:
            raise ValueError("aws_auth needs aws_region (or AWS_REGION in the environment)")
        self.service = service
        self._session = session
        self._credentials: Any = None
        self._auth_class = SigV4Auth
        self._request_class = AWSRequest

    async def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        if self._credentials is None:
            self._credentials = await asyncio.to_thread(self._session.get_credentials)
            if self._credentials is None:
                raise TransportError("aws_auth: no AWS credentials found")
        # A refresh (STS for web identity) may block: keep it off the event loop.
        frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        request = self._request_class(method=method, url=url, data=body, headers=dict(headers))
        self._auth_class(frozen, self.service, self.region).add_auth(request)
        headers.clear()
        headers.update({key: str(value) for key, value in request.headers.items()})


class Transport:
    def __init__(
        self,
        config: ElasticsearchConfig,
        logger: logging.Logger,
        on_eject: Callable[[str], None] | None = None,
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.config = config
        self.logger = logger
        self.on_eject = on_eject
        self.hosts = [Host(url.rstrip("/")) for url in config.host_list]
        self._next = 0
        self._ssl = build_ssl_context(config)
        self._headers = {"Accept": "application/json", **config.headers}
        if config.user:
            token = base64.b64encode(f"{config.user}:{config.password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        elif config.api_key:
            key = config.api_key
            if ":" in key:  # "id:key" as shown by the create API key call
                key = base64.b64encode(key.encode()).decode()
            self._headers["Authorization"] = f"ApiKey {key}"
        elif config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._signer = (
            SigV4Signer(config.aws_region, config.aws_service) if config.aws_auth else None
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else False,
                limit=max(4, self.config.workers * 2),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=float(self.config.timeout)),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def _order(self) -> list[Host]:
        """Live hosts in round-robin order, then ejected ones (earliest back first) as a last
        resort: with every host ejected, requests still try them rather than fail unseen."""
        now = time.monotonic()
        count = len(self.hosts)
        start = self._next % count
        self._next += 1
        rotated = self.hosts[start:] + self.hosts[:start]
        live = [host for host in rotated if host.ejected_until <= now]
        ejected = sorted(
            (host for host in rotated if host.ejected_until > now), key=lambda h: h.ejected_until
        )
        return live + ejected

    def eject(self, host: Host, reason: str) -> None:
        host.failures += 1
        host.ejected_until = time.monotonic() + float(self.config.host_eject_for)
        self.logger.warning(
            "host %s ejected for %.0fs: %s",
            host.url,
            float(self.config.host_eject_for),
            reason,
            extra={"repeats": True},  # rate-limited by the agent's log (agent.logs.REPEATS)
        )
        if self.on_eject is not None:
            self.on_eject(host.url)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        compress: bool = False,
        host: Host | None = None,
    ) -> Response:
        """Send to the first host that answers. An HTTP status (any) is an answer; a connection
        failure ejects the host and tries the next. Raises TransportError when none answered."""
        headers = dict(self._headers)
        data = body
        if body is not None:
            headers["Content-Type"] = content_type
            if compress:
                data = gzip_fast(body)
                headers["Content-Encoding"] = "gzip"
        failures: list[str] = []
        unavailable: Response | None = None
        for candidate in [host] if host is not None else self._order():
            url = candidate.url + path
            request_headers = dict(headers)
            if self._signer is not None:
                await self._signer.sign(method, url, request_headers, data or b"")
            try:
                try:
                    status, payload = await self._send(method, url, data, request_headers)
                except self._aiohttp.ServerDisconnectedError:
                    # a pooled keep-alive connection the server had closed: one more try
                    status, payload = await self._send(method, url, data, request_headers)
            except (TimeoutError, self._aiohttp.ClientError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                failures.append(f"{candidate.url}: {reason}")
                self.eject(candidate, reason)
                continue
            if status in (502, 503, 504) and len(self.hosts) > 1:
                # a proxy or a node that cannot serve: another host may
                self.eject(candidate, f"HTTP {status}")
                failures.append(f"{candidate.url}: HTTP {status}")
                unavailable = Response(status, payload, candidate.url)
                continue
            candidate.ejected_until = 0.0
            candidate.failures = 0
            return Response(status, payload, candidate.url)
        if unavailable is not None:
            return unavailable  # the caller treats the 5xx as retryable
        raise TransportError("; ".join(failures) or "no hosts")

    async def _send(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        async with self._client().request(method, url, data=data, headers=headers) as answer:
            return answer.status, await answer.read()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
