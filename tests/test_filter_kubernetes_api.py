"""The kubernetes filter against a real kube-apiserver (tests/peers/kube.py): the watch, RBAC,
outages, 410 Gone, token rotation, 1,000 pods. Skipped, with the reason, when the API server
binary has not been built (scripts/build-kube-apiserver.sh)."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.filters.kubernetes import KubernetesFilter
from agent.filters.kubernetes.client import Watcher
from tests.agent_config import Table, agent_toml, file_output, syslog_input
from tests.doubles import RecordingMetrics
from tests.filter_helpers import make
from tests.peers.kube import AGENT_TOKEN, KubeApiServer, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

NODE = "node-a"


def cid(n: int) -> str:
    return f"{n:012x}" + "c" * 52


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeApiServer]:
    with KubeApiServer() as server:
        server.apply_rbac("agent")
        yield server


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(AGENT_TOKEN + "\n")
    return path


def kubernetes(metrics: RecordingMetrics | None = None, **config: Any) -> KubernetesFilter:
    f = make("kubernetes", metrics, **config)
    assert isinstance(f, KubernetesFilter)
    return f


def kube_filter(
    kube: KubeApiServer, token_file: Path, metrics: RecordingMetrics | None = None, **config: Any
) -> KubernetesFilter:
    return kubernetes(
        metrics,
        kube_url=kube.url,
        kube_ca_file=kube.ca_file,
        kube_token_file=str(token_file),
        node_name=NODE,
        retry_max="1s",
        **config,
    )


def pods_watch(f: KubernetesFilter) -> Watcher:
    """The filter's watch of pods, which ``start`` created."""
    assert f.pods_watch is not None
    return f.pods_watch


def looked_up(f: KubernetesFilter, container_id: str) -> dict[str, Any]:
    """The cached object of a container the test knows is in the cache."""
    obj = f.cache.lookup_id(container_id)
    assert obj is not None, container_id
    return obj


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def test_syslog_and_tail_records_get_the_pods_metadata(
    kube: KubeApiServer, token_file: Path
) -> None:
    kube.create_namespace("enrich", labels={"team": "payments"})
    kube.create_pod(
        "enrich",
        "web-5c9f7d6b8-abcde",
        NODE,
        {"app": "nginx:1.27", "side": "envoy"},
        labels={"app": "web", "pod-template-hash": "5c9f7d6b8"},
        annotations={"example.com/owner": "payments"},
        owner=("ReplicaSet", "web-5c9f7d6b8"),
    )
    kube.set_container_ids(
        "enrich",
        "web-5c9f7d6b8-abcde",
        {"app": "containerd://" + cid(1), "side": "containerd://" + cid(2)},
    )
    kube.create_pod("enrich", "elsewhere", "node-b", {"app": "nginx"})
    kube.set_container_ids("enrich", "elsewhere", {"app": "containerd://" + cid(3)})

    async def body() -> None:
        f = kube_filter(kube, token_file)
        await f.start()
        try:
            await until(lambda: f.cache.lookup_id(cid(1)) is not None)
            await until(lambda: f.cache.namespace_labels.get("enrich"))
            syslog: dict[str, Any] = {"message": "GET /", "container_id": cid(1)[:12]}
            tail: dict[str, Any] = {
                "message": "hi",
                "kubernetes": {
                    "namespace_name": "enrich",
                    "pod_name": "web-5c9f7d6b8-abcde",
                    "container_name": "side",
                    "container_id": cid(2),
                },
            }
            other_node = {"message": "x", "container_id": cid(3)}
            [(_, out)] = f.process("t", [syslog, tail, other_node])
            assert out == [syslog, tail]  # the other node's container waits (never listed)
            k = syslog["kubernetes"]
            assert k["pod_name"] == "web-5c9f7d6b8-abcde"
            assert k["namespace_name"] == "enrich"
            assert k["container_name"] == "app"
            assert k["container_id"] == cid(1)
            assert k["container_image"] == "nginx:1.27"
            assert k["container_hash"].startswith("nginx:1.27@sha256:")
            assert k["host"] == NODE
            assert k["labels"] == {"app": "web", "pod-template-hash": "5c9f7d6b8"}
            assert k["annotations"] == {"example.com/owner": "payments"}
            assert k["namespace_labels"]["team"] == "payments"
            assert k["owner"] == {"kind": "Deployment", "name": "web"}
            assert len(k["pod_id"]) == 36
            assert tail["kubernetes"]["container_name"] == "side"
            assert tail["kubernetes"]["container_image"] == "envoy"
            assert tail["kubernetes"]["labels"]["app"] == "web"
        finally:
            await f.stop()

    run(body)


