"""The Kubernetes packaging: manifests/ renders with kustomize, every object validates strictly
against a current Kubernetes schema, the pieces agree with each other (socket path, ports, user,
grace period), the agent accepts each shipped agent.toml, rsyslog accepts the node snippets, and
the node installer script behaves on a fake host."""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO, agent_command, agent_env, free_port, wait_for

MANIFESTS = REPO / "manifests"
NODE = MANIFESTS / "node"
SNIPPETS = ("rsyslog-audit-agent.conf", "rsyslog-audit-agent-relp.conf")
K8S_VERSION = kubernetes_validate.latest_version()

# Every kustomization a user applies as shipped (RELP, the default transport), and each of them
# opted out to the UNIX socket transport ("+unix-socket": the component added on top).
TARGETS = ("base", "overlays/s3", "overlays/elasticsearch", "node", "node-uninstall")
AGENT_TARGETS = ("base", "overlays/s3", "overlays/elasticsearch")
OPT_OUT = "unix-socket"
OPT_OUT_TARGETS = tuple(f"{target}+{OPT_OUT}" for target in TARGETS)

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed"
)
needs_agent = pytest.mark.skipif(
    not (REPO / "agent" / "__main__.py").exists(),
    reason="agent/__main__.py is not on this branch yet: `python -m agent --check` cannot run",
)


# ------------------------------------------------------------------------------ rendering


def kustomize(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered(target: str) -> list[dict[str, Any]]:
    """The objects of a kustomization under manifests/ (``overlays/s3+unix-socket`` adds that
    component to the overlay as a user would, composed in a copy of manifests/ so the repository
    stays clean)."""
    if target not in _RENDERED:
        base, _, component = target.partition("+")
        if component:
            _RENDERED[target] = _render_with_component(base, component)
        else:
            _RENDERED[target] = kustomize(MANIFESTS / target)
    return copy.deepcopy(_RENDERED[target])


def _render_with_component(target: str, component: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        copy_root = Path(tmp) / "manifests"
        shutil.copytree(MANIFESTS, copy_root)
        combo = copy_root / "combos" / "with-component"
        combo.mkdir(parents=True)
        (combo / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - ../../{target}\ncomponents:\n  - ../../components/{component}\n"
        )
        return kustomize(combo)


def only(objects: list[dict[str, Any]], kind: str, name_prefix: str = "") -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name_prefix)
    ]
    assert len(found) == 1, f"expected one {kind} {name_prefix!r}, got {[kn(o) for o in found]}"
    return found[0]


