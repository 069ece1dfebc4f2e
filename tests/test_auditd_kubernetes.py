"""Pod names for kernel audit events, end to end: a real process runs in a cgroup named as
containerd names a container's scope (``cri-containerd-<64 hex>.scope``), a pod on this node
lists that container in ``status.containerStatuses`` of the real API server (tests/peers/kube.py),
and audit lines in auditd's exact format naming that process's pid go through the chain
``auditd`` -> ``kubernetes`` -> ``audit``. The joined exec event carries the container (read from
the kernel's /proc/<pid>/cgroup), the pod's metadata and the audit rule's mark. The cgroup is
removed and the process killed also when the test fails (``scopes``)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from agent.filters.kubernetes import KubernetesFilter
from tests.cgroup_helpers import Scope, containerd_parts, mounts, scopes, writable
from tests.filter_helpers import chain
from tests.peers.kube import KubeApiServer, missing
from tests.test_filter_kubernetes_api import NODE, kube, run, token_file, until

__all__ = ["kube", "scopes", "token_file"]  # the fixtures

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def exec_lines(serial: int, pid: int, ppid: int, argv: list[str]) -> list[str]:
    """One execve event as auditd 3.0 writes it (``log_format = RAW``), for ``pid``."""
    stamp = f"msg=audit({int(time.time())}.123:{serial}):"
    args = " ".join(f'a{i}="{arg}"' for i, arg in enumerate(argv))
    return [
        f"type=SYSCALL {stamp} arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 "
        f"a2=55d2 a3=0 items=2 ppid={ppid} pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 "
        f'fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm="sh" exe="/usr/bin/dash" '
        'subj=unconfined key="exec"',
        f"type=EXECVE {stamp} argc={len(argv)} {args}",
        f'type=CWD {stamp} cwd="/"',
        f'type=PATH {stamp} item=0 name="{argv[0]}" inode=1 dev=fe:00 mode=0100755 ouid=0 '
        "ogid=0 rdev=00:00 nametype=NORMAL",
        f"type=PROCTITLE {stamp} proctitle={'00'.join(a.encode().hex().upper() for a in argv)}",
    ]


def test_exec_in_a_containerd_scope_is_named_by_its_pod(
    kube: KubeApiServer, token_file: Path, scopes: list[Scope]
) -> None:
    roots = mounts("cgroup2")
    if not roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    reason = writable(roots[0])
    if reason:
        pytest.skip(reason)
    cid = secrets.token_hex(32)
    scope = Scope(roots[0], containerd_parts(cid))
    scopes.append(scope)
    shell = scope.start("sh")  # an interactive shell: stdin is a pipe, nothing to run
    assert f"cri-containerd-{cid}.scope" in Path(f"/proc/{shell.pid}/cgroup").read_text()

    kube.create_namespace("audited", labels={"team": "payments"})
    kube.create_pod(
        "audited",
        "web-5c9f7d6b8-qwert",
        NODE,
        {"app": "nginx:1.27"},
        labels={"app": "web", "pod-template-hash": "5c9f7d6b8"},
        owner=("ReplicaSet", "web-5c9f7d6b8"),
    )
    kube.set_container_ids("audited", "web-5c9f7d6b8-qwert", {"app": "containerd://" + cid})

    built, metrics = chain(
        {"type": "auditd", "match": "syslog"},
        {
            "type": "kubernetes",
            "kube_url": kube.url,
            "kube_ca_file": kube.ca_file,
            "kube_token_file": str(token_file),
            "node_name": NODE,
            "retry_max": "1s",
        },
        {"type": "audit"},
    )
    lines = exec_lines(801, shell.pid, 1, ["sh"])
    host = exec_lines(802, 1, 0, ["sh"])  # pid 1 runs on the host: no container, no pod

    async def body() -> None:
        await built.start()
        try:
            kube_filter = built.filters[1]
            assert isinstance(kube_filter, KubernetesFilter)
            await until(lambda: kube_filter.cache.lookup_id(cid) is not None)
            await until(lambda: kube_filter.cache.namespace_labels.get("audited"))
            records = [{"host": NODE, "ident": "audisp-syslog", "message": m} for m in lines]
            records += [{"host": NODE, "ident": "audisp-syslog", "message": m} for m in host]
            batches: dict[str, list[dict[str, Any]]] = {}
            for tag, out in built.process("syslog", records):
                batches.setdefault(tag, []).extend(out)
            for tag, out in built.close():
                batches.setdefault(tag, []).extend(out)
        finally:
            await built.stop()

        [alert] = batches["audit.container-interactive-shell"]
        assert alert["ident"] == "auditd" and alert["message"] == "sh"
        assert alert["auditd"]["pid"] == shell.pid and alert["auditd"]["argv"] == ["sh"]
        assert alert["container_id"] == cid
        k = alert["kubernetes"]
        assert k["pod_name"] == "web-5c9f7d6b8-qwert"
        assert k["namespace_name"] == "audited"
        assert k["container_name"] == "app" and k["container_id"] == cid
        assert k["container_image"] == "nginx:1.27"
        assert k["labels"] == {"app": "web", "pod-template-hash": "5c9f7d6b8"}
        assert k["namespace_labels"]["team"] == "payments"
        assert k["owner"] == {"kind": "Deployment", "name": "web"}
        assert k["host"] == NODE
        assert alert["audit"]["rule"] == "container-interactive-shell"
        assert alert["audit"]["severity"] == "critical"
        [on_host] = [r for r in batches["syslog"] if r["auditd"]["serial"] == 802]
        assert not {"container_id", "kubernetes", "audit"} & set(on_host)
        assert metrics[0].counter("filter_auditd_attribution_total", result="pid") == 1

    run(body)