def test_the_agents_token_can_do_nothing_but_read_pods_and_namespaces(
    kube: KubeApiServer,
) -> None:
    assert kube.status_code("GET", "/api/v1/pods", AGENT_TOKEN) == 200
    assert kube.status_code("GET", "/api/v1/namespaces", AGENT_TOKEN) == 200
    assert kube.status_code("GET", "/api/v1/pods?watch=1&timeoutSeconds=1", AGENT_TOKEN) == 200
    assert kube.status_code("GET", "/api/v1/secrets", AGENT_TOKEN) == 403
    assert kube.status_code("GET", "/api/v1/configmaps", AGENT_TOKEN) == 403
    assert kube.status_code("DELETE", "/api/v1/namespaces/default", AGENT_TOKEN) == 403
    assert kube.status_code("GET", "/api/v1/pods", "not-a-token") == 401


def test_label_change_reaches_new_records(kube: KubeApiServer, token_file: Path) -> None:
    kube.create_namespace("relabel")
    kube.create_pod("relabel", "api", NODE, {"app": "api:1"}, labels={"version": "1"})
    kube.set_container_ids("relabel", "api", {"app": "docker://" + cid(10)})

    async def body() -> None:
        f = kube_filter(kube, token_file, namespace_labels=False)
        await f.start()
        try:
            await until(lambda: f.cache.lookup_id(cid(10)) is not None)
            [(_, [first])] = f.process("t", [{"container_id": cid(10)}])
            assert first["kubernetes"]["labels"] == {"version": "1"}
            await call(kube.label_pod, "relabel", "api", {"version": "2", "canary": "true"})
            await until(lambda: looked_up(f, cid(10))["labels"].get("version") == "2")
            [(_, [second])] = f.process("t", [{"container_id": cid(10)}])
            assert second["kubernetes"]["labels"] == {"version": "2", "canary": "true"}
            assert first["kubernetes"]["labels"] == {"version": "1"}  # already out: unchanged
        finally:
            await f.stop()

    run(body)


def test_pod_deleted_then_late_lines_still_enriched(kube: KubeApiServer, token_file: Path) -> None:
    kube.create_namespace("deleted")
    kube.create_pod("deleted", "job-pod", NODE, {"main": "busybox"}, owner=("Job", "migrate"))
    kube.set_container_ids("deleted", "job-pod", {"main": "containerd://" + cid(20)})

    async def body() -> None:
        f = kube_filter(kube, token_file, deleted_pod_ttl="1h")
        await f.start()
        try:
            await until(lambda: f.cache.lookup_id(cid(20)) is not None)
            await call(kube.delete_pod, "deleted", "job-pod")
            await until(lambda: f.cache._deleted)
            late = {"message": "late", "container_id": cid(20)[:12]}
            [(_, [out])] = f.process("t", [late])
            assert out["kubernetes"]["pod_name"] == "job-pod"
            assert out["kubernetes"]["owner"] == {"kind": "Job", "name": "migrate"}
            assert f.cache.expire(time.monotonic() + 3601) == 1
            assert f.cache.lookup_id(cid(20)) is None
        finally:
            await f.stop()

    run(body)


def test_record_waits_for_a_pod_the_watch_reports_later(
    kube: KubeApiServer, token_file: Path
) -> None:
    kube.create_namespace("later")
    metrics = RecordingMetrics()

    async def body() -> None:
        f = kube_filter(kube, token_file, metrics, wait_for_metadata="60s")
        await f.start()
        try:
            await until(lambda: pods_watch(f).synced.is_set())
            early: dict[str, Any] = {"message": "first line", "container_id": cid(30)}
            assert f.process("t", [early]) == [("t", [])]
            await call(kube.create_pod, "later", "fresh", NODE, {"c": "img"})
            await call(kube.set_container_ids, "later", "fresh", {"c": "containerd://" + cid(30)})
            out: list[Any] = []

            async def released() -> bool:
                out.extend(f.flush(time.monotonic()))
                return bool(out)

            deadline = time.monotonic() + 30
            while not await released():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert out == [("t", [early])]
            assert early["kubernetes"]["pod_name"] == "fresh"
            assert metrics.counter("filter_kubernetes_missing_records_total", reason="timeout") == 0
        finally:
            await f.stop()

    run(body)


