"""The Helm chart (manifests/charts/container-audit-agent): `helm lint` and `helm template` with
each values combination, every rendered object validated strictly against a current Kubernetes
schema, the rendered agent.toml accepted by `python -m agent --check`, and the chart rendering the
same agent config and DaemonSets as the kustomize overlays it mirrors.

helm is built from the Go module proxy by scripts/build-helm.sh (cached, never committed)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import agent_command, agent_env
from tests.test_manifests import (
    MANIFESTS,
    NODE,
    SNIPPETS,
    agent_toml,
    container,
    kn,
    needs_kubectl,
    only,
    rendered,
    validate_strict,
)

CHART = MANIFESTS / "charts" / "container-audit-agent"
RELEASE = "audit-agent"
NAMESPACE = "audit-agent"


def helm_binary() -> str | None:
    """helm on PATH, else the one scripts/build-helm.sh cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = cache / "container-audit-agent" / "bin" / "helm"
    return shutil.which("helm") or (str(cached) if os.access(cached, os.X_OK) else None)


HELM = helm_binary()
pytestmark = pytest.mark.skipif(
    HELM is None, reason="helm is not installed: run scripts/build-helm.sh (needs Go)"
)

# Each values combination a user is likely to install, as overrides of values.yaml.
COMBOS: dict[str, dict[str, Any]] = {
    "s3": {},
    "elasticsearch": {"output": {"type": "elasticsearch"}},
    "unix-socket": {"transport": "unix-socket"},
    "tail-off": {"tail": {"enabled": False}},
    "auditd-off": {"auditd": {"enabled": False}},
    "kubernetes-off": {"kubernetes": {"enabled": False}},
    "s3-static-keys": {"output": {"s3": {"roleArn": "", "existingSecret": "audit-agent-aws"}}},
    "stdout-docker": {
        "image": {"repository": "container-audit-agent"},
        "output": {"type": "stdout"},
        "tail": {"dockerContainers": True},
    },
    "stdout-root": {
        "image": {"repository": "container-audit-agent"},
        "output": {"type": "stdout"},
        "tail": {"readLogsAsRoot": True},
    },
    "everything": {
        "namespace": {"create": True},
        "nodeSetup": {"enabled": True},
        "output": {"type": "elasticsearch"},
        "extraConfig": '[[outputs]]\ntype = "file"\nmatch = "kube.*"\npath = "/tmp/kube.log"\n',
        "monitoring": {
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
    },
    "node-setup": {"nodeSetup": {"enabled": True}},
    "node-setup-unix-socket": {"nodeSetup": {"enabled": True}, "transport": "unix-socket"},
}

# The kustomization each combination must match (tests/test_manifests.py renders it).
KUSTOMIZE_TWIN = {
    "s3": "overlays/s3",
    "elasticsearch": "overlays/elasticsearch",
    "unix-socket": "overlays/s3+unix-socket",
    "stdout-docker": "base+docker-containers",
    "stdout-root": "base+read-logs-as-root",
}
NODE_TWIN = {"node-setup": "node", "node-setup-unix-socket": "node+unix-socket"}

# Kinds that need the Prometheus Operator's CRDs: not in kubernetes-validate's schemas.
CRD_KINDS = {"PodMonitor", "PrometheusRule"}


def helm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    env = dict(os.environ)
    env.setdefault("HELM_CACHE_HOME", "/tmp/helm-test-cache")
    env.setdefault("HELM_CONFIG_HOME", "/tmp/helm-test-config")
    env.setdefault("HELM_DATA_HOME", "/tmp/helm-test-data")
    return subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def values_file(combo: str, directory: Path) -> Path:
    path = directory / f"values-{combo}.yaml"
    path.write_text(yaml.safe_dump(COMBOS[combo]))
    return path


_TEMPLATES: dict[str, list[dict[str, Any]]] = {}


def template(combo: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if combo not in _TEMPLATES:
        values = values_file(combo, tmp_path_factory.mktemp("values"))
        result = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values))
        assert result.returncode == 0, f"helm template ({combo}) failed:\n{result.stderr}"
        _TEMPLATES[combo] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return copy.deepcopy(_TEMPLATES[combo])


def chart_toml(objects: list[dict[str, Any]]) -> str:
    text: str = only(objects, "ConfigMap", "audit-agent-config")["data"]["agent.toml"]
    return text


