"""Rehearsal of a node: a real rsyslogd with a shipped forwarding snippet (RELP, the default, or
the UNIX socket opt-out), the agent with the shipped ConfigMap's agent.toml (paths and ports moved
to a temporary directory, the output a file), messages in the shapes Docker's syslog driver sends:
they come out with their container fields. Then, over the default transport (the snippet the node
installer installs unless told otherwise), the agent stopped while messages keep coming and
started again: every message arrives. (Over the UNIX socket they would not: omuxsock drops what
it cannot send; test_manifests.py pins that down and docs/deploy.md says so.)"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, agent_command, agent_env, free_port, wait_for

SNIPPETS = {
    "unix": REPO / "manifests" / "node" / "rsyslog-audit-agent.conf",
    "relp": REPO / "manifests" / "node" / "rsyslog-audit-agent-relp.conf",
}


def default_transport() -> str:
    """The transport of the snippet the node installer's DaemonSet installs by default."""
    daemonset = yaml.safe_load((REPO / "manifests" / "node" / "daemonset.yaml").read_text())
    [install] = daemonset["spec"]["template"]["spec"]["initContainers"]
    [snippet] = [e["value"] for e in install["env"] if e["name"] == "SNIPPET"]
    [transport] = [name for name, path in SNIPPETS.items() if path.name == snippet]
    return transport


DEFAULT_TRANSPORT = default_transport()
PIECES = ("agent/__main__.py", "agent/inputs/syslog.py", "parsers/syslog.py")
MISSING = [piece for piece in PIECES if not (REPO / piece).exists()]

pytestmark = [
    pytest.mark.rsyslog,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("rsyslogd") is None or shutil.which("logger") is None,
        reason="rsyslogd and logger are needed",
    ),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is needed"),
    pytest.mark.skipif(
        bool(MISSING), reason=f"the agent is not complete on this branch yet: no {MISSING}"
    ),
]

DOCKER_TAG = "registry.local:5000/team/nginx:1.25/web-1/0123456789ab"
DOCKER_TAG_3164 = "team/nginx/web-1/0123456789ab"  # RFC 3164 tags cannot hold ":" (docs)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} exactly once"
    return text.replace(old, new)


def shipped_agent_toml() -> str:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "manifests" / "base")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for doc in yaml.safe_load_all(out):
        if (
            doc
            and doc["kind"] == "ConfigMap"
            and doc["metadata"]["name"].startswith("audit-agent-config")
        ):
            text: str = doc["data"]["agent.toml"]
            return text
    raise AssertionError("no audit-agent-config ConfigMap in manifests/base")