def test_api_server_down_and_back_nothing_blocks_and_the_watch_resumes(
    kube: KubeApiServer, token_file: Path
) -> None:
    kube.create_namespace("outage")
    kube.create_pod("outage", "before", NODE, {"c": "img"})
    kube.set_container_ids("outage", "before", {"c": "containerd://" + cid(40)})
    metrics = RecordingMetrics()

    async def body() -> None:
        f = kube_filter(kube, token_file, metrics, namespace_labels=False, watch_timeout="5s")
        await f.start()
        try:
            await until(lambda: f.cache.lookup_id(cid(40)) is not None)
            await call(kube.stop_apiserver)
            # While it is away: known containers are enriched from the cache, without waiting.
            records = [{"n": i, "container_id": cid(40)} for i in range(10_000)]
            started = time.monotonic()
            [(_, out)] = f.process("t", records)
            assert len(out) == 10_000 and all("kubernetes" in r for r in out)
            unknown: list[dict[str, Any]] = [{"container_id": cid(41)}]
            assert f.process("t", unknown) == [("t", [])]  # waits, never blocks
            assert time.monotonic() - started < 30
            await until(
                lambda: metrics.counter("filter_kubernetes_api_errors_total", resource="pods") >= 1
            )
            await call(kube.start_apiserver)
            await call(kube.create_pod, "outage", "after", NODE, {"c": "img"})
            await call(kube.set_container_ids, "outage", "after", {"c": "containerd://" + cid(41)})
            await until(lambda: f.cache.lookup_id(cid(41)) is not None, timeout=60)
            released = f.flush(time.monotonic())
            assert released == [("t", unknown)]
            assert unknown[0]["kubernetes"]["pod_name"] == "after"
        finally:
            await f.stop()

    run(body)


def test_410_gone_lists_again(kube: KubeApiServer, token_file: Path) -> None:
    kube.create_namespace("gone")
    metrics = RecordingMetrics()

    async def body() -> None:
        f = kube_filter(kube, token_file, metrics, namespace_labels=False, watch_timeout="1s")
        await f.start()
        try:
            await until(lambda: pods_watch(f).synced.is_set())
            lists = pods_watch(f).lists
            # Many changes, then etcd compacted: the version the watch holds is history.
            await call(kube.create_pod, "gone", "churn", NODE, {"c": "img"})
            for i in range(5):
                await call(kube.label_pod, "gone", "churn", {"n": str(i)})
            await call(kube.etcd_compact)
            pods_watch(f).resource_version = "1"  # as if the agent had slept through it all
            await until(
                lambda: metrics.counter("filter_kubernetes_relists_total", resource="pods") >= 1,
                timeout=60,
            )
            await until(lambda: pods_watch(f).lists > lists)
            await call(kube.set_container_ids, "gone", "churn", {"c": "containerd://" + cid(50)})
            await until(lambda: f.cache.lookup_id(cid(50)) is not None)
            assert looked_up(f, cid(50))["labels"] == {"n": "4"}
        finally:
            await f.stop()

    run(body)


def test_token_rotated_on_disk_is_used(kube: KubeApiServer, token_file: Path) -> None:
    kube.create_namespace("rotate")
    kube.create_pod("rotate", "p", NODE, {"c": "img"})
    kube.set_container_ids("rotate", "p", {"c": "containerd://" + cid(60)})
    token_file.write_text("expired-token\n")
    metrics = RecordingMetrics()

    async def body() -> None:
        f = kube_filter(kube, token_file, metrics, namespace_labels=False)
        await f.start()
        try:
            await until(
                lambda: metrics.counter("filter_kubernetes_api_errors_total", resource="pods") >= 2
            )
            assert not pods_watch(f).synced.is_set()
            fresh = token_file.with_name("token.new")
            fresh.write_text(AGENT_TOKEN + "\n")
            fresh.rename(token_file)  # as kubelet swaps a projected token
            await until(lambda: f.cache.lookup_id(cid(60)) is not None)
        finally:
            await f.stop()

    run(body)


