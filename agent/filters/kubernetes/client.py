"""Where the API server is, how to authenticate, and the list+watch loops.

In a cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the service
account's CA and token; the token file is re-read whenever it changed on disk (kubelet rotates
projected tokens) and after a 401. Outside a cluster: a kubeconfig's current context (server,
CA, bearer token or token file, client certificate). aiohttp (the ``kubernetes`` extra) is
imported when the watch starts, not when the config is read.

A watch is one list (its ``resourceVersion``), then watch requests from the last version seen,
with bookmarks so the version stays fresh on a quiet node. ``410 Gone`` (the version was
compacted away) means a fresh list; any other failure backs off (exponentially, with jitter,
up to ``retry_max``) while the cache keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from agent.filters.kubernetes.cache import Status, WatchEvent
from agent.filters.kubernetes.config import KubernetesConfig

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class Credentials:
    """The server, TLS context and a token source, from the config or a kubeconfig."""

    def __init__(self, config: KubernetesConfig) -> None:
        self.token_file = ""
        self.static_token = ""
        self._token = ""
        self._token_stamp: tuple[int, int, int] | None = None
        verify = config.tls_verify
        cafile = cadata = certfile = keyfile = ""
        certdata = keydata = b""
        if config.kubeconfig:
            (
                self.server,
                cafile,
                cadata,
                certfile,
                keyfile,
                certdata,
                keydata,
                self.static_token,
                self.token_file,
                insecure,
            ) = _from_kubeconfig(config.kubeconfig)
            verify = verify and not insecure
        else:
            self.server = config.kube_url or _in_cluster_url()
            cafile = config.kube_ca_file if Path(config.kube_ca_file).exists() else ""
            self.token_file = config.kube_token_file
        self.server = self.server.rstrip("/")
        self.ssl: ssl.SSLContext | bool = False
        if self.server.startswith("https://"):
            context = ssl.create_default_context(cafile=cafile or None, cadata=cadata or None)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if certdata:
                _load_client_pair(context, certdata, keydata)
            elif certfile:
                context.load_cert_chain(certfile, keyfile or None)
            self.ssl = context

    def token(self, force: bool = False) -> str:
        """The bearer token; the file is read again when its inode, size or mtime changed."""
        if self.static_token:
            return self.static_token
        if not self.token_file:
            return ""
        try:
            st = os.stat(self.token_file)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if force or stamp != self._token_stamp:
                self._token = Path(self.token_file).read_text().strip()
                self._token_stamp = stamp
        except OSError as exc:
            log.warning("kubernetes: cannot read token file %s: %s", self.token_file, exc)
        return self._token


def _in_cluster_url() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ValueError(
            "kube_url is empty and KUBERNETES_SERVICE_HOST is not set (outside a cluster, set "
            "kube_url or kubeconfig)"
        )
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def _load_client_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """load_cert_chain reads files only: write the pair to a private temporary file, load it,
    remove it."""
    fd, path = tempfile.mkstemp(prefix="kube-client-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(cert + b"\n" + key)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


def _read_structured(path: str) -> Any:
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise ValueError(
            f"kubeconfig {path}: not JSON, and PyYAML is not installed to read YAML"
        ) from None
    return yaml.safe_load(text)


def _named(items: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return dict(item.get(what) or {})
    raise ValueError(f"kubeconfig {path}: no {what} named {name!r}")


def _from_kubeconfig(path: str) -> tuple[Any, ...]:
    """(server, cafile, cadata, certfile, keyfile, certdata, keydata, token, token_file,
    insecure) of the current context; ValueError naming what is missing."""
    try:
        doc = _read_structured(path)
    except OSError as exc:
        raise ValueError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"kubeconfig {path}: not a kubeconfig")
    current = doc.get("current-context")
    if not current:
        raise ValueError(f"kubeconfig {path}: no current-context")
    context = _named(doc.get("contexts"), current, "context", path)
    cluster = _named(doc.get("clusters"), context.get("cluster", ""), "cluster", path)
    user = (
        _named(doc.get("users"), context.get("user", ""), "user", path)
        if context.get("user")
        else {}
    )
    base = Path(path).parent

    def rel(value: str) -> str:
        return str(base / value) if value and not os.path.isabs(value) else value

    server = cluster.get("server", "")
    if not server:
        raise ValueError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    cadata = ""
    if cluster.get("certificate-authority-data"):
        cadata = base64.b64decode(cluster["certificate-authority-data"]).decode()
    certdata = keydata = b""
    if user.get("client-certificate-data"):
        certdata = base64.b64decode(user["client-certificate-data"])
        keydata = base64.b64decode(user.get("client-key-data", ""))
    return (
        server,
        rel(cluster.get("certificate-authority", "")),
        cadata,
        rel(user.get("client-certificate", "")),
        rel(user.get("client-key", "")),
        certdata,
        keydata,
        user.get("token", ""),
        rel(user.get("tokenFile", "")),
        bool(cluster.get("insecure-skip-tls-verify", False)),
    )


class Watcher:
    """List, then watch, one kind of object for ever; ``on_list(items)`` and
    ``on_event(type, raw object) -> its resourceVersion`` update the cache. Runs as the
    filter's background task."""

    def __init__(
        self,
        kind: str,
        path: str,
        params: dict[str, str],
        list_type: type[Any],
        on_list: Callable[[list[Any]], None],
        on_event: Callable[[str, msgspec.Raw], str],
        session: Any,
        credentials: Credentials,
        config: KubernetesConfig,
        metrics: Any,
    ) -> None:
        self.kind = kind
        self.path = path
        self.params = params
        self._list_decoder = msgspec.json.Decoder(list_type)
        self._event_decoder = msgspec.json.Decoder(WatchEvent)
        self.on_list = on_list
        self.on_event = on_event
        self.session = session
        self.credentials = credentials
        self.config = config
        self.metrics = metrics
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.lists = 0
        self.watches = 0

    def _url(self, extra: dict[str, str]) -> str:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {**self.params, **extra}.items())
        return f"{self.credentials.server}{self.path}" + (f"?{query}" if query else "")

    def _headers(self, force: bool = False) -> dict[str, str]:
        token = self.credentials.token(force)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def run(self) -> None:
        delay = 0.0
        force_token = False
        while True:
            try:
                if not self.resource_version:
                    await self._list(force_token)
                await self._watch(force_token)
                delay = 0.0
                force_token = False
            except asyncio.CancelledError:
                raise
            except Gone:
                self.metrics.inc("filter_kubernetes_relists_total", resource=self.kind)
                log.info("kubernetes: %s watch expired (410 Gone); listing again", self.kind)
                self.resource_version = ""
            except Exception as exc:  # the API server away, a reset, a bad answer
                force_token = isinstance(exc, ApiError) and exc.status == 401
                self.metrics.inc("filter_kubernetes_api_errors_total", resource=self.kind)
                delay = min(float(self.config.retry_max), max(0.25, delay * 2))
                log.warning(
                    "kubernetes: %s %s; retrying in %.1fs (records keep the cached metadata)",
                    self.kind,
                    exc if str(exc) else type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _list(self, force_token: bool) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=float(self.config.request_timeout))
        async with self.session.get(
            self._url({}),
            headers=self._headers(force_token),
            ssl=self.credentials.ssl,
            timeout=timeout,
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise ApiError(response.status, _status_message(body))
        listed = self._list_decoder.decode(body)
        self.on_list(listed.items)
        self.resource_version = listed.metadata.resourceVersion
        self.lists += 1
        self.synced.set()

    async def _watch(self, force_token: bool) -> None:
        import aiohttp

        watch_timeout = float(self.config.watch_timeout)
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": str(int(watch_timeout)),
        }
        timeout = aiohttp.ClientTimeout(
            total=watch_timeout + 30, sock_connect=float(self.config.request_timeout)
        )
        async with self.session.get(
            self._url(params),
            headers=self._headers(force_token),
            ssl=self.credentials.ssl,
            timeout=timeout,
        ) as response:
            if response.status == 410:
                raise Gone()
            if response.status != 200:
                raise ApiError(response.status, _status_message(await response.read()))
            self.watches += 1
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(line)
            if pending.strip():
                self._event(pending)

    def _event(self, line: bytes) -> None:
        event = self._event_decoder.decode(line)
        if event.type == "ERROR":
            status = msgspec.json.decode(event.object, type=Status)
            if status.code == 410:
                raise Gone()
            raise ApiError(status.code or 500, status.message or status.reason)
        if event.type == "BOOKMARK":
            version = _resource_version(event.object)
        else:
            version = self.on_event(event.type, event.object)
        if version:
            self.resource_version = version


class _Version(msgspec.Struct):
    resourceVersion: str = ""


class _VersionOnly(msgspec.Struct):
    metadata: _Version = msgspec.field(default_factory=_Version)


def _resource_version(raw: msgspec.Raw) -> str:
    try:
        return msgspec.json.decode(raw, type=_VersionOnly).metadata.resourceVersion
    except msgspec.ValidationError:
        return ""


def _status_message(body: bytes) -> str:
    with contextlib.suppress(msgspec.DecodeError):
        status = msgspec.json.decode(body, type=Status)
        if status.message:
            return status.message
    return body[:200].decode("utf-8", "replace")
