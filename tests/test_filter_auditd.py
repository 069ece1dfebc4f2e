"""The auditd filter: audit lines in syslog or raw tail records become one record per event,
held for a bounded time, with counters; container attribution from a /proc tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.filters.auditd import AuditdFilter
from agent.filters.cgroups import ContainerResolver, container_id_of, start_time_of
from tests.auditd_lines import EXEC_CAT, EXEC_LONG, LONG, SUDO_CMD
from tests.filter_helpers import Clock, chain, make, recorded, run

CID = "847c8c9d8275a2dfea35581c5d3f1e6494362a45cbd653ea183397dc24049398"
POD = "pod5f0c2e8a_2a51_4c7e_9d0b_6c3f3d1e9a11"


def forwarded(line: str, host: str = "node-1") -> dict[str, Any]:
    """A syslog record as the syslog parser makes it of an audisp-syslog line."""
    return {
        "time": "2026-12-06T13:21:40.672000Z",
        "host": host,
        "ident": "audisp-syslog",
        "facility": "user",
        "severity": "info",
        "message": line,
    }


def auditd(**config: Any) -> AuditdFilter:
    f = make("auditd", **{"containers": False, **config})
    assert isinstance(f, AuditdFilter)
    f.clock = Clock(100.0)
    return f


def test_forwarded_lines_become_one_event_record_under_the_first_lines_tag() -> None:
    f = auditd()
    other = {"host": "node-1", "ident": "kubelet", "message": "I1206 probe ok"}
    batches = f.process("syslog.node", [forwarded(line) for line in EXEC_LONG[:4]] + [other])
    assert batches == [("syslog.node", [other])]  # the event waits for its end
    (batch,) = f.process("syslog.node", [forwarded(line) for line in EXEC_LONG[4:]])
    tag, (event,) = batch
    assert tag == "syslog.node"
    assert event["time"] == "2026-12-06T13:21:40.672Z"
    assert (event["host"], event["ident"]) == ("node-1", "auditd")
    assert event["message"] == f"/bin/echo hello a b {LONG} é"
    assert event["auditd"]["argv"][3] == LONG
    assert event["auditd"]["exe"] == "/usr/bin/echo"
    assert "container_id" not in event
    metrics = recorded(f)
    assert metrics.counter("filter_auditd_events_total") == 1
    assert metrics.counter("filter_auditd_records_total") == len(EXEC_LONG)


def test_raw_tail_lines_without_host() -> None:
    f = auditd()
    out = run(f, [{"message": line} for line in EXEC_CAT], tag="audit.log")
    (event,) = out
    assert "host" not in event
    assert event["message"] == "cat /etc/shadow"


def test_events_of_two_hosts_with_one_serial_stay_apart() -> None:
    f = auditd()
    records = []
    for line in EXEC_CAT:
        records.append(forwarded(line, "a"))
        records.append(forwarded(line.replace("/etc/shadow", "/etc/hosts"), "b"))
    out = run(f, records)
    assert [(r["host"], r["message"]) for r in out] == [
        ("a", "cat /etc/shadow"),
        ("b", "cat /etc/hosts"),
    ]


def test_incomplete_event_is_flushed_after_timeout_and_counted() -> None:
    f = auditd(timeout="3s")
    assert run(f, [forwarded(line) for line in EXEC_CAT[:3]]) == []
    assert f.flush(102.9) == []
    ((tag, (event,)),) = f.flush(103.0)
    assert tag == "syslog" and event["auditd"]["argv"] == ["cat", "/etc/shadow"]
    assert recorded(f).counter("filter_auditd_incomplete_events_total", reason="timeout") == 1


def test_close_releases_everything() -> None:
    f = auditd()
    run(f, [forwarded(EXEC_CAT[0])])
    ((_, (event,)),) = f.close()
    assert event["auditd"]["pid"] == 4242


def test_bounds_are_counted() -> None:
    f = auditd(max_records=4, max_events=1)
    out = run(f, [forwarded(line) for line in EXEC_LONG])
    assert out == []  # PROCTITLE came past the bound
    metrics = recorded(f)
    assert metrics.counter("filter_auditd_dropped_records_total", reason="event_too_large") == 5
    out = run(f, [forwarded(SUDO_CMD)])  # a second event evicts the first
    assert [r["auditd"]["type"] for r in out] == ["SYSCALL", "USER_CMD"]
    assert metrics.counter("filter_auditd_incomplete_events_total", reason="evicted") == 1


def test_a_host_that_is_not_text_does_not_break_joining() -> None:
    f = auditd()
    out = run(f, [{"host": {"a": 1}, "message": line} for line in EXEC_CAT])
    assert [(r["message"], "host" in r) for r in out] == [("cat /etc/shadow", False)]
    out = run(f, [{"host": 7, "message": line} for line in EXEC_CAT])
    assert out[0]["host"] == "7"


def test_records_without_text_pass_through() -> None:
    f = auditd()
    records: list[dict[str, Any]] = [
        {"message": 5}, {"message": {"a": 1}}, {}, {"message": "type=x"}
    ]
    assert run(f, [dict(r) for r in records]) == records


def test_through_the_chain_with_the_audit_filter_after_it() -> None:
    filters, _ = chain({"type": "auditd", "containers": False}, {"type": "audit", "retag": False})
    out = filters.process("syslog", [forwarded(line) for line in EXEC_CAT])
    ((tag, (event,)),) = out
    assert tag == "syslog" and event["message"] == "cat /etc/shadow"


def test_a_batch_without_audit_lines_is_returned_as_is_and_times_are_kept() -> None:
    """The chain keeps the parser's event times for a batch when the filters hand back the
    list they were given and leave ``time`` alone; the auditd filter runs on the whole syslog
    stream, so it must not cost that for the lines it does not touch."""
    f = auditd()
    records = [{"message": "hello"}, {"message": "type=nothing"}]
    ((tag, out),) = f.process("syslog", records)
    assert tag == "syslog" and out is records
    filters, _ = chain({"type": "auditd", "containers": False}, {"type": "audit"})
    stamped = [{**r, "time": "2026-11-29T21:00:01Z"} for r in records]
    times = [1_795_000_000.0, 1_795_000_000.0]
    ((_, out, out_times),) = filters.process_with_times("syslog", stamped, times)
    assert out is stamped and out_times is times


def test_bad_config() -> None:
    with pytest.raises(ValueError, match=r"timeout: must be positive"):
        make("auditd", timeout=0)
    with pytest.raises(ValueError, match=r"max_events: must be at least 1"):
        make("auditd", max_events=0)


# ------------------------------------------------------------------ container attribution

CGROUPS = {
    "containerd-systemd-v2": (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-"
        f"{POD}.slice/cri-containerd-{CID}.scope\n"
    ),
    "containerd-cgroupfs-v2": f"0::/kubepods/burstable/{POD}/{CID}\n",
    "cgroupns-relative-v2": (
        f"0::/../../kubepods-besteffort-{POD}.slice/cri-containerd-{CID}.scope\n"
    ),
    "crio-v2": f"0::/kubepods.slice/kubepods-{POD}.slice/crio-{CID}.scope\n",
    "docker-systemd-v2": f"0::/system.slice/docker-{CID}.scope\n",
    "docker-cgroupfs-v1": (
        f"12:pids:/docker/{CID}\n11:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n0::/\n"
    ),
    "kubepods-v1": (
        f"10:cpuset:/kubepods/besteffort/{POD}/{CID}\n4:memory:/kubepods/besteffort/{POD}/{CID}\n"
    ),
    "nested-kind": (
        f"0::/docker/{'a' * 64}/kubelet.slice/kubepods.slice/cri-containerd-{CID}.scope\n"
    ),
}  # fmt: skip
HOST = {
    "host-systemd-v2": "0::/system.slice/containerd.service\n",
    "crio-conmon": f"0::/kubepods.slice/kubepods-{POD}.slice/crio-conmon-{CID}.scope\n",
    "pod-slice-only": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD}.slice\n"
    ),
    "session-v1": "12:pids:/user.slice/user-1000.slice/session-3.scope\n0::/user.slice\n",
    "short-hex": "0::/docker/847c8c9d8275\n",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CGROUPS))
def test_container_id_from_every_runtimes_cgroup_path(name: str) -> None:
    assert container_id_of(CGROUPS[name]) == CID


@pytest.mark.parametrize("name", sorted(HOST))
def test_host_processes_have_no_container(name: str) -> None:
    assert container_id_of(HOST[name]) is None


def test_start_time_counts_fields_after_the_command_name() -> None:
    stat = "4242 (we) ird (name)) S 4100 4242 4100 34816 4242 4194304 " + " ".join(
        str(n) for n in range(10, 30)
    )
    assert start_time_of(stat) == 22  # field 22
    assert start_time_of("garbage") is None


def fake_proc(root: Path, pid: int, cgroup: str, start: int = 777) -> None:
    directory = root / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    fields = ["S", "1"] + ["0"] * 17 + [str(start)] + ["0"] * 10
    (directory / "stat").write_text(f"{pid} (sh) " + " ".join(fields))
    (directory / "cgroup").write_text(cgroup)


def test_resolver_falls_back_to_the_parent_and_caches_by_start_time(tmp_path: Path) -> None:
    resolver = ContainerResolver(str(tmp_path))
    fake_proc(tmp_path, 200, CGROUPS["crio-v2"])
    assert resolver.resolve(4242, 200) == (CID, "ppid")  # pid 4242 is gone
    assert resolver.resolve(None, None) == (None, "gone")
    assert resolver.resolve(4243, 4244) == (None, "gone")
    fake_proc(tmp_path, 300, HOST["host-systemd-v2"])
    assert resolver.resolve(300, 200) == (None, "pid")
    # Same pid and start time: the cached answer, even though the file changed.
    (tmp_path / "200" / "cgroup").write_text(HOST["host-systemd-v2"])
    assert resolver.resolve(200, 1) == (CID, "pid")
    # A new process with the reused pid (another start time) is read afresh.
    fake_proc(tmp_path, 200, HOST["host-systemd-v2"], start=999)
    assert resolver.resolve(200, 1) == (None, "pid")
    # Gone now: the last answer for the pid stands in.
    fake_proc(tmp_path, 500, CGROUPS["docker-systemd-v2"])
    assert resolver.resolve(500, 1) == (CID, "pid")
    for name in ("stat", "cgroup"):
        (tmp_path / "500" / name).unlink()
    assert resolver.resolve(500, 1) == (CID, "exited")


def test_filter_sets_container_id_and_counts_attribution(tmp_path: Path) -> None:
    fake_proc(tmp_path, 4100, CGROUPS["containerd-systemd-v2"])  # the parent shell of `cat`
    f = auditd(containers=True, proc_root=str(tmp_path))
    out = run(f, [forwarded(line) for line in [*EXEC_CAT, SUDO_CMD]])
    assert [r.get("container_id") for r in out] == [CID, None]
    metrics = recorded(f)
    assert metrics.counter("filter_auditd_attribution_total", result="ppid") == 1
    assert metrics.counter("filter_auditd_attribution_total", result="gone") == 1