def kn(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def agent_daemonset(target: str) -> dict[str, Any]:
    return only(rendered(target), "DaemonSet", "audit-agent")


def container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    containers = pod_spec["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def agent_toml(target: str) -> str:
    text: str = only(rendered(target), "ConfigMap", "audit-agent-config")["data"]["agent.toml"]
    return text


def agent_config(target: str) -> dict[str, Any]:
    return tomllib.loads(agent_toml(target))


def parse_seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(ms|s|m)?", value)
    assert match, value
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


# ----------------------------------------------------------------------- schema validation


def validate_strict(obj: dict[str, Any], where: str) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        raise AssertionError(f"{where}: {kn(obj)} invalid at {path}: {error.message}") from None


def resource_files() -> list[Path]:
    """Every file a kustomization lists under ``resources`` (whole objects, unlike patches)."""
    files: list[Path] = []
    for kustomization in sorted(MANIFESTS.rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                files.append(path)
    return files


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_resource_file_validates_strictly(path: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs, f"{path} holds no object"
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's CRDs: tests/test_monitoring.py checks them
        validate_strict(doc, str(path.relative_to(REPO)))


@needs_kubectl
@pytest.mark.parametrize("target", [*TARGETS, *OPT_OUT_TARGETS])
def test_kustomize_output_validates_strictly(target: str) -> None:
    objects = rendered(target)
    assert objects
    for obj in objects:
        validate_strict(obj, f"kustomize {target}")


@needs_kubectl
def test_strict_validation_rejects_an_unknown_field() -> None:
    daemonset = agent_daemonset("base")
    container(daemonset["spec"]["template"]["spec"], "agent")["livenessProbe"]["httpGett"] = {}
    with pytest.raises(AssertionError, match="httpGett"):
        validate_strict(daemonset, "mutated base")


# ----------------------------------------------------------------- the agent's DaemonSet


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_daemonset_runs_on_every_node_and_survives_restarts(target: str) -> None:
    objects = rendered(target)
    daemonset = only(objects, "DaemonSet", "audit-agent")
    pod = daemonset["spec"]["template"]["spec"]
    agent = container(pod, "agent")
    config = agent_config(target)

    assert daemonset["metadata"]["namespace"] == "audit-agent"
    assert only(objects, "Namespace")["metadata"]["name"] == "audit-agent"
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"]

    # The grace period outlasts the agent's own drain time.
    assert pod["terminationGracePeriodSeconds"] > parse_seconds(config["agent"]["grace_period"])

    # hostPath volumes for the socket directory and the buffer, mounted where the config says.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
    unix_inputs = [i for i in config["inputs"] if i.get("mode", "").startswith("unix")]
    assert len(unix_inputs) == 1
    socket_dir = str(Path(unix_inputs[0]["path"]).parent)
    for host_dir in (socket_dir, config["agent"]["data_dir"]):
        volume = volumes[mounts[host_dir]]
        assert volume["hostPath"] == {"path": host_dir, "type": "DirectoryOrCreate"}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    # The config comes from the generated (hash-suffixed) ConfigMap, mounted where the image's
    # entrypoint looks for it.
    config_map = only(objects, "ConfigMap", "audit-agent-config")
    assert re.fullmatch(r"audit-agent-config-[a-z0-9]{10}", config_map["metadata"]["name"])
    assert (
        volumes[mounts["/etc/audit-agent"]]["configMap"]["name"] == config_map["metadata"]["name"]
    )

    # NODE_NAME from the downward API, used by the config.
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "${NODE_NAME" in config["agent"]["node_name"]


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_daemonset_health_metrics_and_resources(target: str) -> None:
    daemonset = agent_daemonset(target)
    template = daemonset["spec"]["template"]
    agent = container(template["spec"], "agent")
    port = int(agent_config(target)["agent"]["http_listen"].rsplit(":", 1)[1])

    assert agent["ports"][0]["containerPort"] == port
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert agent["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    assert agent["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }


@needs_kubectl
def test_agent_runs_unprivileged_and_only_the_init_step_is_root() -> None:
    pod = agent_daemonset("base")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    agent = container(pod, "agent")["securityContext"]
    assert agent["runAsNonRoot"] is True
    assert agent["allowPrivilegeEscalation"] is False
    assert agent["readOnlyRootFilesystem"] is True
    assert agent["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in agent["capabilities"]

    init = container(pod, "own-host-dirs", init=True)
    assert init["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    # The init step gives the host directories to the user the agent runs as, and to the user
    # the image declares.
    uid, gid = agent["runAsUser"], agent["runAsGroup"]
    assert f"chown -R {uid}:{gid} " in " ".join(init["command"])
    init_mounts = {m["mountPath"] for m in init["volumeMounts"]}
    agent_mounts = {m["mountPath"]: m["name"] for m in container(pod, "agent")["volumeMounts"]}
    read_only = {
        m["mountPath"] for m in container(pod, "agent")["volumeMounts"] if m.get("readOnly")
    }
    host_mounts = {
        path
        for path, name in agent_mounts.items()
        if any(v["name"] == name and "hostPath" in v for v in pod["volumes"])
    }
    # every host directory the agent writes is handed to it; /var/log stays the node's
    assert init_mounts == host_mounts - read_only
    assert "/var/log" in read_only
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", dockerfile(), re.M)
    assert dockerfile_user and (int(dockerfile_user[1]), int(dockerfile_user[2])) == (uid, gid)


@needs_kubectl
@pytest.mark.parametrize("target", ("overlays/s3", "overlays/elasticsearch"))
def test_overlays_set_image_output_and_env(target: str) -> None:
    objects = rendered(target)
    pod = only(objects, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {"registry.example.com/container-audit-agent:0.1.0"}

    env_map = only(objects, "ConfigMap", "audit-agent-env")
    agent = container(pod, "agent")
    assert agent["envFrom"] == [{"configMapRef": {"name": env_map["metadata"]["name"]}}]
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in agent["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    provided = set(env_map["data"]) | set(secret_env) | {"NODE_NAME"}

    config = agent_config(target)
    [output] = config["outputs"]
    assert output["type"] == target.rsplit("/", 1)[1]
    # Every ${VAR} without a default is provided by the pod's environment.
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", agent_toml(target)))
    assert required and required <= provided, required - provided

    if target == "overlays/s3":
        account = only(objects, "ServiceAccount")
        assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    else:
        assert set(secret_env.values()) == {"audit-agent-es-credentials"}


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_relp_by_default_puts_the_agent_on_the_host_network(target: str) -> None:
    pod = agent_daemonset(target)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    # Cluster DNS (an in-cluster Elasticsearch Service) still resolves on the host network.
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    [http] = container(pod, "agent")["ports"]
    assert http["hostPort"] == http["containerPort"]


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_unix_socket_opt_out_takes_the_agent_off_the_host_network(target: str) -> None:
    opted_out = agent_daemonset(f"{target}+{OPT_OUT}")
    pod = opted_out["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod and "dnsPolicy" not in pod
    assert "hostPort" not in str(opted_out)
    # Nothing else differs from the default.
    default = agent_daemonset(target)
    default_pod = default["spec"]["template"]["spec"]
    for key in ("hostNetwork", "dnsPolicy"):
        default_pod.pop(key)
    container(default_pod, "agent")["ports"][0].pop("hostPort")
    assert opted_out == default
    assert [kn(o) for o in rendered(f"{target}+{OPT_OUT}")] == [kn(o) for o in rendered(target)]


def installer_snippet(target: str) -> str:
    """The snippet the node installer of a rendered kustomization puts on the nodes."""
    pod = only(rendered(target), "DaemonSet", "audit-agent-node-setup")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container(pod, "install", init=True)["env"]}
    snippet = env["SNIPPET"]
    assert snippet in SNIPPETS
    return snippet


def install_script_default() -> str:
    script = (NODE / "install.sh").read_text()
    match = re.search(r'^SNIPPET="\$\{SNIPPET:-([^}]+)\}"$', script, re.M)
    assert match
    return match.group(1)


@needs_kubectl
def test_node_installer_installs_the_relp_snippet_by_default() -> None:
    assert installer_snippet("node") == "rsyslog-audit-agent-relp.conf"
    assert install_script_default() == "rsyslog-audit-agent-relp.conf"
    assert installer_snippet("node-uninstall") == "rsyslog-audit-agent-relp.conf"
    relp = (NODE / "rsyslog-audit-agent-relp.conf").read_text()
    assert 'type="omrelp" target="127.0.0.1"' in relp


@needs_kubectl
def test_unix_socket_opt_out_switches_the_node_installer_and_nothing_else() -> None:
    assert installer_snippet(f"node+{OPT_OUT}") == "rsyslog-audit-agent.conf"
    opted_out = rendered(f"node+{OPT_OUT}")
    default = rendered("node")
    for objects in (opted_out, default):
        pod = only(objects, "DaemonSet", "audit-agent-node-setup")["spec"]["template"]["spec"]
        install = container(pod, "install", init=True)
        install["env"] = [e for e in install["env"] if e["name"] != "SNIPPET"]
    assert opted_out == default
    # The agent's DaemonSet patch of the component selected nothing here.
    assert not [o for o in opted_out if o["metadata"]["name"] == "audit-agent"]


# --------------------------------------------------------------- the config and the node


def omuxsock_socket(snippet: str) -> str:
    match = re.search(r"^\$OMUxSockSocket (\S+)$", snippet, re.M)
    assert match
    return match.group(1)


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_config_listens_where_the_node_snippets_send(target: str) -> None:
    config = agent_config(target)
    inputs = {i["mode"]: i for i in config["inputs"] if i["type"] == "syslog"}
    unix_snippet = (NODE / "rsyslog-audit-agent.conf").read_text()
    assert inputs["unix_dgram"]["path"] == omuxsock_socket(unix_snippet)
    assert inputs["unix_dgram"]["socket_mode"] == "0666"  # rsyslog may run as user syslog

    relp_snippet = (NODE / "rsyslog-audit-agent-relp.conf").read_text()
    relp_target = re.search(r'type="omrelp" target="([^"]+)" port="(\d+)"', relp_snippet)
    assert relp_target
    assert inputs["relp"]["listen"] == f"{relp_target[1]}:{relp_target[2]}"

    # On the host network (the default) a listener on a routable address would be open to the
    # network: every syslog listener is on the loopback, reached by the node's rsyslog only.
    for spec in config["inputs"]:
        if "listen" in spec:
            host = spec["listen"].rsplit(":", 1)[0].strip("[]")
            assert ipaddress.ip_address(host).is_loopback, spec

    # The container tag of Docker's syslog driver yields the container fields, even for an
    # image name holding a registry path and a port.
    for _mode, spec in inputs.items():
        pattern = re.compile(spec["tag_pattern"])
        match = pattern.search("registry.local:5000/team/nginx:1.25/web-1/0123456789ab")
        assert match and match.groupdict() == {
            "image": "registry.local:5000/team/nginx:1.25",
            "container_name": "web-1",
            "container_id": "0123456789ab",
        }
        assert pattern.search("sshd") is None


@needs_agent
@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_agent_accepts_the_shipped_config(target: str, tmp_path: Path) -> None:
    """`python -m agent --check` on the agent.toml of the rendered ConfigMap, with the pod's
    environment (NODE_NAME, the env ConfigMap, placeholder secrets)."""
    objects = rendered(target)
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(target))
    env = {"NODE_NAME": "node-1", "ES_USERNAME": "elastic", "ES_PASSWORD": "secret"}
    env_maps = [o for o in objects if o["metadata"]["name"].startswith("audit-agent-env")]
    for env_map in env_maps:
        env.update(env_map["data"])
    result = subprocess.run(
        # --no-environment: the node's data_dir and ports are not this machine's business.
        agent_command("--config", str(path), "--check", "--no-environment"),
        capture_output=True,
        text=True,
        timeout=60,
        env=agent_env(**env),
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"--check rejected {target}:\n{result.stdout}\n{result.stderr}"


# ------------------------------------------------------------------------------- rsyslog

needs_rsyslog = pytest.mark.skipif(
    shutil.which("rsyslogd") is None, reason="rsyslogd not installed"
)


def rsyslog_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rsyslogd", "-N1", "-f", str(config)], capture_output=True, text=True, timeout=60
    )


def wrapper_config(tmp_path: Path, include: str, host_rules: bool = False) -> Path:
    """A stand-in for a distribution's rsyslog.conf: imuxsock loaded (system socket off), a work
    directory, then the drop-in directory or file; with ``host_rules`` a rule of the host's own
    (a file), so that the configuration stays valid without the snippet."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    wrapper = tmp_path / "rsyslog.conf"
    wrapper.write_text(
        f'global(workDirectory="{work}")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f"$IncludeConfig {include}\n"
        + (f"*.* {tmp_path / 'host-messages.log'}\n" if host_rules else "")
    )
    return wrapper


@pytest.mark.rsyslog
@needs_rsyslog
@pytest.mark.parametrize("snippet", SNIPPETS)
def test_rsyslog_accepts_the_snippet(snippet: str, tmp_path: Path) -> None:
    text = (NODE / snippet).read_text()
    text = text.replace("/var/run/rsyslog-docker.sock", str(tmp_path / "docker.sock"))
    text = text.replace("/var/run/audit-agent/syslog.sock", str(tmp_path / "agent.sock"))
    (tmp_path / snippet).write_text(text)
    result = rsyslog_check(wrapper_config(tmp_path, str(tmp_path / snippet)))
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


@pytest.mark.rsyslog
@needs_rsyslog
@pytest.mark.parametrize(
    ("snippet", "typo"),
    [
        ("rsyslog-audit-agent.conf", ("$ActionQueueType", "$ActionQueueTipe")),
        ("rsyslog-audit-agent-relp.conf", ("queue.type=", "queue.tipe=")),
    ],
)
def test_rsyslog_check_catches_a_broken_snippet(
    snippet: str, typo: tuple[str, str], tmp_path: Path
) -> None:
    text = (NODE / snippet).read_text()
    assert typo[0] in text
    (tmp_path / "broken.conf").write_text(text.replace(*typo))
    result = rsyslog_check(wrapper_config(tmp_path, str(tmp_path / "broken.conf")))
    assert result.returncode != 0


@pytest.mark.rsyslog
@needs_rsyslog
def test_snippets_agree_on_docker_input_and_format() -> None:
    unix, relp = ((NODE / name).read_text() for name in SNIPPETS)

    def docker_input(text: str) -> str:
        match = re.search(r'input\(type="imuxsock".*?\)', text, re.S)
        assert match
        return match.group(0)

    def template(text: str) -> str:
        match = re.search(r'"(<%PRI%>1 [^"]+)"', text)
        assert match
        return match.group(1)

    assert docker_input(unix) == docker_input(relp)
    assert template(unix) == template(relp)
    assert 'RateLimit.Interval="0"' in docker_input(unix)


class RsyslogProcess:
    """rsyslogd in the foreground on a config of the test's, in its own process group."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RsyslogProcess:
        check = rsyslog_check(self.config)
        assert check.returncode == 0, check.stderr
        with open(self.config.with_suffix(".out"), "wb") as out:
            self.process = subprocess.Popen(
                [
                    "rsyslogd",
                    "-n",
                    "-f",
                    str(self.config),
                    "-i",
                    str(self.config.with_suffix(".pid")),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass


def forwarding_node(tmp_path: Path, snippet: str, **paths: str) -> tuple[Path, Path, Path]:
    """A node's rsyslog with ``snippet`` (its paths and port replaced): returns its config, the
    Docker socket it opens and the file its host rule writes every message to."""
    root = Path(tempfile.mkdtemp(prefix="k8s-fwd-"))  # short: UNIX socket paths max 107 bytes
    docker = root / "docker.sock"
    text = (NODE / snippet).read_text().replace("/var/run/rsyslog-docker.sock", str(docker))
    for old, new in paths.items():
        assert old in text
        text = text.replace(old, new)
    (root / "10-audit-agent.conf").write_text(text)
    config = wrapper_config(root, str(root / "10-audit-agent.conf"), host_rules=True)
    return config, docker, root / "host-messages.log"


def send_docker(sock: Path, messages: list[str]) -> None:
    subprocess.run(
        ["logger", "-u", str(sock), "-d", "--rfc5424=notq", "-t", "nginx/web-1/0123456789ab"],
        input="".join(m + "\n" for m in messages).encode(),
        check=True,
        timeout=60,
    )


def found(path: Path, pattern: str) -> set[str]:
    return set(re.findall(pattern, path.read_text(errors="replace"))) if path.exists() else set()


def count_in(path: Path, prefix: str) -> int:
    return path.read_text(errors="replace").count(prefix) if path.exists() else 0


@pytest.mark.rsyslog
@pytest.mark.slow
@needs_rsyslog
def test_relp_snippet_keeps_what_the_node_logs_while_the_receiver_is_down(
    tmp_path: Path,
) -> None:
    """The RELP variant's queue and retries: messages logged while nothing listens on the agent's
    port arrive once something does. The receiver is rsyslog's own imrelp (the agent's RELP
    input is tested in the node rehearsal)."""
    port = free_port()
    config, docker, host_log = forwarding_node(
        tmp_path, "rsyslog-audit-agent-relp.conf", **{'port="2514"': f'port="{port}"'}
    )
    received = config.parent / "received.log"
    receiver = config.parent / "receiver.conf"
    receiver.write_text(
        f'global(workDirectory="{config.parent / "work"}")\nmodule(load="imrelp")\n'
        f'input(type="imrelp" address="127.0.0.1" port="{port}")\n*.* {received}\n'
    )
    messages = [f"while-down-{i}" for i in range(300)]
    try:
        with RsyslogProcess(config):
            wait_for(docker.exists, timeout=30)
            send_docker(docker, messages)
            wait_for(lambda: count_in(host_log, "while-down-") >= len(messages), timeout=60)
            assert count_in(received, "while-down-") == 0
            with RsyslogProcess(receiver):
                wait_for(
                    lambda: set(messages) <= found(received, r"while-down-\d+"),
                    timeout=120,
                    interval=0.5,
                )
    finally:
        shutil.rmtree(config.parent, ignore_errors=True)


# ------------------------------------------------------------------- the node installer


@pytest.fixture
def fake_host(tmp_path: Path) -> dict[str, Any]:
    """The installer's world with the host faked: a drop-in directory, the ConfigMap's files, and
    an `nsenter` on PATH that logs what it was asked to run on the host; `rsyslogd -N1` there
    checks the drop-in directory for real with this machine's rsyslogd."""
    host_dir = tmp_path / "rsyslog.d"
    host_dir.mkdir()
    snippets = tmp_path / "snippets"
    snippets.mkdir()
    for name in (*SNIPPETS, "install.sh"):
        shutil.copy(NODE / name, snippets / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "host-commands.log"
    wrapper = wrapper_config(tmp_path, f"{host_dir}/*.conf", host_rules=True)
    nsenter = bin_dir / "nsenter"
    nsenter.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "--" ]; do shift; done; shift\n'
        f'echo "$*" >> {log}\n'
        f'if [ "$1" = rsyslogd ]; then exec rsyslogd -N1 -f {wrapper}; fi\n'
        'if [ "$1" = systemctl ] && [ -n "${FAIL_SYSTEMCTL:-}" ]; then exit 1; fi\n'
    )
    nsenter.chmod(nsenter.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, SNIPPETS=str(snippets), HOST_DIR=str(host_dir))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return {"dir": host_dir, "snippets": snippets, "log": log, "env": env}


def run_installer(host: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["sh", str(host["snippets"] / "install.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**host["env"], **env},
    )
    return result


def host_commands(host: dict[str, Any]) -> list[str]:
    log: Path = host["log"]
    commands = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return commands


@pytest.mark.rsyslog
@needs_rsyslog
def test_installer_installs_switches_and_uninstalls(fake_host: dict[str, Any]) -> None:
    target = fake_host["dir"] / "10-audit-agent.conf"

    # Without SNIPPET (the script's own default): RELP, as in the DaemonSet.
    result = run_installer(fake_host)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == (NODE / "rsyslog-audit-agent-relp.conf").read_text()
    assert host_commands(fake_host) == ["rsyslogd -N1", "systemctl restart rsyslog"]

    # Unchanged: rsyslog is left alone.
    result = run_installer(fake_host, SNIPPET="rsyslog-audit-agent-relp.conf")
    assert result.returncode == 0, result.stderr
    assert host_commands(fake_host) == []

    # The opt-out (components/unix-socket sets SNIPPET so).
    result = run_installer(fake_host, SNIPPET="rsyslog-audit-agent.conf")
    assert result.returncode == 0, result.stderr
    assert target.read_text() == (NODE / "rsyslog-audit-agent.conf").read_text()
    assert host_commands(fake_host) == ["rsyslogd -N1", "systemctl restart rsyslog"]

    result = run_installer(fake_host, ACTION="uninstall")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in fake_host["dir"].iterdir()) == []
    assert host_commands(fake_host) == ["rsyslogd -N1", "systemctl restart rsyslog"]


@pytest.mark.rsyslog
@needs_rsyslog
def test_installer_restores_the_previous_snippet_when_rsyslog_rejects(
    fake_host: dict[str, Any],
) -> None:
    assert run_installer(fake_host).returncode == 0
    host_commands(fake_host)
    broken = fake_host["snippets"] / "rsyslog-audit-agent-relp.conf"
    text = broken.read_text()
    assert "queue.type=" in text
    broken.write_text(text.replace("queue.type=", "queue.tipe="))

    result = run_installer(fake_host)
    assert result.returncode == 1
    assert "rejects" in result.stderr
    assert host_commands(fake_host) == ["rsyslogd -N1"]  # never restarted
    target = fake_host["dir"] / "10-audit-agent.conf"
    assert target.read_text() == (NODE / "rsyslog-audit-agent-relp.conf").read_text()
    assert [p.name for p in fake_host["dir"].iterdir()] == ["10-audit-agent.conf"]


@pytest.mark.rsyslog
@needs_rsyslog
def test_installer_retries_when_restarting_rsyslog_failed(fake_host: dict[str, Any]) -> None:
    result = run_installer(fake_host, FAIL_SYSTEMCTL="1")
    assert result.returncode == 1
    assert "restarting rsyslog failed" in result.stderr
    assert list(fake_host["dir"].iterdir()) == []
    restart = "systemctl restart rsyslog"
    assert host_commands(fake_host) == ["rsyslogd -N1", restart, restart]

    # kubelet runs the init container again: the change is still to be made.
    result = run_installer(fake_host)
    assert result.returncode == 0, result.stderr
    assert (fake_host["dir"] / "10-audit-agent.conf").exists()
    assert host_commands(fake_host) == ["rsyslogd -N1", restart]


@pytest.mark.rsyslog
@needs_rsyslog
def test_installer_refuses_an_unknown_snippet(fake_host: dict[str, Any]) -> None:
    result = run_installer(fake_host, SNIPPET="nope.conf")
    assert result.returncode == 1
    assert "rsyslog-audit-agent.conf" in result.stderr
    assert list(fake_host["dir"].iterdir()) == []
    assert host_commands(fake_host) == []


# ---------------------------------------------------------------------------- Dockerfile


def dockerfile() -> str:
    return (MANIFESTS / "Dockerfile").read_text()


def test_dockerfile_copies_only_what_exists() -> None:
    sources = _build_stage_sources()
    assert sources
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"COPY sources missing from the repository root: {missing}"
    # pyproject's packages and readme are in the build context.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in sources
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in sources, f"pyproject.toml's package {pattern} is not copied"
    assert ".[all]" in dockerfile()
    assert "all" in pyproject["project"]["optional-dependencies"]


def test_dockerfile_entrypoint_reads_the_mounted_config() -> None:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile(), re.M)
    assert match
    entrypoint = yaml.safe_load(match.group(1))
    assert entrypoint == ["python", "-m", "agent", "--config", "/etc/audit-agent/agent.toml"]
    base = yaml.safe_load((MANIFESTS / "base" / "daemonset.yaml").read_text())
    agent = container(base["spec"]["template"]["spec"], "agent")
    assert "command" not in agent and "args" not in agent
    config_mount = next(m for m in agent["volumeMounts"] if m["name"] == "config")
    assert f"{config_mount['mountPath']}/agent.toml" == entrypoint[-1]
    assert re.search(r"^FROM python:3\.11-slim", dockerfile(), re.M)


def _build_stage_sources() -> list[str]:
    """What the Dockerfile's build stage copies into its context (before the second FROM)."""
    build_stage = dockerfile().split("\nFROM ", 2)[1]
    sources: list[str] = []
    for line in build_stage.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


@needs_agent
def test_the_image_wheel_runs_the_agent(tmp_path: Path) -> None:
    """The wheel the image installs, built as its build stage builds it (``pip wheel`` over only
    the files it copies), runs the agent: no package the code imports is left behind. The
    image had shipped without ``common`` (every start died with ModuleNotFoundError)."""
    context = tmp_path / "context"
    context.mkdir()
    for source in _build_stage_sources():
        if (REPO / source).is_dir():
            shutil.copytree(
                REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / source, context / source)
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("container_audit_agent-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # -S: no site module, so neither this checkout's editable install nor the tests' PYTHONPATH
    # can supply a package the wheel lacks; the dependencies come from this venv's site-packages.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])

    def from_wheel(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-S", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, (args, done.stderr[-3000:])
        return done.stdout

    found = from_wheel("-c", "import agent, common; print(agent.__file__, common.__file__)")
    assert all(Path(path).is_relative_to(site) for path in found.split())
    from_wheel("-m", "agent", "--check")
    reference = from_wheel("-m", "agent", "--print-reference")
    # every component registered and documented, as from the checkout
    from_checkout = subprocess.run(
        agent_command("--print-reference"),
        capture_output=True,
        text=True,
        timeout=120,
        env=agent_env(),
    )
    assert reference == from_checkout.stdout
    assert '`[[outputs]]` `type = "s3"`' in reference


@needs_agent
def test_dockerfile_entrypoint_module_exists() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('agent.__main__'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=agent_env(),
    )
    assert result.returncode == 0 and "agent/__main__.py" in result.stdout, result.stderr


# ------------------------------------------------------------------ container logs (tail)

LOG_COMPONENTS = ("docker-containers", "read-logs-as-root")


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_tail_input_reads_container_logs_from_a_read_only_var_log(target: str) -> None:
    """The containerd / CRI-O path is the default: every shipped config tails
    /var/log/containers, the DaemonSet mounts the node's /var/log read-only, and the agent
    joins the root group (the logs are root:root 0640) without becoming root."""
    pod = agent_daemonset(target)["spec"]["template"]["spec"]
    agent = container(pod, "agent")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/var/log"]["readOnly"] is True
    assert volumes[mounts["/var/log"]["name"]]["hostPath"] == {
        "path": "/var/log",
        "type": "Directory",
    }
    assert pod["securityContext"]["supplementalGroups"] == [0]
    assert agent["securityContext"]["runAsNonRoot"] is True
    [tail] = [i for i in agent_config(target)["inputs"] if i["type"] == "tail"]
    assert tail["paths"] == ["/var/log/containers/*.log"]
    assert "${namespace_name}" in tail["tag"]
    for pattern in tail["paths"]:
        assert any(pattern.startswith(path + "/") for path in mounts), pattern


@needs_kubectl
@pytest.mark.parametrize("component", LOG_COMPONENTS)
def test_log_components_render_validate_and_change_only_their_part(component: str) -> None:
    objects = rendered(f"base+{component}")
    for obj in objects:
        validate_strict(obj, f"kustomize base+{component}")
    pod = only(objects, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]
    agent = container(pod, "agent")
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    if component == "docker-containers":
        assert mounts["/var/lib/docker/containers"]["readOnly"] is True
        assert mounts["/var/log"]["readOnly"] is True
        assert agent["securityContext"]["runAsNonRoot"] is True
    else:
        assert agent["securityContext"]["runAsUser"] == 0
        assert agent["securityContext"]["runAsNonRoot"] is False
        assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert agent["securityContext"]["allowPrivilegeEscalation"] is False
        assert agent["securityContext"]["readOnlyRootFilesystem"] is True


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_agent_joins_audit_events_and_sees_host_processes(target: str) -> None:
    """The auditd filter runs before the audit rules on the syslog stream (audisp-syslog's
    lines arrive there), and the pod shares the host's PID namespace so that the filter can
    read the cgroup of the process an audit record names; the agent stays unprivileged."""
    pod = agent_daemonset(target)["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert container(pod, "agent")["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    filters = tomllib.loads(agent_toml(target))["filters"]
    kinds = [f["type"] for f in filters]
    assert kinds.index("auditd") < kinds.index("audit")
    assert filters[kinds.index("auditd")]["match"] == "syslog"


# ------------------------------------------------------------- the kubernetes filter's RBAC


@needs_kubectl
@pytest.mark.parametrize("target", AGENT_TARGETS)
def test_agent_reads_only_pods_and_namespaces_with_its_mounted_token(target: str) -> None:
    objects = rendered(target)
    role = only(objects, "ClusterRole", "audit-agent")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    binding = only(objects, "ClusterRoleBinding", "audit-agent")
    account = only(objects, "ServiceAccount", "audit-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert account.get("automountServiceAccountToken") is True
    pod = agent_daemonset(target)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod.get("automountServiceAccountToken", True) is True
    env = {e["name"]: e for e in container(pod, "agent")["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    filters = [f["type"] for f in agent_config(target)["filters"]]
    assert filters.index("kubernetes") < filters.index("audit")  # alerts name the pod
    kube = next(f for f in agent_config(target)["filters"] if f["type"] == "kubernetes")
    assert kube["node_name"] == "${NODE_NAME}"
