"""The kubernetes filter without an API server: the cache fed with pods as the watch decodes
them, the keys of syslog and tail records, the side queue, owners, annotations, kubeconfig."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.fields import set_field
from agent.filters.chain import FilterChain
from agent.filters.kubernetes.cache import Namespace, Pod, owner_of
from agent.filters.kubernetes.client import Credentials
from agent.filters.kubernetes.config import KubernetesConfig
from agent.filters.kubernetes.filter import KubernetesFilter, docker_name
from tests.doubles import RecordingMetrics
from tests.filter_helpers import Clock, make

CID = "3f4e5d6c7b8a" + "9" * 52
CID2 = "aa11bb22cc33" + "4" * 52


def pod(
    name: str = "web-7d4b9c8f5d-x2x9q",
    namespace: str = "shop",
    uid: str = "uid-1",
    containers: dict[str, str] | None = None,
    ids: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> Pod:
    containers = containers or {"app": "nginx:1.27"}
    ids = ids if ids is not None else {"app": "containerd://" + CID}
    raw: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "7",
            "labels": labels if labels is not None else {"app": "web"},
            "annotations": annotations or {},
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": c, "image": i} for c, i in containers.items()],
        },
        "status": {
            "containerStatuses": [
                {"name": c, "containerID": i, "image": containers[c], "imageID": "sha256:ff"}
                for c, i in ids.items()
            ]
        },
    }
    if owner:
        raw["metadata"]["ownerReferences"] = [
            {"kind": owner[0], "name": owner[1], "controller": True}
        ]
    return msgspec.json.decode(json.dumps(raw).encode(), type=Pod)


def kube(metrics: RecordingMetrics | None = None, **config: Any) -> KubernetesFilter:
    f = make(
        "kubernetes",
        metrics,
        kube_url="https://127.0.0.1:1",
        node_name="node-a",
        **config,
    )
    assert isinstance(f, KubernetesFilter)
    f.clock = Clock()
    return f


def clock_of(f: KubernetesFilter) -> Clock:
    """The clock ``kube`` gave the filter, to move its time."""
    assert isinstance(f.clock, Clock)
    return f.clock


def test_syslog_record_by_full_and_short_container_id() -> None:
    f = kube()
    f.cache.put_pod(
        pod(
            labels={"app": "web", "pod-template-hash": "7d4b9c8f5d"},
            owner=("ReplicaSet", "web-7d4b9c8f5d"),
        )
    )
    full = {"message": "a", "container_id": CID}
    short = {"message": "b", "container_id": CID[:12]}
    prefix = {"message": "c", "container_id": CID[:20]}
    [(tag, out)] = f.process("syslog", [full, short, prefix])
    assert tag == "syslog" and out == [full, short, prefix]
    for record in out:
        k = record["kubernetes"]
        assert k["pod_name"] == "web-7d4b9c8f5d-x2x9q"
        assert k["namespace_name"] == "shop"
        assert k["pod_id"] == "uid-1"
        assert k["host"] == "node-a"
        assert k["container_name"] == "app"
        assert k["container_id"] == CID
        assert k["container_image"] == "nginx:1.27"
        assert k["container_hash"] == "sha256:ff"
        assert k["labels"] == {"app": "web", "pod-template-hash": "7d4b9c8f5d"}
        assert k["owner"] == {"kind": "Deployment", "name": "web"}
    # The records share the cache's object, which filters never change in place: changing
    # one record's (a changed copy in its place, as agent.fields does) does not change the next.
    assert out[0]["kubernetes"] is out[1]["kubernetes"] is f.cache.by_id[CID]
    set_field(out[0], ("kubernetes", "pod_name"), "changed")
    assert out[0]["kubernetes"]["pod_name"] == "changed"
    assert out[1]["kubernetes"]["pod_name"] == "web-7d4b9c8f5d-x2x9q"


def test_tail_record_keeps_its_fields_and_gains_the_pods() -> None:
    f = kube()
    f.cache.put_pod(pod())
    by_id = {
        "message": "x",
        "kubernetes": {
            "container_id": CID,
            "pod_name": "web-7d4b9c8f5d-x2x9q",
            "namespace_name": "shop",
            "container_name": "app",
        },
    }
    # The pod's status does not name this container ID yet (an earlier run of the container).
    old = "cc" * 32
    by_name = {
        "message": "y",
        "kubernetes": {
            "container_id": old,
            "pod_name": "web-7d4b9c8f5d-x2x9q",
            "namespace_name": "shop",
            "container_name": "app",
        },
    }
    extra: dict[str, Any] = {
        "message": "z",
        "kubernetes": {"container_id": CID, "pod_name": "web-7d4b9c8f5d-x2x9q", "mine": "kept"},
    }
    [(_, out)] = f.process("kube.shop", [by_id, by_name, extra])
    assert extra["kubernetes"]["mine"] == "kept"
    assert extra["kubernetes"]["labels"] == {"app": "web"}
    assert out[0]["kubernetes"]["labels"] == {"app": "web"}
    assert out[0]["kubernetes"]["container_image"] == "nginx:1.27"
    assert out[1]["kubernetes"]["labels"] == {"app": "web"}
    assert out[1]["kubernetes"]["container_id"] == old


def test_docker_era_name_gives_pod_and_namespace_without_lookup() -> None:
    assert docker_name("/k8s_app_web-1_shop_uid-9_0") == {
        "container_name": "app",
        "pod_name": "web-1",
        "namespace_name": "shop",
        "pod_id": "uid-9",
    }
    assert docker_name("k8s_POD_web") is None
    assert docker_name("nginx") is None
    metrics = RecordingMetrics()
    f = kube(metrics, wait_for_metadata="1s")
    record = {"message": "m", "container_name": "k8s_app_web-1_shop_uid-9_0"}
    assert f.process("t", [record]) == [("t", [])]  # waits for the pod
    clock = clock_of(f)
    clock.now += 1.0
    [(tag, [out])] = f.flush(clock.now)
    assert tag == "t"
    assert out["kubernetes"] == {
        "container_name": "app",
        "pod_name": "web-1",
        "namespace_name": "shop",
        "pod_id": "uid-9",
    }
    assert metrics.counter("filter_kubernetes_missing_records_total", reason="timeout") == 1


def test_unknown_container_waits_then_is_enriched_when_the_pod_arrives() -> None:
    metrics = RecordingMetrics()
    f = kube(metrics)
    known_pod = pod(uid="uid-2", name="other", ids={"app": "docker://" + CID2})
    f.cache.put_pod(known_pod)
    early: dict[str, Any] = {"message": "early", "container_id": CID[:12]}
    known = {"message": "known", "container_id": CID2[:12]}
    plain = {"message": "no key"}
    assert f.process("s", [early, known, plain]) == [("s", [known, plain])]
    assert f.flush(clock_of(f).now + 0.1) == []  # nothing new in the cache: still waiting
    f.cache.put_pod(pod())
    assert f.flush(clock_of(f).now + 0.2) == [("s", [early])]
    assert early["kubernetes"]["pod_name"] == "web-7d4b9c8f5d-x2x9q"
    assert metrics.counter("filter_kubernetes_missing_records_total", reason="timeout") == 0


def test_unknown_container_passes_unenriched_after_wait_and_is_counted() -> None:
    metrics = RecordingMetrics()
    f = kube(metrics, wait_for_metadata="2s")
    record = {"message": "lost", "container_id": CID}
    assert f.process("s", [record]) == [("s", [])]
    assert f.flush(clock_of(f).now + 1.9) == []
    assert f.flush(clock_of(f).now + 2.0) == [("s", [record])]
    assert "kubernetes" not in record
    assert metrics.counter("filter_kubernetes_missing_records_total", reason="timeout") == 1


def test_side_queue_is_bounded_oldest_passes_on_counted() -> None:
    metrics = RecordingMetrics()
    f = kube(metrics, max_waiting_records=2)
    records = [{"message": str(i), "container_id": CID} for i in range(3)]
    out = f.process("s", records)
    assert out == [("s", []), ("s", [records[0]])]
    assert metrics.counter("filter_kubernetes_missing_records_total", reason="queue_full") == 1
    assert f.close() == [("s", records[1:])]


def test_no_wait_passes_at_once() -> None:
    metrics = RecordingMetrics()
    f = kube(metrics, wait_for_metadata=0)
    record = {"container_id": CID}
    assert f.process("s", [record]) == [("s", [record])]
    assert metrics.counter("filter_kubernetes_missing_records_total", reason="no_wait") == 1


def test_deleted_pod_is_kept_for_its_ttl() -> None:
    f = kube(deleted_pod_ttl="10s")
    p = pod()
    f.cache.put_pod(p)
    f.cache.delete_pod(p, now=100.0)
    assert f.cache.lookup_id(CID) is not None
    assert f.cache.expire(109.0) == 0
    assert f.cache.lookup_id(CID) is not None
    assert f.cache.expire(110.0) == 1
    assert f.cache.lookup_id(CID) is None
    assert f.cache.lookup_pod("shop", "web-7d4b9c8f5d-x2x9q", None) is None


def test_relist_keeps_pods_deleted_meanwhile_for_the_ttl() -> None:
    f = kube()
    f.cache.put_pod(pod())
    f.cache.replace_pods([pod(uid="uid-2", name="other", ids={"app": "containerd://" + CID2})])
    assert f.cache.lookup_id(CID) is not None  # gone from the list: kept, expiring
    assert "uid-1" in f.cache._deleted


def test_pod_update_replaces_old_ids_and_labels() -> None:
    f = kube()
    f.cache.put_pod(pod())
    f.cache.put_pod(pod(labels={"app": "web", "v": "2"}, ids={"app": "containerd://" + CID2}))
    assert f.cache.lookup_id(CID) is None
    obj = f.cache.lookup_id(CID2)
    assert obj is not None and obj["labels"] == {"app": "web", "v": "2"}


def test_namespace_labels_reach_its_pods() -> None:
    f = kube()
    f.cache.put_pod(pod())
    ns = msgspec.convert({"metadata": {"name": "shop", "labels": {"env": "prod"}}}, Namespace)
    f.cache.replace_namespaces([ns])
    obj = f.cache.lookup_id(CID)
    assert obj is not None and obj["namespace_labels"] == {"env": "prod"}
    ns2 = msgspec.convert({"metadata": {"name": "shop", "labels": {"env": "dev"}}}, Namespace)
    generation = f.cache.generation
    f.cache.put_namespace(ns2)
    assert f.cache.generation > generation
    obj = f.cache.lookup_id(CID)
    assert obj is not None and obj["namespace_labels"] == {"env": "dev"}


def test_labels_and_annotations_options() -> None:
    metrics = RecordingMetrics()
    f = kube(
        metrics,
        labels=False,
        annotation_keys=["keep.example.com/*", "exact"],
        annotations_max_bytes=40,
    )
    f.cache.put_pod(
        pod(
            annotations={
                "exact": "1",
                "keep.example.com/a": "2",
                "keep.example.com/big": "x" * 100,
                "other": "3",
            }
        )
    )
    obj = f.cache.lookup_id(CID)
    assert obj is not None and "labels" not in obj
    assert obj["annotations"] == {"exact": "1", "keep.example.com/a": "2"}
    assert metrics.counter("filter_kubernetes_annotations_left_out_total") == 1
    g = kube(annotations=False)
    g.cache.put_pod(pod(annotations={"a": "b"}))
    obj = g.cache.lookup_id(CID)
    assert obj is not None and "annotations" not in obj


@pytest.mark.parametrize(
    ("kind", "name", "labels", "expected"),
    [
        (
            "ReplicaSet",
            "web-7d4b9c8f5d",
            {"pod-template-hash": "7d4b9c8f5d"},
            ("Deployment", "web"),
        ),
        ("ReplicaSet", "standalone", {}, ("ReplicaSet", "standalone")),
        ("DaemonSet", "agent", {}, ("DaemonSet", "agent")),
        ("StatefulSet", "db", {}, ("StatefulSet", "db")),
        ("Job", "migrate", {}, ("Job", "migrate")),
        ("Job", f"backup-{int(time.time() // 60)}", {}, ("CronJob", "backup")),
        ("Job", "run-12345678901", {}, ("Job", "run-12345678901")),
    ],
)
def test_owner(kind: str, name: str, labels: dict[str, str], expected: tuple[str, str]) -> None:
    p = pod(labels=labels, owner=(kind, name))
    assert owner_of(p) == {"kind": expected[0], "name": expected[1]}


def test_records_without_keys_pass_unchanged_in_the_same_list() -> None:
    f = kube()
    records = [{"message": "a"}, {"message": "b", "kubernetes": "not ours"}]
    [(tag, out)] = f.process("t", records)
    assert tag == "t"
    assert out is records and records[1]["kubernetes"] == "not ours"


def test_kubeconfig_current_context(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    doc = {
        "current-context": "b",
        "contexts": [
            {"name": "a", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "b", "context": {"cluster": "c2", "user": "u2"}},
        ],
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://wrong:1"}},
            {
                "name": "c2",
                "cluster": {"server": "https://right:6443/", "insecure-skip-tls-verify": True},
            },
        ],
        "users": [
            {"name": "u1", "user": {"token": "wrong"}},
            {"name": "u2", "user": {"tokenFile": "token"}},
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    creds = Credentials(msgspec.convert({"kubeconfig": str(path)}, KubernetesConfig))
    assert creds.server == "https://right:6443"
    assert creds.token() == "from-file"
    import yaml

    path.write_text(yaml.safe_dump({**doc, "current-context": "missing"}))
    with pytest.raises(ValueError, match="no context named 'missing'"):
        Credentials(msgspec.convert({"kubeconfig": str(path)}, KubernetesConfig))


def test_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one")
    config = msgspec.convert(
        {"kube_url": "https://127.0.0.1:1", "kube_token_file": str(token)}, KubernetesConfig
    )
    creds = Credentials(config)
    assert creds.token() == "one"
    (tmp_path / "new").write_text("two-rotated")
    (tmp_path / "new").rename(token)  # kubelet swaps the file (a symlink flip)
    assert creds.token() == "two-rotated"


def test_in_cluster_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = Credentials(KubernetesConfig())
    assert creds.server == "https://10.0.0.1:443"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        Credentials(KubernetesConfig())


def test_bench_smoke(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO, agent_env

    out = tmp_path / "kubernetes.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.kubernetes", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=agent_env(),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    shapes = {row["shape"]: row for row in result["results"]}
    assert shapes["syslog short id"]["enriched"] == 2000
    assert shapes["tail"]["enriched"] == 2000
    assert shapes["no key"]["enriched"] == 0
    assert result["cache_bytes"] > 0


def kube_audit_chain(
    tmp_path: Path, rules: str | None = None
) -> tuple[FilterChain, KubernetesFilter]:
    from tests.filter_helpers import chain

    audit: dict[str, Any] = {"type": "audit"}
    if rules is not None:
        path = tmp_path / "rules.toml"
        path.write_text(rules)
        audit["rules_file"] = str(path)
    built, _ = chain(
        {"type": "kubernetes", "kube_url": "https://127.0.0.1:1", "node_name": "node-a"}, audit
    )
    kube_filter = built.filters[0]
    assert isinstance(kube_filter, KubernetesFilter)
    kube_filter.cache.put_pod(
        pod(
            labels={"app": "web", "pod-template-hash": "7d4b9c8f5d"},
            owner=("ReplicaSet", "web-7d4b9c8f5d"),
        )
    )
    kube_filter.cache.put_pod(
        pod(
            name="coredns-abc",
            namespace="kube-system",
            uid="uid-9",
            ids={"app": "containerd://" + CID2},
            labels={"k8s-app": "kube-dns"},
        )
    )
    return built, kube_filter


def test_audit_alert_after_the_kubernetes_filter_names_the_pod(tmp_path: Path) -> None:
    built, _ = kube_audit_chain(tmp_path)
    record = {
        "ident": "web",
        "container_id": CID[:12],
        "message": "Setting up curl (7.88.1-10) ...",
    }
    batches = dict(built.process("syslog", [record]))
    [alert] = batches["audit.container-package-manager"]
    assert alert["audit"]["rule"] == "container-package-manager"
    k = alert["kubernetes"]
    assert (k["namespace_name"], k["pod_name"]) == ("shop", "web-7d4b9c8f5d-x2x9q")
    assert k["owner"] == {"kind": "Deployment", "name": "web"}
    assert k["labels"]["app"] == "web"


def test_audit_rules_scoped_by_namespace_and_label(tmp_path: Path) -> None:
    """A rule with a default's id replaces it: the same rule, kube-system and a label excluded."""
    rules = r"""
[[rule]]
id = "container-package-manager"
severity = "medium"
description = "package manager in a container, outside kube-system and canaries"
when = [
  { field = "container_id", exists = true },
  { field = "kubernetes.namespace_name", not_regex = '^kube-system$' },
  { field = "kubernetes.labels.canary", exists = false },
  { field = "message", regex = '^Setting up \S+ \(' },
]
"""
    built, _ = kube_audit_chain(tmp_path, rules)
    shop = {"container_id": CID[:12], "message": "Setting up curl (7.88.1-10) ..."}
    system = {"container_id": CID2[:12], "message": "Setting up curl (7.88.1-10) ..."}
    batches = dict(built.process("syslog", [shop, system]))
    alerts = batches["audit.container-package-manager"]
    assert [a["kubernetes"]["namespace_name"] for a in alerts] == ["shop"]


