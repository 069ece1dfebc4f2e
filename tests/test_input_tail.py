"""The tail input's keys, each seen working in the real agent process: paths and exclude, the same
file through two globs, read_from_head, tag templates, path_key, max_line_bytes, ignore_older,
max_open_files, owner-only positions, backpressure, and the audit filter on tail records. Plus
the path -> kubernetes fields table and config errors."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.config import ConfigError, parse_config
from agent.inputs.tail.discovery import path_info
from bench.harness import AgentProcess
from common.units import config_dec_hook
from parsers.container import ContainerLogParser
from tests.agent_config import file_output, tail_input
from tests.conftest import read_ndjson, wait_for
from tests.container_logs import RuntimeWriter
from tests.test_input_tail_e2e import CID, Node, seqs, tail_config, text_of, wait_all

POD_LOG = (
    "/var/log/pods/kube-system_coredns-5d78c9869d-8xk2p_4f1c2b7e-1a2b-4c3d-9e8f-0a1b2c3d4e5f"
    "/coredns/3.log"
)
CONTAINER_LINK = f"/var/log/containers/coredns-5d78c9869d-8xk2p_kube-system_coredns-{CID}.log"


def test_kubernetes_fields_from_the_paths() -> None:
    both = path_info(CONTAINER_LINK, POD_LOG)
    assert both.kubernetes == {
        "namespace_name": "kube-system",
        "pod_name": "coredns-5d78c9869d-8xk2p",
        "pod_id": "4f1c2b7e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
        "container_name": "coredns",
        "container_id": CID,
    }
    assert both.container_id == CID
    pods_only = path_info(POD_LOG)
    assert pods_only.kubernetes == {
        "namespace_name": "kube-system",
        "pod_name": "coredns-5d78c9869d-8xk2p",
        "pod_id": "4f1c2b7e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
        "container_name": "coredns",
    }
    rotated = path_info(POD_LOG + ".20261129-210000")
    assert rotated.kubernetes == pods_only.kubernetes
    link_only = path_info(CONTAINER_LINK)
    assert link_only.kubernetes is not None and "pod_id" not in link_only.kubernetes
    # container names may hold dashes; the id is the last 64 hex digits
    dashed = path_info(f"/var/log/containers/p_ns_istio-proxy-{CID}.log")
    assert dashed.kubernetes is not None
    assert dashed.kubernetes["container_name"] == "istio-proxy"
    docker = path_info(f"/var/lib/docker/containers/{CID}/{CID}-json.log")
    assert docker.kubernetes is None and docker.container_id == CID
    plain = path_info("/var/log/audit/audit.log")
    assert plain == type(plain)(None, None)


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("paths = []", "paths: at least one glob"),
        ('format = "json"', "inputs[0].format"),
        ("max_line_bytes = 0", "max_line_bytes"),
        ('refresh_interval = "0s"', "refresh_interval"),
        ('tag = "kube.${a[b}"', "invalid field path"),
        ('paths = ["/x/*.log"]\nfollow = true', "inputs[0].follow: unknown key"),
    ],
)
def test_config_errors_name_the_key(block: str, error: str) -> None:
    text = f"""
