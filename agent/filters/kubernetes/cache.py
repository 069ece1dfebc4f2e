"""Pods and namespaces as the watch reports them, and the enrichment of each container.

The API objects are decoded into small structs that keep only what the filter adds to records
(msgspec skips the rest while decoding), so 1,000 pods cost little memory. Each container's
``kubernetes`` object is built once, when its pod changes, and looked up by container ID (full and
the 12-digit short form) or by namespace/pod/container; a record then costs a dict lookup and a
shallow copy.
"""

from __future__ import annotations

import fnmatch
import re
import time
from typing import Any

import msgspec

from agent.filters.kubernetes.config import KubernetesConfig


class OwnerReference(msgspec.Struct, kw_only=True):
    kind: str = ""
    name: str = ""
    controller: bool = False


class ObjectMeta(msgspec.Struct, kw_only=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    ownerReferences: list[OwnerReference] = []


class ContainerSpec(msgspec.Struct, kw_only=True):
    name: str = ""
    image: str = ""


class PodSpec(msgspec.Struct, kw_only=True):
    nodeName: str = ""
    containers: list[ContainerSpec] = []
    initContainers: list[ContainerSpec] = []
    ephemeralContainers: list[ContainerSpec] = []


class ContainerStatus(msgspec.Struct, kw_only=True):
    name: str = ""
    containerID: str = ""
    image: str = ""
    imageID: str = ""


class PodStatus(msgspec.Struct, kw_only=True):
    containerStatuses: list[ContainerStatus] = []
    initContainerStatuses: list[ContainerStatus] = []
    ephemeralContainerStatuses: list[ContainerStatus] = []


class Pod(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class Namespace(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class ListMeta(msgspec.Struct, kw_only=True):
    resourceVersion: str = ""


class PodList(msgspec.Struct, kw_only=True):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Pod] = []


class NamespaceList(msgspec.Struct, kw_only=True):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Namespace] = []


class WatchEvent(msgspec.Struct, kw_only=True):
    type: str = ""
    object: msgspec.Raw = msgspec.Raw(b"{}")


class Status(msgspec.Struct, kw_only=True):
    code: int = 0
    reason: str = ""
    message: str = ""


_CRONJOB_JOB = re.compile(r"^(.+)-(\d{8,10})$")


def strip_runtime(container_id: str) -> str:
    """``containerd://abc`` -> ``abc`` (the runtime's scheme is not part of the ID)."""
    _, sep, rest = container_id.partition("://")
    return rest if sep else container_id


def owner_of(pod: Pod) -> dict[str, str] | None:
    """The controller that runs the pod, one level up where its name says so: a ReplicaSet
    named ``<deployment>-<pod-template-hash>`` is the Deployment's, a Job named
    ``<cronjob>-<scheduled minute>`` the CronJob's."""
    for ref in pod.metadata.ownerReferences:
        if not ref.controller:
            continue
        kind, name = ref.kind, ref.name
        if kind == "ReplicaSet":
            template_hash = pod.metadata.labels.get("pod-template-hash")
            if template_hash and name.endswith("-" + template_hash):
                return {"kind": "Deployment", "name": name[: -len(template_hash) - 1]}
        elif kind == "Job":
            match = _CRONJOB_JOB.match(name)
            # A CronJob names its Jobs after the scheduled time in minutes since the epoch.
            if match and abs(int(match.group(2)) - time.time() / 60) < 366 * 24 * 60:
                return {"kind": "CronJob", "name": match.group(1)}
        return {"kind": kind, "name": name}
    return None


class PodCache:
    """This node's pods, the namespaces' labels, and every container's ``kubernetes`` object.

    ``by_id`` maps full and 12-digit container IDs to the container's object; ``by_pod`` maps
    (namespace, pod) to ``(pod object, {container name: container object})``. ``generation``
    grows whenever something was added, so the filter retries waiting records only then.
    """

    def __init__(self, config: KubernetesConfig, metrics: Any = None) -> None:
        self.config = config
        self.metrics = metrics
        self.pods: dict[str, Pod] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_pod: dict[tuple[str, str], tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
        self._ids_of: dict[str, list[str]] = {}
        self._deleted: dict[str, float] = {}
        self.generation = 0
        self._keys = [k for k in config.annotation_keys if not any(c in k for c in "*?[")]
        self._globs = [k for k in config.annotation_keys if any(c in k for c in "*?[")]

    # ------------------------------------------------------------------ pods
    def replace_pods(self, pods: list[Pod]) -> None:
        """A fresh list: pods missing from it were deleted meanwhile (kept for the TTL)."""
        seen = set()
        for pod in pods:
            seen.add(pod.metadata.uid)
            self.put_pod(pod)
        for uid in list(self.pods):
            if uid not in seen and uid not in self._deleted:
                self.delete_pod(self.pods[uid])

    def put_pod(self, pod: Pod) -> None:
        uid = pod.metadata.uid
        self._deleted.pop(uid, None)
        self._unindex(uid)
        self.pods[uid] = pod
        self._index(pod)
        self.generation += 1

    def delete_pod(self, pod: Pod, now: float | None = None) -> None:
        """Keep the pod's metadata for ``deleted_pod_ttl`` (late lines after a delete)."""
        uid = pod.metadata.uid
        if uid in self.pods:
            # The delete event carries the last state: index that (its final container IDs).
            self._unindex(uid)
            self.pods[uid] = pod
            self._index(pod)
        now = time.monotonic() if now is None else now
        self._deleted[uid] = now + self.config.deleted_pod_ttl

    def expire(self, now: float) -> int:
        """Forget deleted pods whose TTL passed; how many."""
        due = [uid for uid, until in self._deleted.items() if until <= now]
        for uid in due:
            del self._deleted[uid]
            self._unindex(uid)
            pod = self.pods.pop(uid, None)
            if pod is not None:
                key = (pod.metadata.namespace, pod.metadata.name)
                entry = self.by_pod.get(key)
                if entry is not None and entry[0].get("pod_id") == uid:
                    del self.by_pod[key]
        return len(due)

    # ------------------------------------------------------------ namespaces
    def replace_namespaces(self, namespaces: list[Namespace]) -> None:
        fresh = {ns.metadata.name: ns.metadata.labels for ns in namespaces}
        changed = {
            n
            for n in fresh.keys() | self.namespace_labels.keys()
            if fresh.get(n) != self.namespace_labels.get(n)
        }
        self.namespace_labels = fresh
        self._reindex_namespaces(changed)

    def put_namespace(self, namespace: Namespace) -> None:
        name = namespace.metadata.name
        if self.namespace_labels.get(name) != namespace.metadata.labels:
            self.namespace_labels[name] = namespace.metadata.labels
            self._reindex_namespaces({name})

    def delete_namespace(self, namespace: Namespace) -> None:
        # Pods of a deleted namespace keep its labels until they go themselves.
        pass

    def _reindex_namespaces(self, names: set[str]) -> None:
        if not names:
            return
        for uid, pod in list(self.pods.items()):
            if pod.metadata.namespace in names:
                self._unindex(uid)
                self._index(pod)
        self.generation += 1

    # -------------------------------------------------------------- indexing
    def _annotations(self, annotations: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        budget = int(self.config.annotations_max_bytes)
        left_out = 0
        for key in sorted(annotations):
            if (
                (self._keys or self._globs)
                and key not in self._keys
                and not any(fnmatch.fnmatchcase(key, glob) for glob in self._globs)
            ):
                continue
            value = annotations[key]
            cost = len(key.encode()) + len(value.encode())
            if cost > budget:
                left_out += 1
                continue
            budget -= cost
            out[key] = value
        if left_out and self.metrics is not None:
            self.metrics.inc("filter_kubernetes_annotations_left_out_total", left_out)
        return out

    def _pod_object(self, pod: Pod) -> dict[str, Any]:
        config = self.config
        meta = pod.metadata
        obj: dict[str, Any] = {
            "pod_name": meta.name,
            "namespace_name": meta.namespace,
            "pod_id": meta.uid,
            "host": pod.spec.nodeName,
        }
        if config.labels and meta.labels:
            obj["labels"] = dict(meta.labels)
        if config.annotations and meta.annotations:
            annotations = self._annotations(meta.annotations)
            if annotations:
                obj["annotations"] = annotations
        if config.namespace_labels:
            ns_labels = self.namespace_labels.get(meta.namespace)
            if ns_labels:
                obj["namespace_labels"] = dict(ns_labels)
        if config.owner:
            owner = owner_of(pod)
            if owner is not None:
                obj["owner"] = owner
        return obj

    def _index(self, pod: Pod) -> None:
        base = self._pod_object(pod)
        images = {
            c.name: c.image
            for c in (*pod.spec.initContainers, *pod.spec.containers, *pod.spec.ephemeralContainers)
        }
        containers: dict[str, dict[str, Any]] = {}
        for name, image in images.items():
            obj = dict(base)
            obj["container_name"] = name
            obj["container_image"] = image
            containers[name] = obj
        ids: list[str] = []
        status = pod.status
        for cs in (
            *status.initContainerStatuses,
            *status.containerStatuses,
            *status.ephemeralContainerStatuses,
        ):
            obj = dict(base)
            obj["container_name"] = cs.name
            obj["container_image"] = cs.image or images.get(cs.name, "")
            if cs.imageID:
                obj["container_hash"] = cs.imageID
            if cs.containerID:
                cid = strip_runtime(cs.containerID)
                obj["container_id"] = cid
                self.by_id[cid] = obj
                ids.append(cid)
                if len(cid) > 12:
                    self.by_id[cid[:12]] = obj
                    ids.append(cid[:12])
            containers[cs.name] = obj
        self._ids_of[pod.metadata.uid] = ids
        self.by_pod[(pod.metadata.namespace, pod.metadata.name)] = (base, containers)

    def _unindex(self, uid: str) -> None:
        for cid in self._ids_of.pop(uid, ()):
            obj = self.by_id.get(cid)
            if obj is not None and obj.get("pod_id") == uid:
                del self.by_id[cid]

    def lookup_id(self, container_id: str) -> dict[str, Any] | None:
        """A container's object by its ID: full, the 12-digit short form, or any prefix of 12
        digits or more; a runtime scheme (``containerd://``) is ignored."""
        obj = self.by_id.get(container_id)
        if obj is not None:
            return obj
        cid = strip_runtime(container_id)
        if len(cid) < 12:
            return None
        obj = self.by_id.get(cid) or self.by_id.get(cid[:12])
        if obj is not None and obj.get("container_id", "").startswith(cid):
            return obj
        return None

    def lookup_pod(self, namespace: str, pod: str, container: str | None) -> dict[str, Any] | None:
        entry = self.by_pod.get((namespace, pod))
        if entry is None:
            return None
        if container is not None:
            obj = entry[1].get(container)
            if obj is not None:
                return obj
        return entry[0]
