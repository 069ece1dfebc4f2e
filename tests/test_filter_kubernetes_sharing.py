"""Records share one ``kubernetes`` object (the tail input's per file, the kubernetes filter's
cached per container). Filters never change a nested value in place: a filter that edits one
(``modify`` on ``kubernetes.labels.x``) puts a changed copy in that record, so one record's edit
never shows in another record nor in the cache."""

from __future__ import annotations

from typing import Any

import pytest

from agent.filters.kubernetes import KubernetesFilter
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
    assert isinstance(kube, KubernetesFilter)
    kube.clock = Clock()
    kube.cache.put_pod(pod())
    given = records()
    tails = given[0]["kubernetes"]
    out = [r for _, recs in filters.process("t", given) for r in recs]
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
    # The records the edit passed by still share the cache's object; the tail's is untouched.
    assert edited["two tail"] is cached and edited["two syslog"] is cached
    assert tails == records()[0]["kubernetes"]


def test_records_share_the_cached_object_when_no_later_filter_edits_it() -> None:
    filters, _ = chain(KUBE, {"type": "audit"})
    kube = filters.filters[0]
    assert isinstance(kube, KubernetesFilter)
    kube.clock = Clock()
    kube.cache.put_pod(pod())
    given = records()
    tails = given[0]["kubernetes"]
    out = [r for _, recs in filters.process("t", given) for r in recs]
    cached = kube.cache.by_id[CID]
    assert len(out) == 4 and all(r["kubernetes"] is cached for r in out)
    # The tail input's object was replaced, never changed in place.
    assert given[0]["kubernetes"] is cached
    assert tails == records()[0]["kubernetes"]


def edit_in_place(record: dict[str, Any]) -> dict[str, Any]:
    """A python filter's function that changes a nested value in place."""
    record["kubernetes"]["labels"]["x"] = "1"
    return record


def edit_batch_in_place(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [edit_in_place(record) for record in records]


@pytest.mark.parametrize(
    "edit",
    [
        EDIT_ONE,
        {"type": "modify", "rules": [["remove", "kubernetes.labels.app"]]},
        {"type": "modify", "rules": [["remove_wildcard", "k*"]]},
        {"type": "modify", "rules": [["rename", "kubernetes.labels", "labels"]]},
        {"type": "nest", "operation": "lift", "nested_under": "kubernetes"},
        {"type": "nest", "operation": "nest", "wildcard": ["message"], "nest_under": "kubernetes"},
        {"type": "python", "function": f"{__name__}:edit_in_place", "per_record": True},
        {"type": "python", "function": f"{__name__}:edit_batch_in_place"},
    ],
)
def test_no_filter_changes_a_shared_object(edit: dict[str, Any]) -> None:
    shared = {"pod_name": "p", "labels": {"app": "web"}}
    given = [{"message": "one", "kubernetes": shared}, {"message": "two", "kubernetes": shared}]
    filters, _ = chain(edit)
    out = [r for _, recs in filters.process("t", given) for r in recs]
    assert shared == {"pod_name": "p", "labels": {"app": "web"}}
    assert len(out) == 2 and out[0] is not out[1]
    if edit["type"] == "python":
        assert [r["kubernetes"]["labels"] for r in out] == [{"app": "web", "x": "1"}] * 2


def test_edits_after_a_copy_reach_the_copy_only() -> None:
    copy_then_edit = chain(
        {"type": "modify", "rules": [["copy", "kubernetes", "k2"]]},
        {"type": "modify", "rules": [["set", "k2.pod_name", "x"]]},
    )[0]
    shared = {"pod_name": "p"}
    out = [r for _, recs in copy_then_edit.process("t", [{"kubernetes": shared}]) for r in recs]
    assert out[0]["k2"] == {"pod_name": "x"} and shared == {"pod_name": "p"}
    edit_one, _ = chain(EDIT_ONE)
    given: list[dict[str, Any]] = [
        {"message": m, "kubernetes": {"labels": {}}} for m in ("one", "two")
    ]
    out = [r for _, recs in edit_one.process("t", given) for r in recs]
    assert out[0]["kubernetes"] == {"labels": {"x": "1"}, "pod_name": "edited"}
    assert out[1]["kubernetes"] == {"labels": {}}