# ------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("combo", COMBOS)
def test_helm_lint(combo: str, tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values_file(combo, tmp_path)))
    assert result.returncode == 0, f"helm lint ({combo}):\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("combo", COMBOS)
def test_rendered_objects_validate_strictly(
    combo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = template(combo, tmp_path_factory)
    kinds = {o["kind"] for o in objects}
    assert {"ServiceAccount", "ConfigMap", "DaemonSet"} <= kinds
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", kn(obj)
            continue
        validate_strict(obj, f"helm template ({combo})")
        assert (
            obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE or obj["kind"] == "Namespace"
        )


@pytest.mark.parametrize("combo", COMBOS)
def test_rendered_agent_toml_passes_check(
    combo: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = template(combo, tmp_path_factory)
    path = tmp_path / "agent.toml"
    path.write_text(chart_toml(objects))
    env = {"NODE_NAME": "node-1", "ES_USERNAME": "elastic", "ES_PASSWORD": "secret"}
    for env_map in (o for o in objects if o["metadata"]["name"] == "audit-agent-env"):
        env.update(env_map["data"])
    result = subprocess.run(
        agent_command("--config", str(path), "--check", "--no-environment"),
        capture_output=True,
        text=True,
        timeout=60,
        env=agent_env(**env),
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"--check rejected ({combo}):\n{result.stdout}\n{result.stderr}"


def test_invalid_values_are_refused(tmp_path: Path) -> None:
    for bad, message in (
        ({"transport": "udp"}, "transport must be relp or unix-socket"),
        ({"output": {"type": "kafka"}}, "output.type must be"),
        ({"nodeSetup": {"enabled": True, "action": "remove"}}, "nodeSetup.action must be"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        result = helm("template", RELEASE, str(CHART), "-f", str(path))
        assert result.returncode != 0 and message in result.stderr, (bad, result.stderr)


# -------------------------------------------------------------- the same as kustomize renders

_HASHED = re.compile(r"^(audit-agent-(?:config|env|rsyslog))-[a-z0-9]{10}$")


def _strip_hashes(value: Any) -> Any:
    """kustomize's generated ConfigMap names carry a content hash; the chart's do not."""
    if isinstance(value, dict):
        return {k: _strip_hashes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_hashes(v) for v in value]
    if isinstance(value, str):
        return _HASHED.sub(r"\1", value)
    return value


def pod_spec(daemonset: dict[str, Any]) -> dict[str, Any]:
    """The fields that matter of a DaemonSet's pod: containers (image, command, args, env,
    mounts, ports, probes, security context, resources), volumes, host network, pod security
    context, service account, tolerations, priority class, grace period."""
    spec: dict[str, Any] = _strip_hashes(daemonset["spec"]["template"]["spec"])
    for key in ("initContainers", "containers"):
        for c in spec.get(key, []):
            c.pop("imagePullPolicy", None)  # the chart states it; kustomize leaves the default
            # A strategic merge patch puts its env entries first; no entry refers to another.
            c["env"] = sorted(c.get("env", []), key=lambda e: e["name"])
            c["volumeMounts"] = sorted(c.get("volumeMounts", []), key=lambda m: m["mountPath"])
    spec["volumes"] = sorted(spec.get("volumes", []), key=lambda v: v["name"])  # order-free
    return spec


@needs_kubectl
@pytest.mark.parametrize("combo", KUSTOMIZE_TWIN)
def test_chart_daemonset_equals_the_kustomize_overlay(
    combo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    twin = KUSTOMIZE_TWIN[combo]
    chart = only(template(combo, tmp_path_factory), "DaemonSet", "audit-agent")
    kustomized = only(rendered(twin), "DaemonSet", "audit-agent")
    assert pod_spec(chart) == pod_spec(kustomized), f"chart ({combo}) differs from {twin}"
    assert chart["spec"]["updateStrategy"] == kustomized["spec"]["updateStrategy"]
    annotations = chart["spec"]["template"]["metadata"]["annotations"]
    for key, value in kustomized["spec"]["template"]["metadata"]["annotations"].items():
        assert annotations[key] == value


@needs_kubectl
@pytest.mark.parametrize("combo", KUSTOMIZE_TWIN)
def test_chart_config_and_env_equal_the_kustomize_overlay(
    combo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Parsed, the chart's agent.toml is the overlay's (comments aside), and so is the env
    ConfigMap the DaemonSet reads."""
    objects = template(combo, tmp_path_factory)
    twin = KUSTOMIZE_TWIN[combo]
    assert tomllib.loads(chart_toml(objects)) == tomllib.loads(agent_toml(twin))
    kustomized_env = [
        o for o in rendered(twin) if o["metadata"]["name"].startswith("audit-agent-env")
    ]
    chart_env = [o for o in objects if o["metadata"]["name"] == "audit-agent-env"]
    assert [o["data"] for o in chart_env] == [o["data"] for o in kustomized_env]
    chart_sa = only(objects, "ServiceAccount")["metadata"].get("annotations") or {}
    kustomized_sa = only(rendered(twin), "ServiceAccount")["metadata"].get("annotations") or {}
    assert chart_sa == kustomized_sa


@needs_kubectl
@pytest.mark.parametrize("combo", KUSTOMIZE_TWIN)
def test_chart_rbac_and_token_equal_the_kustomize_overlay(
    combo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The kubernetes filter's read-only ClusterRole, its binding to the agent's ServiceAccount
    and the mounted token: as manifests/base/rbac.yaml and serviceaccount.yaml."""
    objects = template(combo, tmp_path_factory)
    twin = rendered(KUSTOMIZE_TWIN[combo])
    role, kustomized_role = (only(o, "ClusterRole", "audit-agent") for o in (objects, twin))
    assert role["rules"] == kustomized_role["rules"]
    binding, kustomized_binding = (
        only(o, "ClusterRoleBinding", "audit-agent") for o in (objects, twin)
    )
    for key in ("roleRef", "subjects"):
        assert binding[key] == kustomized_binding[key], key
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    chart_sa, kustomized_sa = (only(o, "ServiceAccount") for o in (objects, twin))
    assert chart_sa["automountServiceAccountToken"] is True
    assert chart_sa["automountServiceAccountToken"] == kustomized_sa["automountServiceAccountToken"]


@needs_kubectl
@pytest.mark.parametrize("combo", NODE_TWIN)
def test_chart_node_installer_equals_manifests_node(
    combo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = template(combo, tmp_path_factory)
    twin = rendered(NODE_TWIN[combo])
    chart_ds = only(objects, "DaemonSet", "audit-agent-node-setup")
    assert pod_spec(chart_ds) == pod_spec(only(twin, "DaemonSet", "audit-agent-node-setup"))
    chart_map = only(objects, "ConfigMap", "audit-agent-rsyslog")["data"]
    assert chart_map == only(twin, "ConfigMap", "audit-agent-rsyslog")["data"]


@pytest.mark.parametrize("name", [*SNIPPETS, "install.sh"])
def test_chart_node_files_are_the_manifests_files(name: str) -> None:
    """The chart cannot read outside its directory, so it carries copies: kept identical."""
    assert (CHART / "files" / name).read_bytes() == (NODE / name).read_bytes(), (
        f"cp manifests/node/{name} manifests/charts/container-audit-agent/files/"
    )


# ------------------------------------------------------------------------------ the values


def test_tail_off_drops_the_input_and_the_var_log_mount(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    objects = template("tail-off", tmp_path_factory)
    config = tomllib.loads(chart_toml(objects))
    assert [i["type"] for i in config["inputs"]] == ["syslog", "syslog"]
    pod = only(objects, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]
    assert all(v["name"] != "varlog" for v in pod["volumes"])
    assert all(m["mountPath"] != "/var/log" for m in container(pod, "agent")["volumeMounts"])
    on = template("s3", tmp_path_factory)
    assert [i["type"] for i in tomllib.loads(chart_toml(on))["inputs"]][-1] == "tail"


def test_auditd_off_drops_the_filter_and_the_host_pid_namespace(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    on, off = (template(combo, tmp_path_factory) for combo in ("s3", "auditd-off"))
    filters = [f["type"] for f in tomllib.loads(chart_toml(on))["filters"]]
    assert filters == ["auditd", "kubernetes", "audit"]
    assert [f["type"] for f in tomllib.loads(chart_toml(off))["filters"]] == ["kubernetes", "audit"]
    assert only(on, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]["hostPID"] is True
    assert "hostPID" not in only(off, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]


def test_kubernetes_off_drops_the_filter_the_rbac_and_the_token(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    objects = template("kubernetes-off", tmp_path_factory)
    config = tomllib.loads(chart_toml(objects))
    assert [f["type"] for f in config["filters"]] == ["auditd", "audit"]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert only(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = only(objects, "DaemonSet", "audit-agent")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    on = tomllib.loads(chart_toml(template("s3", tmp_path_factory)))
    kube = next(f for f in on["filters"] if f["type"] == "kubernetes")
    assert kube["node_name"] == "${NODE_NAME}" and kube["match"] == "*"


def test_credentials_come_from_existing_secrets_or_irsa(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    def env_of(combo: str) -> dict[str, Any]:
        pod = only(template(combo, tmp_path_factory), "DaemonSet", "audit-agent")
        return {e["name"]: e for e in container(pod["spec"]["template"]["spec"], "agent")["env"]}

    es = env_of("elasticsearch")
    assert es["ES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "audit-agent-es-credentials",
        "key": "password",
    }
    keys = env_of("s3-static-keys")
    assert keys["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "audit-agent-aws"
    sa = only(template("s3-static-keys", tmp_path_factory), "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {})
    assert "AWS_SECRET_ACCESS_KEY" not in env_of("s3")


def test_extra_config_is_appended_and_checked(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = tomllib.loads(chart_toml(template("everything", tmp_path_factory)))
    assert [o["type"] for o in config["outputs"]] == ["elasticsearch", "file"]
    assert config["outputs"][1]["match"] == "kube.*"


def test_config_change_rolls_the_daemonset(tmp_path_factory: pytest.TempPathFactory) -> None:
    def checksum(combo: str) -> str:
        ds = only(template(combo, tmp_path_factory), "DaemonSet", "audit-agent")
        value: str = ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum("s3") != checksum("elasticsearch")
    assert checksum("s3") == checksum("unix-socket")  # same agent.toml, same env


def test_notes_render(tmp_path: Path) -> None:
    result = helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    assert "rollout status ds/audit-agent" in result.stdout
    assert "pod-security.kubernetes.io/enforce=privileged" in result.stdout


# ------------------------------------------------------------------------------ monitoring

MONITORING = MANIFESTS / "components" / "monitoring"


@pytest.mark.parametrize("name", ["prometheusrule.yaml", "grafana-dashboard.json"])
def test_chart_monitoring_files_are_the_components_files(name: str) -> None:
    chart_copy = (CHART / "files" / name).read_bytes()
    assert chart_copy == (MONITORING / name).read_bytes(), (
        f"cp manifests/components/monitoring/{name} manifests/charts/container-audit-agent/files/"
    )


def test_chart_ships_the_dashboard_for_grafanas_sidecar(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    board = only(template("everything", tmp_path_factory), "ConfigMap", "audit-agent-grafana")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(board["data"]["container-audit-agent.json"])
    assert shipped == json.loads((MONITORING / "grafana-dashboard.json").read_text())


def test_chart_monitoring_equals_the_component(tmp_path_factory: pytest.TempPathFactory) -> None:
    objects = template("everything", tmp_path_factory)
    rule = only(objects, "PrometheusRule")
    component_rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["spec"] == component_rule["spec"]
    monitor = only(objects, "PodMonitor")
    component_monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    selector = monitor["spec"].pop("selector")
    component_monitor["spec"].pop("selector")
    assert monitor["spec"] == component_monitor["spec"]
    agent = next(o for o in objects if kn(o) == "DaemonSet/audit-agent")
    pod_labels = agent["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[monitor["spec"]["jobLabel"]] == "container-audit-agent"
    assert all(o["kind"] not in CRD_KINDS for o in template("s3", tmp_path_factory))


def test_chart_runbook_url_follows_the_value(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    base = "https://wiki.example.org/audit-agent/runbook"
    path.write_text(
        yaml.safe_dump(
            {"monitoring": {"prometheusRule": {"enabled": True, "runbookBaseUrl": base}}}
        )
    )
    result = helm("template", RELEASE, str(CHART), "-f", str(path))
    assert result.returncode == 0, result.stderr
    rule = only([d for d in yaml.safe_load_all(result.stdout) if d], "PrometheusRule")
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith(base + "#auditagent") for u in urls)