[[inputs]]
type = "tail"
{block}
[[outputs]]
type = "null"
match = "*"
"""
    with pytest.raises(ConfigError, match=None) as raised:
        parse_config(text, "agent.toml")
    assert error in str(raised.value), str(raised.value)


def test_defaults_are_the_issue_names() -> None:
    config = parse_config('[[inputs]]\ntype = "tail"\n[[outputs]]\ntype = "null"\nmatch = "*"\n')
    tail = config.inputs[0]
    assert tail.paths == ["/var/log/containers/*.log"]
    assert tail.exclude == [] and tail.format == "auto" and tail.read_from_head is False
    assert tail.tag == "kube.${namespace_name}.${pod_name}.${container_name}"
    assert tail.refresh_interval == 1.0


def test_two_globs_exclude_templates_and_path_key(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The same file through /var/log/containers and /var/log/pods is read once; an excluded
    namespace is not read; ``${kubernetes.namespace_name}`` and ``${stream}`` render."""
    node = Node(tmp_path / "log")
    web = RuntimeWriter(node.container_log("shop", "web-0", "u1", "web"), "containerd")
    skipped = RuntimeWriter(
        node.container_log("kube-system", "dns-0", "u2", "dns", cid="f" * 64), "containerd"
    )
    for n in range(50):
        web.write(text_of(n), "stderr" if n % 2 else "stdout")
        skipped.write(text_of(1000 + n))
    out = tmp_path / "out.ndjson"
    agent = start_agent(
        tail_config(
            tmp_path,
            [str(node.containers / "*.log"), str(node.pods / "*" / "*" / "*.log")],
            tag="k.${kubernetes.namespace_name}.${pod_name}.${stream}",
            exclude=["*kube-system*"],
            path_key="log_path",
            outputs=[
                file_output(out, "k.shop.web-0.*"),
                file_output(tmp_path / "stderr.ndjson", "k.shop.web-0.stderr"),
            ],
        )
    )
    counts = wait_all(out, 50)
    time.sleep(1.0)  # time for a second read or the excluded file to show, if they would
    counts = seqs(read_ndjson(out))
    assert counts == dict.fromkeys(range(50), 1)
    stderr = seqs(read_ndjson(tmp_path / "stderr.ndjson"))
    assert set(stderr) == set(range(1, 50, 2))
    record = read_ndjson(out)[0]
    assert str(record["log_path"]).startswith(str(node.containers))
    assert record["container_id"] == CID
    assert agent.metric("router_dropped_records_total") == 0
    assert agent.metric("input_records_total") == 50