def test_runtime_exec_line_names_the_pod_of_the_container_it_mentions(tmp_path: Path) -> None:
    built, _ = kube_audit_chain(tmp_path)
    containerd = {
        "ident": "containerd",
        "message": f'time="2026-11-29T21:30:00Z" level=info msg="Exec for \\"{CID}\\" with '
        'command [/bin/bash] and tty true and stdin true"',
    }
    cri: dict[str, Any] = {
        "ident": "crio",
        "message": f"ExecRequest &ExecRequest{{ContainerId:{CID2},Cmd:[/bin/sh],Tty:true}}",
    }
    unknown = {
        "ident": "containerd",
        "message": 'Exec for \\"' + "f" * 64 + '\\" with command [sh]',
    }
    other = {"ident": "kubelet", "message": 'Exec for \\"' + CID + '\\" with command [sh]'}
    batches = dict(built.process("syslog", [containerd, cri, unknown, other]))
    [alert] = batches["audit.container-exec-shell"][:1]
    assert alert["kubernetes"]["pod_name"] == "web-7d4b9c8f5d-x2x9q"
    assert alert["audit"]["fields"]["container_id"] == CID
    assert cri["kubernetes"]["namespace_name"] == "kube-system"
    assert "kubernetes" not in unknown and "kubernetes" not in other
    assert len(batches["syslog"]) == 4  # nothing held back


def test_keys_of_the_wrong_type_pass_unchanged() -> None:
    metrics = RecordingMetrics()
    f = kube(metrics)
    f.cache.put_pod(pod())
    records: list[dict[str, Any]] = [
        {"container_id": ["not", "an", "id"]},
        {"container_id": {"a": 1}},
        {"kubernetes": {"container_id": ["x"]}},
        {"kubernetes": {"namespace_name": 1, "pod_name": None}},
        {"container_name": 7},
        {"ident": ["containerd"], "message": "Exec for"},
        {"ident": "containerd", "message": {"not": "text"}},
    ]
    before = [dict(r) for r in records]
    [(tag, out)] = f.process("t", records)
    assert tag == "t" and out == before
