"""``kubernetes``: add the pod's metadata (namespace, name, labels, annotations, owner, image)
to records of its containers, from a list+watch of this node's pods on the API server.

``config``: the filter's keys. ``client``: where the API server is and how to authenticate (in
cluster or from a kubeconfig) and the list+watch loops. ``cache``: pods and namespaces as the
watch reports them, indexed by container ID and by namespace/pod, with the enrichment of each
container built once. ``filter``: the filter itself (keys of a record, the bounded side queue of
records whose pod is not known yet).
"""

from agent.filters.kubernetes.config import KubernetesConfig
from agent.filters.kubernetes.filter import KubernetesFilter

__all__ = ["KubernetesConfig", "KubernetesFilter"]