def test_read_from_head_false_starts_at_the_end_then_reads_new_files_whole(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    node = Node(tmp_path / "log")
    old = RuntimeWriter(node.container_log("a", "old-0", "u1", "c"), "containerd")
    for n in range(10):
        old.write(text_of(n))
    config = tail_config(tmp_path, [str(node.containers / "*.log")], read_from_head=False)
    agent = start_agent(config, workdir=tmp_path / "run")
    time.sleep(0.5)
    for n in range(10, 20):
        old.write(text_of(n))
    new = RuntimeWriter(node.container_log("a", "new-0", "u2", "c", cid="e" * 64), "containerd")
    for n in range(20, 30):
        new.write(text_of(n))
    counts = wait_all(tmp_path / "out.ndjson", 20)
    assert counts == dict.fromkeys(range(10, 30), 1)
    # positions are owner-only, replaced atomically (no temporary left)
    positions = list((tmp_path / "data" / "tail").iterdir())
    assert [p.name for p in positions] == ["tail.0.json"]
    assert stat.S_IMODE(positions[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(positions[0].parent.stat().st_mode) == 0o700
    stored = json.loads(positions[0].read_text())
    assert {entry["offset"] for entry in stored["files"]} == {
        os.path.getsize(old.path),
        os.path.getsize(new.path),
    }
    # a restart resumes at the stored positions (the first-start rule no longer applies)
    agent.stop()
    for n in range(30, 35):
        old.write(text_of(n))
    start_agent(config, workdir=tmp_path / "run")
    counts = wait_all(tmp_path / "out.ndjson", 25)
    assert counts == dict.fromkeys(range(10, 35), 1)


def test_max_line_bytes_cuts_flags_and_counts(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """A raw line and a joined CRI line longer than max_line_bytes: cut, flagged, counted;
    the lines after them are whole."""
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / "plain.log").write_bytes(b"a" * 70000 + b"\n" + b"then seq=1 end\n")
    cri = RuntimeWriter(directory / "cri.log", "containerd")
    cri.write("b" * 40000 + " seq=2 end")
    cri.write("short seq=3 end")
    out = tmp_path / "out.ndjson"
    agent = start_agent(
        tail_config(
            tmp_path,
            [str(directory / "plain.log")],
            tail_input(
                [directory / "cri.log"],
                read_from_head=True,
                max_line_bytes="20KiB",
                tag="cri",
                poll_interval="50ms",
            ),
            format="raw",
            max_line_bytes=1000,
            tag="raw",
        )
    )
    wait_for(lambda: len(read_ndjson(out)) >= 4, timeout=20)
    records = {str(r["message"])[:1]: r for r in read_ndjson(out)}
    assert records["a"]["message"] == "a" * 1000 and records["a"]["truncated"] is True
    assert records["b"]["message"] == "b" * 20480 and records["b"]["truncated"] is True
    assert {str(r["message"]) for r in read_ndjson(out)} >= {"then seq=1 end", "short seq=3 end"}
    assert agent.metric("input_truncated_total") == 2
    assert agent.metric("input_discarded_bytes_total") == (70000 - 1000) + (40010 - 20480)


def test_ignore_older_and_max_open_files(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """Twelve files with three open at most: every line of every file arrives (idle files
    take turns); a file last written a day ago is not followed until it is written again."""
    directory = tmp_path / "log"
    directory.mkdir()
    writers = [RuntimeWriter(directory / f"f{i}.log", "containerd") for i in range(12)]
    for i, writer in enumerate(writers):
        for n in range(10):
            writer.write(text_of(i * 100 + n))
    stale = directory / "stale.log"
    stale.write_bytes(b"2026-11-29T21:00:00Z stdout F old seq=9999 end\n")
    day_ago = time.time() - 86400
    os.utime(stale, (day_ago, day_ago))
    out = tmp_path / "out.ndjson"
    config = tail_config(tmp_path, [str(directory / "*.log")], max_open_files=3, ignore_older="1h")
    agent = start_agent(config)
    want = {i * 100 + n for i in range(12) for n in range(10)}
    counts = wait_all(out, len(want))
    assert counts == dict.fromkeys(want, 1)
    assert agent.metric("input_files_open") <= 3
    for i, writer in enumerate(writers):  # all files again, each with one more line
        writer.write(text_of(i * 100 + 50))
    with open(stale, "ab") as handle:
        handle.write(b"2026-11-29T21:00:01Z stdout F new seq=9998 end\n")
    want |= {i * 100 + 50 for i in range(12)} | {9998}
    counts = wait_all(out, len(want))
    assert counts == dict.fromkeys(want, 1)
    # a restart with more stored positions than open slots: each file resumes where it was
    agent.stop()
    for i, writer in enumerate(writers):
        writer.write(text_of(i * 100 + 60))
    want |= {i * 100 + 60 for i in range(12)}
    again = start_agent(config, workdir=tmp_path / "again")
    counts = wait_all(out, len(want))
    assert counts == dict.fromkeys(want, 1)
    assert again.metric("input_files_open") <= 3


def test_backpressure_stops_reading_and_loses_nothing(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The output cannot write (its directory is a file), the buffer fills to max_bytes and the
    input stops reading; once the output works, every line arrives: the file was the queue."""
    directory = tmp_path / "log"
    directory.mkdir()
    writer = RuntimeWriter(directory / "busy.log", "containerd")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    config = tail_config(
        tmp_path,
        [str(directory / "*.log")],
        outputs=[file_output(blocked / "out.ndjson", retry_max="200ms", retry_base="100ms")],
        buffer={"max_bytes": "256KiB", "chunk_bytes": "32KiB"},
    )
    agent = start_agent(config)
    blocked.rmdir()
    blocked.write_text("not a directory")
    for n in range(20000):
        writer.write(text_of(n))
    wait_for(lambda: agent.metric("input_backpressure_pauses_total") >= 1, timeout=20)
    time.sleep(1.0)
    read_so_far = agent.metric("input_bytes_total")
    assert read_so_far < os.path.getsize(writer.path)
    assert agent.readyz()[0] == 503
    blocked.unlink()
    blocked.mkdir()
    counts = wait_all(blocked / "out.ndjson", 20000, timeout=120)
    assert counts == dict.fromkeys(range(20000), 1)
    assert agent.metric("input_dropped_records_total") == 0


K8S_EXEC = (
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5f0c2e8a",'
    '"stage":"ResponseStarted","requestURI":"/api/v1/namespaces/shop/pods/web-0/exec?command=sh'
    '&container=web&stdin=true&stdout=true&tty=true","verb":"create","user":{"username":'
    '"mallory@example.com","groups":["system:authenticated"]},"objectRef":{"resource":"pods",'
    '"namespace":"shop","name":"web-0","apiVersion":"v1","subresource":"exec"},'
    '"responseStatus":{"metadata":{},"code":101}}'
)


def test_audit_filter_flags_tail_records(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The audit filter treats tail records like any other: the API server's audit log
    (tailed raw) shows a `kubectl exec ... sh`; a container's stdout shows apt-get installing
    a package (container-package-manager keys on container_id, which the path gives)."""
    node = Node(tmp_path / "log")
    pod = RuntimeWriter(node.container_log("shop", "web-0", "u1", "web"), "containerd")
    pod.write("Setting up curl (7.88.1-10+deb12u5) ...")
    pod.write("GET /healthz 200")
    apiserver = tmp_path / "kube-apiserver"
    apiserver.mkdir()
    (apiserver / "audit.log").write_text(K8S_EXEC + "\n")
    out = tmp_path / "out.ndjson"
    audit_log = tail_input(
        [apiserver / "audit.log"], format="raw", tag="k8s_audit", read_from_head=True
    )
    config = tail_config(
        tmp_path,
        [str(node.containers / "*.log")],
        audit_log,
        filters=[{"type": "audit", "match": "*"}],
    )
    start_agent(config)
    wait_for(lambda: len([r for r in read_ndjson(out) if "audit" in r]) >= 2, timeout=20)
    flagged = {r["audit"]["rule"]: r for r in read_ndjson(out) if "audit" in r}
    assert set(flagged) == {"kubectl-exec", "container-package-manager"}
    assert flagged["container-package-manager"]["kubernetes"]["pod_name"] == "web-0"
    assert flagged["kubectl-exec"]["audit"]["fields"]["user"] == "mallory@example.com"


def test_kubernetes_fields_name_elasticsearch_indices_and_s3_keys_by_tag() -> None:
    """``${kubernetes.namespace_name}`` in an index name takes the tail record's field; S3 keys
    are per chunk (one tag), so the namespace is ``${tag[1]}`` of ``kube.<ns>.<pod>.<c>``."""
    from outputs.elasticsearch.bulk import IndexNamer
    from outputs.s3.keys import KeyTemplate

    parser = ContainerLogParser("cri")
    records, times = parser.parse_batch_with_times([b"2026-11-29T21:00:00.5Z stdout F hi"], 0.0)
    record = {**records[0], "kubernetes": path_info(CONTAINER_LINK, POD_LOG).kubernetes}
    namer = IndexNamer("logs-${kubernetes.namespace_name}-%Y.%m.%d")
    assert namer.for_chunk("kube.kube-system.coredns.coredns")(times[0], record) == (
        "logs-kube-system-2026.11.29"
    )
    keys = KeyTemplate("${tag[1]}/${host}/${chunk_id}${ext}", ext=".gz", host="node-1")
    group = keys.group("kube.kube-system.coredns-5d78c9869d-8xk2p.coredns", 0.0)
    assert keys.key(group, "c1", 0) == "kube-system/node-1/c1.gz"


def test_positions_file_unreadable_means_files_are_read_whole(tmp_path: Path) -> None:
    """A torn or garbled positions file is reported and forgotten: the files are read from
    their start (duplicates), never from their end (losses)."""
    import logging

    from agent.inputs.tail.positions import Position, PositionStore

    store = PositionStore(str(tmp_path), "tail.0", logging.getLogger("test"))
    assert store.load() == {} and store.existed is False
    store.save([Position(dev=1, ino=2, offset=3, path="/x.log")])
    assert (
        PositionStore(str(tmp_path), "tail.0", logging.getLogger("test")).load()[(1, 2)].offset == 3
    )
    Path(store.path).write_bytes(b'{"version":1,"files":[{"dev"')
    torn = PositionStore(str(tmp_path), "tail.0", logging.getLogger("test"))
    assert torn.load() == {} and torn.existed is True


def test_a_filter_editing_kubernetes_on_one_record_leaves_the_others_alone(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The records of one file share its `kubernetes` object only while no filter edits it in
    place: a `modify` that sets `kubernetes.labels.x` and `kubernetes.pod_name` on one line's
    record changes that record alone, in the same batch as the others."""
    node = Node(tmp_path / "log")
    pod = RuntimeWriter(node.container_log("shop", "web-0", "u1", "web"), "containerd")
    for text in ("before", "edit me", "after"):
        pod.write(text)
    edit = {
        "type": "modify",
        "match": "*",
        "condition": [["key_value_matches", "message", "^edit"]],
        "rules": [["set", "kubernetes.labels.x", "1"], ["set", "kubernetes.pod_name", "edited"]],
    }
    config = tail_config(tmp_path, [str(node.containers / "*.log")], filters=[edit])
    start_agent(config)
    out = tmp_path / "out.ndjson"
    wait_for(lambda: len(read_ndjson(out)) >= 3, timeout=20)
    by_message = {r["message"]: r["kubernetes"] for r in read_ndjson(out)}
    assert by_message["edit me"]["labels"] == {"x": "1"}
    assert by_message["edit me"]["pod_name"] == "edited"
    for message in ("before", "after"):
        assert by_message[message]["pod_name"] == "web-0"
        assert "labels" not in by_message[message]
        assert by_message[message]["namespace_name"] == "shop"


def test_reads_batches_of_read_bytes_and_lines_longer_than_that_whole(tmp_path: Path) -> None:
    """A read takes read_bytes; a line longer than that (up to max_line_bytes) is still read
    whole, and after a cut line's skipped rest the next read starts at its end."""
    from agent.inputs.tail.reader import LINE_SLACK, TailedFile

    long_line = b"L" * 10_000
    cut_line = b"C" * (20_000 + LINE_SLACK + 500)
    path = tmp_path / "0.log"
    path.write_bytes(b"a\n" + long_line + b"\nb\n" + cut_line + b"\n" + b"c" * 5000 + b"\nd\n")
    st = os.stat(path)
    tailed = TailedFile(
        key=(st.st_dev, st.st_ino),
        path=str(path),
        info=path_info(str(path)),
        parser=ContainerLogParser("raw", 20_000),
    )
    assert tailed.open()
    tailed.stat_size()
    got: list[bytes] = []
    skipped_total = 0
    for _ in range(20):
        if tailed.offset >= tailed.size:
            break
        lines, end, skipped = tailed.read_lines(4096, 20_000)
        got += lines
        skipped_total += skipped
        tailed.offset = max(tailed.offset, end)
    tailed.close()
    assert got == [b"a", long_line, b"b", cut_line[: 20_000 + LINE_SLACK], b"c" * 5000, b"d"]
    assert skipped_total == 500 + 1  # the cut line's rest and its newline


class _TurnCountingSink:
    """A ``FrameSink`` for records that notes, per batch, how many turns of the event loop a
    ticker task had taken by then."""

    def __init__(self) -> None:
        self.turns = 0
        self.batches: list[tuple[str, int, int]] = []  # (tag, records, turns so far)
        self.records = 0

    def submit(self, frames: list[bytes], source: str | None = None, truncated: Any = ()) -> bool:
        raise AssertionError("the tail input submits records")

    def submit_records(self, tag: str, records: list[dict[str, Any]], times: list[float]) -> bool:
        self.batches.append((tag, len(records), self.turns))
        self.records += len(records)
        return True

    def has_room(self) -> bool:
        return True

    async def wait_room(self) -> None:
        return None

    async def commit(self) -> None:
        return None


def _tail_in_process(config: dict[str, Any], data_dir: Path) -> Any:
    """A ``TailInput`` on the running loop, submitting to a ``_TurnCountingSink``."""
    from agent.inputs.base import InputContext
    from agent.inputs.tail import TailInput, TailInputConfig
    from tests.doubles import RecordingMetrics

    data_dir.mkdir(exist_ok=True)
    context = InputContext(
        name="tail.0",
        logger=logging.getLogger("test.tail"),
        metrics=RecordingMetrics(),
        sink=_TurnCountingSink(),
        data_dir=str(data_dir),
    )
    converted = msgspec.convert(
        {"type": "tail", **config}, TailInputConfig, dec_hook=config_dec_hook
    )
    return TailInput(converted, context)


def test_reading_takes_a_turn_of_the_loop_after_every_batch(tmp_path: Path) -> None:
    """Busy files are read a batch at a time with a turn of the event loop after each, so the
    outputs' tasks run between an input's batches (and keep up: docs/performance.md)."""
    for name in ("a", "b"):
        lines = b"".join(b"%s %05d %s\n" % (name.encode(), n, b"x" * 100) for n in range(200))
        (tmp_path / f"{name}.log").write_bytes(lines)  # 22,000 bytes: several 4 KiB reads
    config = {
        "paths": [str(tmp_path / "*.log")],
        "format": "raw",
        "read_from_head": True,
        "read_bytes": 4096,
        "tag": "t.${path}",
    }

    async def scenario() -> _TurnCountingSink:
        tail = _tail_in_process(config, tmp_path / "data")
        sink: _TurnCountingSink = tail.context.sink

        async def ticker() -> None:
            while True:
                sink.turns += 1
                await asyncio.sleep(0)

        ticking = asyncio.get_running_loop().create_task(ticker())
        await tail.start()
        try:
            while sink.records < 400:
                await asyncio.sleep(0.01)
        finally:
            await tail.stop()
            ticking.cancel()
        return sink

    sink = asyncio.run(scenario())
    assert {tag for tag, _, _ in sink.batches} == {
        f"t.{tmp_path / 'a.log'}",
        f"t.{tmp_path / 'b.log'}",
    }
    assert len(sink.batches) >= 10
    turns = [seen for _, _, seen in sink.batches]
    assert all(before < after for before, after in itertools.pairwise(turns)), turns


def test_a_file_a_scan_finds_is_read_at_once(tmp_path: Path) -> None:
    """The scan that finds a file is followed by a round that reads it, not by poll_interval's
    sleep; and scans keep refresh_interval even when it is shorter than poll_interval."""
    config = {
        "paths": [str(tmp_path / "*.log")],
        "format": "raw",
        "refresh_interval": "20ms",
        "poll_interval": "1h",
    }

    async def scenario() -> _TurnCountingSink:
        tail = _tail_in_process(config, tmp_path / "data")
        sink: _TurnCountingSink = tail.context.sink
        await tail.start()
        try:
            await asyncio.sleep(0.05)  # the first round found nothing: the next is in an hour
            (tmp_path / "new.log").write_bytes(b"one\ntwo\n")
            for _ in range(3000):  # up to 30 s (the scan is due within 20 ms)
                if sink.records == 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            await tail.stop()
        return sink

    assert asyncio.run(scenario()).records == 2
