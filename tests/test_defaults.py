"""Defaults and docs agree: one default data_dir (code, DaemonSet, examples), one set of
environment variable names (examples, overlays), the README's tag_pattern keeps an image's
registry path, and the embedded default config shows what the product is for (the audit mark
on an sshd failure sent with ``logger``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from agent.config import DEFAULT_DATA_DIR, AgentConfig, default_config_text, parse_config
from agent.fields import compile_template
from parsers.syslog import SyslogParser
from tests.conftest import REPO, agent_command, agent_env, free_port, wait_for

MANIFESTS = REPO / "manifests"
EXAMPLES = sorted((REPO / "examples").glob("*.toml"))
LOCAL_EXAMPLES = {"local.toml"}
"""Run by a user on a laptop, not as root: it keeps its data under /tmp on purpose."""
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}")


def _daemonset() -> dict[str, Any]:
    docs = yaml.safe_load_all((MANIFESTS / "base" / "daemonset.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "DaemonSet")


def _agent_container(daemonset: dict[str, Any]) -> dict[str, Any]:
    spec = daemonset["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "agent")


def test_default_data_dir_is_the_daemonsets_host_path() -> None:
    """A ConfigMap without data_dir writes where the DaemonSet mounts its hostPath."""
    assert AgentConfig().data_dir == DEFAULT_DATA_DIR
    daemonset = _daemonset()
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _agent_container(daemonset)["volumeMounts"]}
    assert DEFAULT_DATA_DIR in mounts, f"the agent container mounts nothing at {DEFAULT_DATA_DIR}"
    volume = volumes[mounts[DEFAULT_DATA_DIR]]
    assert volume["hostPath"]["path"] == DEFAULT_DATA_DIR
    assert not volume.get("readOnly") and not _agent_container(daemonset).get("readOnly")


def _config_files() -> list[Path]:
    return [*EXAMPLES, *sorted(MANIFESTS.rglob("agent.toml"))]


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_uses_the_default_data_dir(path: Path) -> None:
    data_dir = tomllib.loads(path.read_text()).get("agent", {}).get("data_dir", DEFAULT_DATA_DIR)
    if path.name in LOCAL_EXAMPLES and path.parent.name == "examples":
        assert data_dir.startswith("${AGENT_DATA_DIR:-/tmp/")
        return
    assert data_dir == DEFAULT_DATA_DIR


def test_readme_and_docs_state_the_default_data_dir() -> None:
    readme = (REPO / "README.md").read_text()
    # The key tables are generated into docs/reference.md (from AgentConfig's default).
    reference = (REPO / "docs" / "reference.md").read_text()
    assert f'| `data_dir` | string | `"{DEFAULT_DATA_DIR}"` |' in reference
    for text in (readme, (REPO / "docs" / "buffer.md").read_text()):
        assert "/var/lib/container-audit-agent" not in text


def _variables(path: Path) -> set[str]:
    return set(PLACEHOLDER.findall(path.read_text()))


def _overlay_provides(overlay: str) -> set[str]:
    """Variables the overlay's pod gets: its .env file, its env entries, and the base's."""
    directory = MANIFESTS / "overlays" / overlay
    names = {
        line.split("=", 1)[0].strip()
        for env_file in directory.glob("*.env")
        for line in env_file.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    for doc in yaml.safe_load_all((directory / "daemonset-env.yaml").read_text()):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            names |= {item["name"] for item in container.get("env", [])}
    names |= {item["name"] for item in _agent_container(_daemonset()).get("env", [])}
    return names


@pytest.mark.parametrize(
    ("prefix", "overlay"), [("ES_", "elasticsearch"), ("S3_", "s3"), ("AWS_", "s3")]
)
def test_examples_and_overlays_name_the_variables_alike(prefix: str, overlay: str) -> None:
    """Copying a line from an example into the overlay's agent.toml (or back) keeps working."""
    overlay_config = _variables(MANIFESTS / "overlays" / overlay / "agent.toml")
    provided = _overlay_provides(overlay)
    assert {n for n in overlay_config if n.startswith(prefix)} <= provided
    for example in EXAMPLES:
        used = {n for n in _variables(example) if n.startswith(prefix)}
        assert used <= provided, f"{example.name} uses {sorted(used - provided)}"
    assert {n for n in provided if n.startswith(prefix)}, f"the {overlay} overlay sets no {prefix}*"


def _readme_tag_pattern() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"`tag_pattern\s*=\s*'([^`]+)'`", readme)
    assert found, "README.md shows no tag_pattern for Docker's tag template"
    return found.group(1)


def test_readme_tag_pattern_keeps_the_registry_path() -> None:
    """Docker's syslog driver tag ``{{.ImageName}}/{{.Name}}/{{.ID}}`` through the real parser
    and the input's tag templating."""
    pattern = _readme_tag_pattern()
    manifests = tomllib.loads((MANIFESTS / "base" / "agent.toml").read_text())
    assert pattern in {i.get("tag_pattern") for i in manifests["inputs"]}
    parser = SyslogParser("auto", "UTC", pattern)
    tag = b"registry.example.com/team/nginx:1.25/web/0123456789ab"
    line = b"<30>Nov 29 21:00:00 node-1 " + tag + b"[7]: hi"
    record = parser.parse(line, time.time())
    assert record["image"] == "registry.example.com/team/nginx:1.25"
    assert record["container_name"] == "web"
    assert record["container_id"] == "0123456789ab"
    assert compile_template("docker.${container_name}")(record) == "docker.web"
    assert "image" not in parser.parse(b"<30>Nov 29 21:00:00 node-1 sshd[7]: hi", time.time())


# ---------------------------------------------------------------- the embedded default config


def test_embedded_default_runs_the_audit_filter() -> None:
    config = parse_config(
        default_config_text().replace("${AGENT_RUNTIME_DIR}", "/tmp/x"), "<embedded>"
    )
    assert [f.__struct_config__.tag for f in config.filters] == ["audit"]


@pytest.mark.skipif(shutil.which("logger") is None, reason="logger (util-linux) not installed")
def test_embedded_default_marks_an_sshd_failure_sent_with_logger(tmp_path: Path) -> None:
    """``python -m agent`` with no config, then ``logger`` to its UNIX socket: the record on
    stdout carries the audit mark."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    udp, http = free_port(socket.SOCK_DGRAM), free_port()
    env = agent_env(
        AGENT_RUNTIME_DIR=str(runtime),
        AGENT_UDP_LISTEN=f"127.0.0.1:{udp}",
        AGENT_HTTP_LISTEN=f"127.0.0.1:{http}",
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            agent_command(), env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    try:
        socket_path = runtime / "syslog.sock"
        wait_for(lambda: b"agent running" in err.read_bytes(), timeout=30)
        message = "Failed password for root from 203.0.113.9 port 50022 ssh2"
        subprocess.run(
            ["logger", "-u", str(socket_path), "-t", "sshd", "-p", "auth.info", message],
            check=True,
            timeout=10,
        )
        wait_for(lambda: message.encode() in out.read_bytes(), timeout=20)
        records = [msgspec.json.decode(line) for line in out.read_bytes().splitlines() if line]
        (record,) = [r for r in records if r.get("message") == message]
        assert record["ident"] == "sshd"
        assert record["audit"]["rule"] == "ssh-auth-failure"
        assert record["audit"]["fields"]["src_ip"] == "203.0.113.9"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0, err.read_text()
