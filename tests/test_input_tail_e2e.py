"""The tail input in the real agent process: container log files written byte for byte as
containerd, CRI-O and Docker write them while the test appends at a few thousand lines/s, rotated
by kubelet's scheme, containers restarted and pods deleted, kill -9 under load; every line
arrives, once (at most one batch twice after a crash)."""

from __future__ import annotations

import collections
import gzip
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import Table, agent_toml, file_output, tail_input
from tests.conftest import read_ndjson, wait_for
from tests.container_logs import PIECE, RuntimeWriter, kubelet_rotate

CID = "3b5a2c9f0e1d4c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
LINE_RATE = 3000
"""Lines per second the writers append."""


class Node:
    """A node's /var/log/pods and /var/log/containers under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods = root / "pods"
        self.containers = root / "containers"
        self.pods.mkdir(parents=True)
        self.containers.mkdir()

    def container_log(
        self, namespace: str, pod: str, uid: str, container: str, restart: int = 0, cid: str = CID
    ) -> Path:
        directory = self.pods / f"{namespace}_{pod}_{uid}" / container
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{restart}.log"
        link = self.containers / f"{pod}_{namespace}_{container}-{cid}.log"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(path)
        return path


def tail_config(
    tmp_path: Path,
    paths: list[str],
    *inputs: Table,
    filters: Sequence[Table] = (),
    outputs: Sequence[Table] | None = None,
    buffer: Table | None = None,
    **keys: object,
) -> str:
    """The agent tailing ``paths`` from their head, finding and polling files often (``keys``
    are added to that input), then ``inputs``; outputs as ``agent_toml``'s."""
    tail = tail_input(
        paths,
        **{
            "read_from_head": True,
            "refresh_interval": "200ms",
            "poll_interval": "50ms",
            "rotate_wait": "1s",
            **keys,
        },
    )
    return agent_toml(
        tmp_path,
        tail,
        *inputs,
        filters=filters,
        outputs=outputs,
        buffer={"flush_interval": "100ms", **(buffer or {})},
    )


def text_of(n: int, long_every: int = 0) -> str:
    """Line ``n``: now and then longer than containerd's 16 KiB pieces, with a multi-byte
    character across the cut."""
    if long_every and n % long_every == 0:
        return "long " + "\u00e9" * 9000 + f" seq={n} end"
    return f"line {n} with  spaces\tand tabs  seq={n} end"


def expected_message(style: str, text: str) -> str:
    """What a reader can get back: containerd and CRI-O cut bytes (joined back exactly);
    Docker JSON-encodes each 16 KiB piece on its own, so a character cut in two is lost
    there already (Go writes U+FFFD for each half)."""
    if style != "docker":
        return text
    data = text.encode()
    return "".join(
        data[i : i + PIECE].decode("utf-8", "replace") for i in range(0, len(data), PIECE)
    )


def seqs(records: list[dict[str, object]]) -> collections.Counter[int]:
    counter: collections.Counter[int] = collections.Counter()
    for record in records:
        message = str(record.get("message", ""))
        if message.endswith(" end") and "seq=" in message:
            counter[int(message.rsplit("seq=", 1)[1].split()[0])] += 1
    return counter


class Appender(threading.Thread):
    """Writes lines ``start..`` at about LINE_RATE/s through ``write(n)`` until stopped, both
    streams interleaved; ``pause`` lets a test rotate between two writes."""

    def __init__(self, write: Callable[[int], None], start: int = 0) -> None:
        super().__init__(daemon=True)
        self.write_line = write
        self.next = start
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            began = time.monotonic()
            sent = 0
            while not self.stopped.is_set():
                with self.lock:
                    for _ in range(30):
                        self.write_line(self.next)
                        self.next += 1
                        sent += 1
                ahead = sent / LINE_RATE - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> int:
        self.stopped.set()
        self.join(10)
        assert self.error is None, self.error
        return self.next


def wait_all(out: Path, count: int, timeout: float = 60) -> collections.Counter[int]:
    wait_for(lambda: len(seqs(read_ndjson(out))) >= count, timeout=timeout, interval=0.2)
    return seqs(read_ndjson(out))


