"""Records may share one ``kubernetes`` object (the tail input's per file, the kubernetes
filter's cached per container) only while no filter changes it in place; a filter that does
(``modify`` on ``kubernetes.labels.x``) gets each record its own copy, so one record's edit
never shows in another record nor in the cache."""

from __future__ import annotations

from typing import Any

from tests.filter_helpers import Clock, chain
from tests.test_filter_kubernetes import CID, pod

KUBE = {"type": "kubernetes", "kube_url": "https://127.0.0.1:1", "node_name": "node-a"}
EDIT_ONE = {
    "type": "modify",
    "condition": [["key_value_matches", "message", "^one"]],
    "rules": [["set", "kubernetes.labels.x", "1"], ["set", "kubernetes.pod_name", "edited"]],
}


def records() -> list[dict[str, Any]]:
    """Two tail records sharing their file's object (as the tail input hands them over when
    nothing edits ``kubernetes``) and two syslog records keyed by container ID."""
    shared = {"namespace_name": "shop", "pod_name": "web-7d4b9c8f5d-x2x9q", "container_id": CID}
    return [
        {"message": "one tail", "kubernetes": shared},
        {"message": "two tail", "kubernetes": shared},
        {"message": "one syslog", "container_id": CID},
        {"message": "two syslog", "container_id": CID},
    ]


def test_an_edit_of_one_records_kubernetes_does_not_reach_the_others() -> None:
    filters, _ = chain(KUBE, EDIT_ONE)
    kube = filters.filters[0]
    kube.clock = Clock()
    kube.cache.put_pod(pod())
    assert not filters.shares("kubernetes")
    out = [r for _, recs in filters.process("t", records()) for r in recs]
    edited = {r["message"]: r["kubernetes"] for r in out}
    for message in ("one tail", "one syslog"):
        assert edited[message]["labels"] == {"app": "web", "x": "1"}
        assert edited[message]["pod_name"] == "edited"
    for message in ("two tail", "two syslog"):
        assert edited[message]["labels"] == {"app": "web"}
        assert edited[message]["pod_name"] == "web-7d4b9c8f5d-x2x9q"
        assert edited[message]["container_image"] == "nginx:1.27"
    cached = kube.cache.by_id[CID]
    assert cached["labels"] == {"app": "web"} and cached["pod_name"] == "web-7d4b9c8f5d-x2x9q"


def test_records_share_the_cached_object_when_no_later_filter_edits_it() -> None:
    filters, _ = chain(KUBE, {"type": "audit"})
    kube = filters.filters[0]
    kube.clock = Clock()
    kube.cache.put_pod(pod())
    assert filters.shares("kubernetes")
    given = records()
    tails = given[0]["kubernetes"]
    out = [r for _, recs in filters.process("t", given) for r in recs]
    cached = kube.cache.by_id[CID]
    assert len(out) == 4 and all(r["kubernetes"] is cached for r in out)
    # The tail input's object was replaced, never changed in place.
    assert given[0]["kubernetes"] is cached
    assert tails == records()[0]["kubernetes"]


def test_which_chains_let_records_share_kubernetes() -> None:
    assert chain(KUBE)[0].shares("kubernetes")
    assert chain({"type": "grep", "regex": [["message", "x"]]}, KUBE)[0].shares("kubernetes")
    assert not chain(EDIT_ONE)[0].shares("kubernetes")
    assert not chain({"type": "modify", "rules": [["remove_wildcard", "k*"]]})[0].shares(
        "kubernetes"
    )
    # A copy of the object elsewhere is a copy: editing it later cannot reach the original.
    copy_then_edit = chain(
        {"type": "modify", "rules": [["copy", "kubernetes", "k2"]]},
        {"type": "modify", "rules": [["set", "k2.pod_name", "x"]]},
    )[0]
    assert copy_then_edit.shares("kubernetes")
    shared = {"pod_name": "p"}
    out = [r for _, recs in copy_then_edit.process("t", [{"kubernetes": shared}]) for r in recs]
    assert out[0]["k2"] == {"pod_name": "x"} and shared == {"pod_name": "p"}
