"""The ``kubernetes`` filter: records in, records with ``kubernetes.*`` out.

A record's keys, in the order tried: its top-level ``container_id`` (Docker's syslog tag, full or
the 12-digit short form, a prefix of the full ID); ``kubernetes.container_id`` (the ``tail``
input's path); ``kubernetes.namespace_name`` + ``kubernetes.pod_name`` (+ ``container_name``);
a Docker-era container name ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`` in
``container_name``, which gives those without any lookup. A line of the container runtime itself
(``runtime_idents``) about an exec gets the metadata of the container it names, so the audit
filter's exec alert names the pod. A record with none of them passes unchanged.

Ingest never waits for the API server: a record whose container is not known (yet) waits in a
bounded side queue for ``wait_for_metadata``; it goes on enriched as soon as the watch reports
its pod (at the next ``flush``), or unenriched and counted when its time is up or the queue is
full. A waiting record may so come out after later records of other containers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from agent.filters.base import Batch, Filter, FilterContext, Record
from agent.filters.common import compile_regex
from agent.filters.kubernetes.cache import Namespace, NamespaceList, Pod, PodCache, PodList
from agent.filters.kubernetes.client import Credentials, Watcher
from agent.filters.kubernetes.config import KubernetesConfig

log = logging.getLogger(__name__)

_ENRICHED, _NO_KEY, _UNKNOWN = 0, 1, 2
_IDENTITY = frozenset(("namespace_name", "pod_name", "pod_id", "container_name", "container_id"))
"""What a container log file's path says; one container ID implies them all."""
_EXPIRE_EVERY = 1.0


def docker_name(name: str) -> dict[str, str] | None:
    """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`` (dockershim's container names) ->
    the kubernetes fields it spells; None for any other name."""
    parts = name.lstrip("/").split("_")
    if len(parts) != 6 or parts[0] != "k8s" or not all(parts[1:5]):
        return None
    return {
        "container_name": parts[1],
        "pod_name": parts[2],
        "namespace_name": parts[3],
        "pod_id": parts[4],
    }