@pytest.mark.parametrize("auth", ["token", "client-certificate-data", "client-certificate"])
def test_kubeconfig_outside_a_cluster(kube: KubeApiServer, tmp_path: Path, auth: str) -> None:
    import base64

    namespace = f"kubeconfig-{auth}"
    number = 70 + ["token", "client-certificate-data", "client-certificate"].index(auth)
    kube.create_namespace(namespace)
    kube.create_pod(namespace, "p", NODE, {"c": "img"})
    kube.set_container_ids(namespace, "p", {"c": "containerd://" + cid(number)})
    user: dict[str, str] = {"token": AGENT_TOKEN}
    if auth == "client-certificate-data":
        user = {
            "client-certificate-data": base64.b64encode(kube.client_cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(kube.client_key.read_bytes()).decode(),
        }
    elif auth == "client-certificate":
        (tmp_path / "certs").mkdir()
        (tmp_path / "certs" / "me.crt").write_bytes(kube.client_cert.read_bytes())
        (tmp_path / "certs" / "me.key").write_bytes(kube.client_key.read_bytes())
        user = {"client-certificate": "certs/me.crt", "client-key": "certs/me.key"}
    ca = base64.b64encode(Path(kube.ca_file).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [
            {"name": "c", "cluster": {"server": kube.url, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))

    async def body() -> None:
        f = kubernetes(kubeconfig=str(path), node_name=NODE)
        await f.start()
        try:
            await until(lambda: f.cache.lookup_id(cid(number)) is not None)
        finally:
            await f.stop()

    run(body)


def test_a_thousand_pods_list_time_and_memory(
    kube: KubeApiServer, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.create_namespace("many")
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> None:
        kube.create_pod(
            "many",
            f"p-{i}",
            "node-big",
            {"app": "registry.example.com/app:1", "proxy": "envoy:1"},
            labels={"app": f"a{i % 50}", "tier": "web", "pod-template-hash": "x9"},
            annotations={"prometheus.io/scrape": "true"},
            owner=("ReplicaSet", f"a{i % 50}-x9"),
        )
        kube.set_container_ids(
            "many",
            f"p-{i}",
            {"app": "containerd://" + cid(10_000 + i), "proxy": "containerd://" + cid(20_000 + i)},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(1000)))

    async def body() -> None:
        f = kubernetes(
            kube_url=kube.url,
            kube_ca_file=kube.ca_file,
            kube_token_file=str(token_file),
            node_name="node-big",
            namespace_labels=False,
        )
        tracemalloc.start()
        started = time.monotonic()
        await f.start()
        try:
            await until(lambda: pods_watch(f).synced.is_set(), timeout=120)
            seconds = time.monotonic() - started
            held = tracemalloc.get_traced_memory()[0]
            assert len(f.cache.pods) == 1000
            assert len(f.cache.by_id) == 4000  # 2 containers x (full + short ID)
            assert looked_up(f, cid(10_999))["pod_name"] == "p-999"
            with capsys.disabled():
                print(
                    f"\n1,000 pods: list+index {seconds:.2f}s, {held / 2**20:.2f} MiB held "
                    "(tracemalloc, filter and its session)"
                )
        finally:
            tracemalloc.stop()
            await f.stop()

    run(body)


def test_agent_process_names_the_pod_in_records_and_alerts(
    kube: KubeApiServer, token_file: Path, tmp_path: Path, start_agent: Callable[..., Any]
) -> None:
    """The whole agent: syslog over TCP with Docker's default tag (the short container ID), the
    kubernetes filter's watch started and stopped by the runtime, audit after it."""
    import socket

    from tests.conftest import free_port, read_ndjson, wait_for

    kube.create_namespace("agent-e2e")
    kube.create_pod(
        "agent-e2e",
        "shop-0",
        NODE,
        {"app": "shop:2"},
        labels={"app": "shop"},
        owner=("StatefulSet", "shop"),
    )
    kube.set_container_ids("agent-e2e", "shop-0", {"app": "containerd://" + cid(80)})
    port = free_port()
    config = agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="syslog"),
        filters=[_kubernetes_filter(kube, token_file), {"type": "audit"}],
        outputs=[
            file_output(tmp_path / "audit.ndjson", "audit.*"),
            file_output(tmp_path / "all.ndjson", "syslog"),
        ],
    )
    agent = start_agent(config)
    wait_for(lambda: agent.metric("filter_kubernetes_pods") >= 1, timeout=30)
    lines = [
        f"<30>Nov 29 21:30:00 {NODE} {cid(80)[:12]}[42]: hello",
        f"<30>Nov 29 21:30:01 {NODE} {cid(80)[:12]}[42]: Setting up curl (7.88.1-10) ...",
    ]
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall("".join(line + "\n" for line in lines).encode())
    wait_for(lambda: len(read_ndjson(tmp_path / "all.ndjson")) >= 2, timeout=30)
    wait_for(lambda: len(read_ndjson(tmp_path / "audit.ndjson")) >= 1, timeout=30)
    for record in read_ndjson(tmp_path / "all.ndjson"):
        assert record["kubernetes"]["pod_name"] == "shop-0", record
    [alert] = read_ndjson(tmp_path / "audit.ndjson")
    assert alert["audit"]["rule"] == "container-package-manager"
    assert alert["kubernetes"]["namespace_name"] == "agent-e2e"
    assert alert["kubernetes"]["owner"] == {"kind": "StatefulSet", "name": "shop"}
    assert AGENT_TOKEN not in (agent.log_path.read_text() + agent.stdout_path.read_text())


def _kubernetes_filter(kube: KubeApiServer, token_file: Path) -> Table:
    return {
        "type": "kubernetes",
        "kube_url": kube.url,
        "kube_ca_file": kube.ca_file,
        "kube_token_file": token_file,
        "node_name": NODE,
    }


def test_agent_under_load_while_the_api_server_restarts_loses_nothing(
    kube: KubeApiServer, token_file: Path, tmp_path: Path, start_agent: Callable[..., Any]
) -> None:
    import socket

    from tests.conftest import free_port, read_ndjson, wait_for

    kube.create_namespace("load")
    kube.create_pod("load", "steady", NODE, {"app": "img"})
    kube.set_container_ids("load", "steady", {"app": "containerd://" + cid(90)})
    port = free_port()
    kubernetes = {**_kubernetes_filter(kube, token_file), "namespace_labels": False}
    kubernetes["retry_max"] = "1s"
    config = agent_toml(tmp_path, syslog_input("tcp", port, tag="syslog"), filters=[kubernetes])
    agent = start_agent(config)
    wait_for(lambda: agent.metric("filter_kubernetes_pods") >= 1, timeout=30)

    def send(first: int, count: int, container: str) -> None:
        lines = "".join(
            f"<30>Nov 29 21:30:00 {NODE} {container[:12]}[1]: line {i}\n"
            for i in range(first, first + count)
        )
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(lines.encode())

    send(0, 2000, cid(90))
    kube.stop_apiserver()
    try:
        send(2000, 2000, cid(90))  # cache only: enriched, nothing waits
        wait_for(lambda: agent.metric("filter_kubernetes_api_errors_total") >= 1, timeout=30)
    finally:
        kube.start_apiserver()
    kube.create_pod("load", "new", NODE, {"app": "img"})
    kube.set_container_ids("load", "new", {"app": "containerd://" + cid(91)})
    wait_for(lambda: agent.metric("filter_kubernetes_pods") >= 2, timeout=60)
    send(4000, 1000, cid(91))
    wait_for(lambda: len(read_ndjson(tmp_path / "out.ndjson")) >= 5000, timeout=60)
    records = read_ndjson(tmp_path / "out.ndjson")
    assert sorted(int(r["message"].split()[-1]) for r in records) == list(range(5000))
    pods = [r["kubernetes"]["pod_name"] for r in records]
    assert pods.count("steady") == 4000 and pods.count("new") == 1000
    assert agent.metric("filter_kubernetes_missing_records_total") == 0