@pytest.mark.parametrize("style", ["containerd", "crio", "docker"])
def test_runtime_files_under_load_with_kubelet_rotation(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], style: str
) -> None:
    """Lines at 3000/s, long lines cut in 16 KiB pieces, stdout and stderr interleaved; kubelet
    rotates 0.log three times (the runtime writes a few more lines to the renamed file before it
    reopens; the old file is gzipped later), the container restarts into 1.log, then the pod
    is deleted: every line arrives exactly once, whole, with its kubernetes fields."""
    node = Node(tmp_path / "log")
    log = node.container_log("shop", "web-7d9f-abcde", "0a1b-2c3d", "nginx")
    writer = RuntimeWriter(log, style)
    agent = start_agent(
        tail_config(
            tmp_path,
            [str(node.containers / "*.log")],
            outputs=[file_output(tmp_path / "out.ndjson", "kube.shop.*")],
        )
    )

    def write(n: int) -> None:
        writer.write(text_of(n, long_every=97), "stderr" if n % 5 == 0 else "stdout")

    appender = Appender(write)
    appender.start()
    for _ in range(3):
        time.sleep(0.7)
        with appender.lock:
            rotated = kubelet_rotate(log)
            for _ in range(20):  # before the runtime reopens: still into the renamed file
                write(appender.next)
                appender.next += 1
            writer.reopen()
        time.sleep(1.5)
        with open(rotated, "rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(rotated)
    time.sleep(0.5)
    with appender.lock:  # the container restarts: a new 1.log, the symlink moves to it
        writer.close()
        log = node.container_log("shop", "web-7d9f-abcde", "0a1b-2c3d", "nginx", restart=1)
        writer = RuntimeWriter(log, style)
    time.sleep(1.0)
    total = appender.stop()
    writer.close()
    # the pod is deleted: kubelet removes its directory and symlinks
    shutil.rmtree(node.pods)
    for link in node.containers.iterdir():
        link.unlink()

    counts = wait_all(tmp_path / "out.ndjson", total)
    assert set(counts) == set(range(total))
    assert [n for n, c in counts.items() if c != 1] == []
    records = read_ndjson(tmp_path / "out.ndjson")
    # in the order written: a rotated file is read to its end before the file after it
    order = [int(str(r["message"]).rsplit("seq=", 1)[1].split()[0]) for r in records]
    assert order == sorted(order)
    by_seq = {int(str(r["message"]).rsplit("seq=", 1)[1].split()[0]): r for r in records}
    for n in (0, 1, 97, 194, total - 1):
        record = by_seq[n]
        assert record["message"] == expected_message(style, text_of(n, long_every=97))
        assert record["stream"] == ("stderr" if n % 5 == 0 else "stdout")
        assert record["kubernetes"] == {
            "namespace_name": "shop",
            "pod_name": "web-7d9f-abcde",
            "pod_id": "0a1b-2c3d",
            "container_name": "nginx",
            "container_id": CID,
        }
        assert str(record["time"]).endswith("Z")
    assert agent.metric("parse_errors_total") == 0
    assert agent.metric("input_lost_bytes_total") == 0
    assert agent.metric("input_rotations_total") >= 3
    # let go of every file once read: nothing left open
    wait_for(lambda: agent.metric("input_files_open") == 0, timeout=20)


def test_kill9_under_load_and_rotation_while_down(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """kill -9 while lines are appended; while the agent is down kubelet rotates the file and
    the runtime goes on in a new one. The restarted agent reads the rotated file's rest first,
    then the new file: every line arrives, and no more than one batch twice."""
    node = Node(tmp_path / "log")
    log = node.container_log("default", "api-0", "uid-9", "api")
    writer = RuntimeWriter(log, "containerd")
    read_bytes = 16 * 1024
    config = tail_config(tmp_path, [str(node.containers / "*.log")], read_bytes=read_bytes)
    agent = start_agent(config, workdir=tmp_path / "run")
    appender = Appender(lambda n: writer.write(text_of(n)))
    appender.start()
    wait_for(lambda: len(seqs(read_ndjson(tmp_path / "out.ndjson"))) > 2000, timeout=30)
    agent.kill()
    with appender.lock:
        rotated = kubelet_rotate(log)
        writer.reopen()
    down_at = appender.next
    time.sleep(1.0)
    agent = start_agent(config, workdir=tmp_path / "run")
    time.sleep(1.5)
    total = appender.stop()
    writer.close()
    counts = wait_all(tmp_path / "out.ndjson", total)
    assert set(counts) == set(range(total))
    duplicates = sum(c - 1 for c in counts.values())
    line_bytes = len(writer.pieces(text_of(total))[0])
    assert duplicates <= read_bytes // line_bytes + 1, duplicates
    # the rotated file's rest came before the new file's lines
    order = [
        int(str(r["message"]).rsplit("seq=", 1)[1].split()[0])
        for r in read_ndjson(tmp_path / "out.ndjson")
    ]
    first_new = order.index(down_at)
    first_seen: dict[int, int] = {}
    for index, n in enumerate(order):
        first_seen.setdefault(n, index)
    assert all(first_seen[n] < first_new for n in range(down_at))
    assert agent.metric("input_lost_bytes_total") == 0
    assert rotated.exists()


def test_rotated_file_removed_while_down_is_counted_as_lost(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    node = Node(tmp_path / "log")
    log = node.container_log("default", "batch-1", "uid-1", "job")
    writer = RuntimeWriter(log, "containerd")
    config = tail_config(tmp_path, [str(node.containers / "*.log")])
    agent = start_agent(config, workdir=tmp_path / "run")
    for n in range(100):
        writer.write(text_of(n))
    wait_all(tmp_path / "out.ndjson", 100)
    agent.stop()
    unread = b"".join(writer.pieces(text_of(n))[0] for n in range(100, 150))
    os.write(writer.fd, unread)
    rotated = kubelet_rotate(log)
    writer.reopen()
    with open(rotated, "rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(rotated)
    for n in range(150, 160):
        writer.write(text_of(n))
    agent = start_agent(config, workdir=tmp_path / "run")
    counts = wait_all(tmp_path / "out.ndjson", 110)
    assert set(counts) == set(range(100)) | set(range(150, 160))
    # found in the gzipped copy by the CRC of its head: exactly the 50 unread lines
    lost = agent.metric("input_lost_bytes_total")
    assert lost == len(unread), (lost, len(unread))
    assert "bytes lost" in agent.log() and "/containers/" in agent.log()


LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


@pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="logrotate is not installed")
@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_real_logrotate(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], mode: str
) -> None:
    """Debian's logrotate rotates a plain log (format raw, as for audit.log) three times while
    lines are appended at 3000/s, compressing the older copies. ``create``: the writer goes on
    in the renamed file until it reopens, every line arrives exactly once. ``copytruncate``:
    the writer keeps its file; lines written between logrotate's copy and its truncation exist
    only in the copy (logrotate's own race), so the test holds the writer while it rotates,
    after the agent read everything, and then every line arrives exactly once."""
    directory = tmp_path / "log"
    directory.mkdir()
    log = directory / "app.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        f"{log} {{\n  {mode}\n  rotate 10\n  compress\n  delaycompress\n  missingok\n}}\n"
    )
    state = tmp_path / "logrotate.state"
    out = tmp_path / "out.ndjson"
    agent = start_agent(
        tail_config(tmp_path, [str(directory / "*.log")], format="raw", path_key="file")
    )
    holder = {"fd": fd}

    def write(n: int) -> None:
        os.write(holder["fd"], f"{text_of(n)}\n".encode())

    appender = Appender(write)
    appender.start()
    for _ in range(3):
        time.sleep(0.8)
        if mode == "create":
            subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, timeout=30)
            time.sleep(0.05)  # the writer still writes to the renamed file until it reopens
            with appender.lock:
                os.close(holder["fd"])
                holder["fd"] = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        else:
            with appender.lock:
                wait_all(out, appender.next)
                subprocess.run(
                    [LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, timeout=30
                )
    time.sleep(0.8)
    total = appender.stop()
    os.close(holder["fd"])
    counts = wait_all(out, total)
    assert set(counts) == set(range(total))
    assert [n for n, c in counts.items() if c != 1] == []
    assert list(directory.glob("app.log.*.gz")), "logrotate compressed nothing"
    record = read_ndjson(out)[0]
    assert set(record) == {"message", "time", "file"}
    assert record["file"] == str(log)
    if mode == "copytruncate":
        assert agent.metric("input_truncations_total") >= 3
    else:
        assert agent.metric("input_rotations_total") >= 3


def test_rotated_rest_is_read_before_the_new_file(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """A rotation found while much of the old file is unread: small reads make the old file's
    rest take many rounds; the new file waits for it, so lines come out in the order written."""
    node = Node(tmp_path / "log")
    log = node.container_log("default", "burst-0", "uid-b", "app")
    writer = RuntimeWriter(log, "containerd")
    config = tail_config(
        tmp_path,
        [str(node.containers / "*.log")],
        max_line_bytes=1000,
        read_bytes="4KiB",
        poll_interval="1s",
        refresh_interval="2s",
    )
    agent = start_agent(config)
    writer.write(text_of(0))
    wait_all(tmp_path / "out.ndjson", 1)
    os.kill(agent.pid, signal.SIGSTOP)  # the agent falls behind: nothing read meanwhile
    try:
        for n in range(1, 3000):
            writer.write(text_of(n))
        kubelet_rotate(log)
        writer.reopen()
        for n in range(3000, 4000):
            writer.write(text_of(n))
        writer.close()
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    counts = wait_all(tmp_path / "out.ndjson", 4000)
    assert counts == dict.fromkeys(range(4000), 1)
    order = [
        int(str(r["message"]).rsplit("seq=", 1)[1].split()[0])
        for r in read_ndjson(tmp_path / "out.ndjson")
    ]
    assert order == sorted(order)