class KubernetesFilter(Filter):
    counts_drops = False
    """Records that wait for their pod come out later (from ``flush``): not drops."""

    def __init__(self, config: KubernetesConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        if importlib.util.find_spec("aiohttp") is None:
            raise ValueError("needs aiohttp: pip install 'container-audit-agent[kubernetes]'")
        self.clock: Callable[[], float] = time.monotonic
        self.node_name = config.node_name or os.environ.get("NODE_NAME") or socket.gethostname()
        # A kubeconfig or kube_url is read now (its errors are config errors, seen by --check);
        # the in-cluster environment only when the watch starts, on the node.
        self.credentials: Credentials | None = (
            Credentials(config) if config.kubeconfig or config.kube_url else None
        )
        self.cache = PodCache(config, context.metrics)
        self._runtime_idents = frozenset(config.runtime_idents)
        self._runtime_search = compile_regex(config.runtime_pattern, "runtime_pattern").search
        self._pod_decoder = msgspec.json.Decoder(Pod)
        self._namespace_decoder = msgspec.json.Decoder(Namespace)
        self._waiting: deque[tuple[float, str, Record]] = deque()
        self._tried = -1
        self._reported_waiting = 0
        self._next_expire = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._session: Any = None
        self.pods_watch: Watcher | None = None
        self.namespaces_watch: Watcher | None = None

    # ---------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        import aiohttp  # the `kubernetes` extra; imported only when a filter runs

        if self.credentials is None:
            self.credentials = Credentials(self.config)
        self._session = aiohttp.ClientSession()
        metrics = self.context.metrics
        self.pods_watch = Watcher(
            "pods",
            "/api/v1/pods",
            {"fieldSelector": f"spec.nodeName={self.node_name}"},
            PodList,
            self.cache.replace_pods,
            self._on_pod,
            self._session,
            self.credentials,
            self.config,
            metrics,
        )
        watchers = [self.pods_watch]
        if self.config.namespace_labels:
            self.namespaces_watch = Watcher(
                "namespaces",
                "/api/v1/namespaces",
                {},
                NamespaceList,
                self.cache.replace_namespaces,
                self._on_namespace,
                self._session,
                self.credentials,
                self.config,
                metrics,
            )
            watchers.append(self.namespaces_watch)
        self._tasks = [
            asyncio.create_task(w.run(), name=f"kubernetes-{w.kind}-{self.context.name}")
            for w in watchers
        ]
        log.info(
            "kubernetes: watching pods of node %s on %s", self.node_name, self.credentials.server
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _on_pod(self, kind: str, raw: msgspec.Raw) -> str:
        pod = self._pod_decoder.decode(raw)
        if kind == "DELETED":
            self.cache.delete_pod(pod)
        else:
            self.cache.put_pod(pod)
        return pod.metadata.resourceVersion

    def _on_namespace(self, kind: str, raw: msgspec.Raw) -> str:
        namespace = self._namespace_decoder.decode(raw)
        if kind != "DELETED":
            self.cache.put_namespace(namespace)
        return namespace.metadata.resourceVersion

    # ----------------------------------------------------------------------- hot path
    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        lookup = self.cache.by_id.get
        runtime_idents = self._runtime_idents
        identity = _IDENTITY
        # Records get the cache's object itself: nested values are read-only to filters (see
        # agent.filters.base), and the cache builds a new object when a pod changes.
        held: list[int] | None = None
        last_k: Any = None  # the tail input gives a file's records one shared object:
        last: Any = None  # its answer, found once per batch
        index = -1
        for record in records:
            index += 1
            k = record.get("kubernetes")
            if k is None:
                cid = record.get("container_id")
                if cid is None:
                    if "container_name" not in record:
                        ident = record.get("ident")
                        if ident.__class__ is str and ident in runtime_idents:
                            self._runtime(record)
                        continue  # no key at all: the price of every other record
                else:
                    try:
                        obj = lookup(cid)
                    except TypeError:  # a list or dict where an ID belongs: left alone
                        obj = None
                    if obj is not None:
                        record["kubernetes"] = obj
                        continue
            elif k is last_k:
                record["kubernetes"] = last
                continue
            elif k.__class__ is dict:
                cid = k.get("container_id")
                if cid is not None:
                    try:
                        obj = lookup(cid)
                    except TypeError:
                        obj = None
                    if obj is not None:
                        if not k.keys() <= identity:
                            # anything else of the record's stays, over the pod's
                            obj = {**obj, **k}
                        # else the tail input's fields (from the path): the container's object
                        # holds the same values, found by that very container ID.
                        last_k, last = k, obj
                        record["kubernetes"] = obj
                        continue
            if self._slow(record) == _UNKNOWN:
                if held is None:
                    held = []
                held.append(index)
        if held is None:
            return [(tag, records)]
        return self._hold(tag, records, held)

    def _runtime(self, record: Record) -> None:
        """A runtime's line about an exec: the metadata of the container it names, if known
        (never held: the runtime's own lines are not delayed)."""
        message = record.get("message")
        if message.__class__ is not str:
            return
        match = self._runtime_search(message)
        if match is None:
            return
        found = next((g for g in match.groups() if g), None)
        obj = self.cache.lookup_id(found) if found else None
        if obj is not None:
            record["kubernetes"] = obj

    def _slow(self, record: Record) -> int:
        """Enrich ``record`` by whatever key it has; _ENRICHED, _NO_KEY or _UNKNOWN. The
        record's own ``kubernetes`` object is never changed (records may share it): it is
        replaced by a merged one."""
        cache = self.cache
        k = record.get("kubernetes")
        if k is not None and k.__class__ is not dict:
            return _NO_KEY  # someone else's field: left alone
        cid = record.get("container_id")
        if cid.__class__ is str and cid:
            obj = cache.lookup_id(cid)
            if obj is not None:
                record["kubernetes"] = obj if k is None else {**k, **obj}
                return _ENRICHED
        if k is None:
            name = record.get("container_name")
            parsed = docker_name(name) if name.__class__ is str else None
            if parsed is None:
                return _UNKNOWN if cid.__class__ is str and cid else _NO_KEY
            k = record["kubernetes"] = parsed
        kcid = k.get("container_id")
        if kcid.__class__ is str and kcid:
            obj = cache.lookup_id(kcid)
            if obj is not None:
                record["kubernetes"] = {**k, **obj}
                return _ENRICHED
        namespace, pod = k.get("namespace_name"), k.get("pod_name")
        if namespace.__class__ is str and pod.__class__ is str:
            container = k.get("container_name")
            if container.__class__ is not str:
                container = None
            obj = cache.lookup_pod(namespace, pod, container)
            if obj is not None:
                merged = {**k, **obj}
                if kcid:  # an earlier container of the pod (restarted): its own ID stays
                    merged["container_id"] = kcid
                record["kubernetes"] = merged
                return _ENRICHED
            return _UNKNOWN
        if (kcid.__class__ is str and kcid) or (cid.__class__ is str and cid):
            return _UNKNOWN
        return _NO_KEY

    def _hold(self, tag: str, records: list[Record], held: list[int]) -> list[Batch]:
        config = self.config
        limit = config.max_waiting_records
        if config.wait_for_metadata <= 0 or limit <= 0:
            self.context.metrics.inc(
                "filter_kubernetes_missing_records_total", len(held), reason="no_wait"
            )
            return [(tag, records)]
        deadline = self.clock() + config.wait_for_metadata
        waiting = self._waiting
        keep = set(held)
        out: list[Batch] = [(tag, [r for i, r in enumerate(records) if i not in keep])]
        overflow: list[tuple[float, str, Record]] = []
        for index in held:
            if len(waiting) >= limit:
                overflow.append(waiting.popleft())
            waiting.append((deadline, tag, records[index]))
        if overflow:
            self.context.metrics.inc(
                "filter_kubernetes_missing_records_total", len(overflow), reason="queue_full"
            )
            out.extend((t, [r]) for _, t, r in overflow)
        return out

    # ------------------------------------------------------------------ held records
    def flush(self, now: float) -> list[Batch]:
        cache = self.cache
        if now >= self._next_expire:
            self._next_expire = now + _EXPIRE_EVERY
            cache.expire(time.monotonic())
            self.context.metrics.set("filter_kubernetes_pods", len(cache.pods))
        waiting = self._waiting
        if not waiting:
            if self._reported_waiting:
                self._reported_waiting = 0
                self.context.metrics.set("filter_kubernetes_waiting_records", 0)
            return []
        out: list[Batch] = []
        if cache.generation != self._tried:
            self._tried = cache.generation
            still: deque[tuple[float, str, Record]] = deque()
            for item in waiting:
                if self._slow(item[2]) == _UNKNOWN:
                    still.append(item)
                else:
                    _append(out, item[1], item[2])
            self._waiting = waiting = still
        missing = 0
        while waiting and waiting[0][0] <= now:
            _, tag, record = waiting.popleft()
            _append(out, tag, record)
            missing += 1
        if missing:
            self.context.metrics.inc(
                "filter_kubernetes_missing_records_total", missing, reason="timeout"
            )
        self._reported_waiting = len(waiting)
        self.context.metrics.set("filter_kubernetes_waiting_records", len(waiting))
        return out

    def close(self) -> list[Batch]:
        out: list[Batch] = []
        waiting = self._waiting
        for _, tag, record in waiting:
            if self._slow(record) == _UNKNOWN:
                self.context.metrics.inc(
                    "filter_kubernetes_missing_records_total", reason="shutdown"
                )
            _append(out, tag, record)
        waiting.clear()
        return out


def _append(out: list[Batch], tag: str, record: Record) -> None:
    if out and out[-1][0] == tag:
        out[-1][1].append(record)
    else:
        out.append((tag, [record]))
