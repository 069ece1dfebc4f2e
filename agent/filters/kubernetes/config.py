"""The ``kubernetes`` filter's configuration."""

from __future__ import annotations

import msgspec

from agent.filters.base import FilterConfig
from common.units import Duration, Size

IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class KubernetesConfig(FilterConfig, tag_field="type", tag="kubernetes"):
    node_name: str = ""
    """Watch only the pods of this node (spec.nodeName); set it from the downward API
    (NODE_NAME). Empty: $NODE_NAME, else the host name."""
    kube_url: str = ""
    """The API server; empty: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT."""
    kube_ca_file: str = IN_CLUSTER_CA
    """CA bundle that signed the API server's certificate; empty: the system's CAs."""
    kube_token_file: str = IN_CLUSTER_TOKEN
    """Bearer token file (the service account token); re-read when it changes on disk."""
    kubeconfig: str = ""
    """A kubeconfig file (outside a cluster): its current context's server, CA, token or client
    certificate replace kube_url, kube_ca_file and kube_token_file."""
    tls_verify: bool = True
    """Verify the API server's certificate (turn off only for tests)."""
    labels: bool = True
    """Add the pod's labels (kubernetes.labels)."""
    annotations: bool = True
    """Add the pod's annotations (kubernetes.annotations)."""
    annotation_keys: list[str] = msgspec.field(default_factory=list)
    """Only these annotation keys (globs such as "example.com/*"); empty: every key."""
    annotations_max_bytes: Size = Size(4096)
    """Per pod, annotations are added (by key order) while their keys and values fit in this
    many bytes; the rest are left out and counted."""
    namespace_labels: bool = True
    """Watch namespaces too and add their labels (kubernetes.namespace_labels)."""
    owner: bool = True
    """Add the pod's controller (kubernetes.owner = {kind, name}: Deployment, DaemonSet,
    StatefulSet, Job, CronJob, ...)."""
    runtime_idents: list[str] = msgspec.field(
        default_factory=lambda: ["containerd", "crio", "cri-o", "dockerd"]
    )
    """The container runtime's own log lines (by ``ident``) about an exec into a container get
    the metadata of the container they name (``runtime_pattern``), so an exec alert names its
    pod. Empty: off."""
    runtime_pattern: str = (
        r'Exec(?:Sync)? for \\?"(?P<container_id>[0-9a-f]{12,64})'
        r"|ExecRequest\{ContainerId:(?P<cri_id>[0-9a-f]{12,64})"
        r"|exec command [0-9a-f]{12,64} in container (?P<docker_id>[0-9a-f]{12,64})"
    )
    """Regex over ``message`` of those lines; its first group that matched is the container ID."""
    wait_for_metadata: Duration = Duration(2.0)
    """How long a record of a container whose pod is not known yet may wait for the watch
    before it passes on without metadata (counted in filter_kubernetes_missing_records_total)."""
    max_waiting_records: int = 10000
    """Bound of the records waiting for metadata; past it the oldest passes on at once."""
    deleted_pod_ttl: Duration = Duration(300.0)
    """How long a deleted pod's metadata is kept for late lines and audit events."""
    watch_timeout: Duration = Duration(300.0)
    """A watch request ends after this long and is resumed (the token is re-read then too)."""
    retry_max: Duration = Duration(30.0)
    """Longest back-off between attempts while the API server fails."""
    request_timeout: Duration = Duration(30.0)
    """Connect and list timeout of API requests."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_waiting_records < 0:
            raise ValueError("max_waiting_records must be 0 or more")
        if self.wait_for_metadata < 0:
            raise ValueError("wait_for_metadata must be 0 or more")
        if self.watch_timeout < 1:
            raise ValueError("watch_timeout must be at least 1s")