class Node:
    """The node's side: directories, rsyslog and the agent as real processes."""

    def __init__(self, root: Path, transport: str) -> None:
        self.root = root
        self.transport = transport
        self.run_dir = root / "run" / "audit-agent"
        self.agent_socket = self.run_dir / "syslog.sock"
        self.docker_socket = root / "run" / "rsyslog-docker.sock"
        self.dev_log = root / "run" / "dev-log.sock"
        self.output = root / "out" / "records.ndjson"
        self.http_port = free_port()
        self.agent: subprocess.Popen[bytes] | None = None
        self.rsyslog: subprocess.Popen[bytes] | None = None
        self.agent_starts = 0

    # ------------------------------------------------------------------------ configs

    def write_configs(self) -> None:
        (self.root / "run").mkdir(parents=True)
        text = shipped_agent_toml()
        text = replace_once(text, '"/var/lib/audit-agent"', json.dumps(str(self.root / "buffer")))
        text = replace_once(
            text, '"/var/run/audit-agent/syslog.sock"', json.dumps(str(self.agent_socket))
        )
        text = replace_once(text, '"0.0.0.0:2020"', f'"127.0.0.1:{self.http_port}"')
        relp_port = free_port()
        text = replace_once(text, '"127.0.0.1:2514"', f'"127.0.0.1:{relp_port}"')
        # The rehearsal is about rsyslog's transport: there is no API server for the kubernetes
        # filter here (the agent would refuse to start without one), so it goes.
        kube = '[[filters]]\ntype = "kubernetes"\n'
        start = text.index(kube)
        text = text[:start] + text[text.index("[[filters]]", start + len(kube)) :]
        head, outputs, _ = text.partition("[[outputs]]")
        assert outputs, "the shipped config has no [[outputs]]"
        text = head + f'[[outputs]]\ntype = "file"\nmatch = "*"\npath = "{self.output}"\n'
        (self.root / "agent.toml").write_text(text)

        snippet = SNIPPETS[self.transport].read_text()
        if self.transport == "unix":
            snippet = replace_once(
                snippet, "/var/run/audit-agent/syslog.sock", str(self.agent_socket)
            )
        else:
            snippet = replace_once(snippet, 'port="2514"', f'port="{relp_port}"')
        assert "/var/run/rsyslog-docker.sock" in snippet  # in the input, and in comments
        snippet = snippet.replace("/var/run/rsyslog-docker.sock", str(self.docker_socket))
        (self.root / "10-audit-agent.conf").write_text(snippet)
        work = self.root / "rsyslog-work"
        work.mkdir()
        # A distribution's rsyslog.conf, in small: /dev/log (here dev-log.sock, with imuxsock's
        # special parser as on a node), a work directory, the drop-ins, the host's own rule.
        (self.root / "rsyslog.conf").write_text(
            f'global(workDirectory="{work}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.dev_log}")\n'
            f"$IncludeConfig {self.root}/10-audit-agent.conf\n"
            f"*.* {self.root}/host-messages.log\n"
        )

    # ---------------------------------------------------------------------- processes

    def start_rsyslog(self) -> None:
        conf = self.root / "rsyslog.conf"
        check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        with open(self.root / "rsyslogd.out", "ab") as out:
            self.rsyslog = subprocess.Popen(
                ["rsyslogd", "-n", "-f", str(conf), "-i", str(self.root / "rsyslogd.pid")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(lambda: self.docker_socket.exists() and self.dev_log.exists(), timeout=30)

    def start_agent(self) -> None:
        self.agent_starts += 1
        with open(self.root / f"agent-{self.agent_starts}.log", "wb") as out:
            self.agent = subprocess.Popen(
                agent_command("--config", str(self.root / "agent.toml")),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=agent_env(NODE_NAME="node-a"),
                cwd=self.root,
                start_new_session=True,
            )
        wait_for(self.agent_ready, timeout=60)

    def agent_ready(self) -> bool:
        assert self.agent is not None and self.agent.poll() is None, self.agent_log()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2):
                return self.agent_socket.exists()
        except OSError:
            return False

    def stop_agent(self) -> None:
        process, self.agent = self.agent, None
        if process is not None:
            stop(process, signal.SIGTERM)
            assert process.returncode == 0, self.agent_log()

    def stop_all(self) -> None:
        for process in (self.agent, self.rsyslog):
            if process is not None:
                stop(process, signal.SIGTERM)
        self.agent = self.rsyslog = None

    def host_log(self) -> str:
        path = self.root / "host-messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def agent_log(self) -> str:
        return (self.root / f"agent-{self.agent_starts}.log").read_text(errors="replace")

    # ------------------------------------------------------------------------ traffic

    def docker_5424(self, *messages: str) -> None:
        """Docker's rfc5424micro, byte for byte as its syslog driver formats it (logger would
        refuse the tag: RFC 5424 caps APP-NAME at 48 characters, Docker does not)."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            for message in messages:
                line = f"<29>1 {stamp} node-a {DOCKER_TAG} 4242 {DOCKER_TAG} - {message}"
                sock.sendto(line.encode(), str(self.docker_socket))

    def docker_3164(self, *messages: str) -> None:
        """Docker's rfc3164: <pri>Mmm dd hh:mm:ss host tag[pid]: message."""
        logger(self.docker_socket, "--rfc3164", "-t", DOCKER_TAG_3164, messages=messages)

    def host_message(self, *messages: str) -> None:
        """A program on the node writing to /dev/log (glibc's short format)."""
        logger(self.dev_log, "-t", "sshd", messages=messages)

    def records(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        lines = self.output.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def messages(self) -> dict[str, dict[str, Any]]:
        return {str(r.get("message", "")).strip(): r for r in self.records()}


def logger(sock: Path, *args: str, messages: tuple[str, ...]) -> None:
    subprocess.run(
        ["logger", "-u", str(sock), "-d", "-i", "-p", "daemon.notice", *args],
        input="".join(m + "\n" for m in messages).encode(),
        check=True,
        timeout=60,
    )


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass


@pytest.fixture
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    # UNIX socket paths are limited to 107 bytes; pytest's tmp_path can be long.
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"k8s-node-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir()
    node = Node(root, request.param)
    try:
        node.write_configs()
        yield node
    finally:
        node.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def send_first_messages(node: Node) -> dict[str, dict[str, Any]]:
    node.start_agent()
    node.start_rsyslog()
    node.docker_5424("docker-5424-first")
    node.docker_3164("docker-3164-first")
    node.host_message("host-first Accepted publickey for root")
    wanted = {"docker-5424-first", "docker-3164-first", "host-first Accepted publickey for root"}
    wait_for(lambda: wanted <= node.messages().keys(), timeout=60)
    return node.messages()


@pytest.mark.parametrize("node", ["unix", "relp"], indirect=True)
def test_node_rehearsal_docker_messages_come_out_with_container_fields(node: Node) -> None:
    got = send_first_messages(node)

    docker = got["docker-5424-first"]
    assert docker["container_name"] == "web-1"
    assert docker["container_id"] == "0123456789ab"
    assert docker["image"] == "registry.local:5000/team/nginx:1.25"
    assert docker["severity"] == "notice" and docker["facility"] == "daemon"
    assert "." in docker["time"], f"microseconds lost: {docker['time']}"
    docker_3164 = got["docker-3164-first"]
    assert (docker_3164["image"], docker_3164["container_name"]) == ("team/nginx", "web-1")
    assert docker_3164["container_id"] == "0123456789ab"
    host = got["host-first Accepted publickey for root"]
    assert host["ident"] == "sshd" and "container_id" not in host


def test_the_default_transport_is_relp() -> None:
    assert DEFAULT_TRANSPORT == "relp"


@pytest.mark.parametrize("node", [DEFAULT_TRANSPORT], indirect=True)
def test_node_rehearsal_agent_restart_loses_nothing_over_the_default_transport(
    node: Node,
) -> None:
    first = set(send_first_messages(node))

    # The agent goes away (a pod restart, an upgrade); the node keeps logging into rsyslog's queue.
    node.stop_agent()
    during = [f"during-restart-{i}" for i in range(300)]
    node.docker_5424(*during[:150])
    node.docker_3164(*during[150:])
    # The host's own rule comes after the forwarding action: once it logged them, rsyslog has
    # queued them for the agent.
    wait_for(lambda: node.host_log().count("during-restart-") >= len(during), timeout=60)
    node.start_agent()
    after = [f"after-restart-{i}" for i in range(100)]
    node.docker_5424(*after)

    everything = first | set(during) | set(after)
    try:
        wait_for(lambda: everything <= node.messages().keys(), timeout=120, interval=0.5)
    except AssertionError:
        missing = sorted(everything - node.messages().keys())
        raise AssertionError(f"{len(missing)} messages lost, e.g. {missing[:5]}") from None
    for name in during + after:
        record = node.messages()[name]
        assert record["container_id"] == "0123456789ab", record
