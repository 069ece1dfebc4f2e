"""No filter raises on any record: property test over arbitrary JSON-like records."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.components import filter_types
from agent.filters.base import FilterConfig, FilterContext
from agent.filters.chain import FilterChain
from common.units import config_dec_hook
from tests.doubles import NullMetrics

CONFIGS: list[dict[str, Any]] = [
    {"type": "grep", "regex": [["message", "a"], ["sd.x.y", "."]], "logical_op": "or"},
    {"type": "grep", "exclude": [["ident", "^z"]]},
    {
        "type": "modify",
        "rules": [
            ["set", "sd.x.y", 1],
            ["add", "k", "v"],
            ["rename", "message", "msg"],
            ["hard_copy", "msg", "sd.copy"],
            ["remove_wildcard", "p*"],
            ["move_to_start", "h*"],
        ],
        "condition": [["key_value_does_not_match", "ident", "^q"]],
    },
    {"type": "record_modifier", "record": [["r.s", "${ident}-${sd.x}"]], "remove_keys": ["pid"]},
    {"type": "rewrite_tag", "rules": [["msg", "(.)", "t.$1.${host}.$TAG[0]", True]]},
    {"type": "throttle", "rate": 50, "key": "host"},
    {"type": "parser", "format": "logfmt", "key_name": "msg", "target_key": "p"},
    {"type": "parser", "format": "json", "key_name": "message", "reserve_data": False},
    {"type": "nest", "operation": "nest", "wildcard": ["*"], "nest_under": "n.m"},
    {"type": "nest", "operation": "lift", "nested_under": "n.m", "add_prefix": "l_"},
    {"type": "multiline", "start_pattern": "^[A-Z]", "key": "l_message"},
    {"type": "python", "function": "builtins:list"},
    {"type": "audit", "keep_original": False},
    {"type": "auditd", "key": "msg", "proc_root": "/nonexistent", "max_events": 2},
]

AUDIT_LINES = st.sampled_from(
    ["type=SYSCALL msg=audit(1796563400.005:1): pid=1 ppid=2 syscall=59 arch=c000003e",
     'type=EXECVE msg=audit(1796563400.005:1): argc=2 a0="x" a1_len=4 a1[0]=6869',
     "type=PROCTITLE msg=audit(1796563400.005:1): proctitle=6869", "type=USER_CMD msg=audit(1:2):"]
)  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | AUDIT_LINES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y", "a.b", "m"]), children, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    ["message", "msg", "ident", "host", "pid", "sd", "container_id", "level", "n", "audit", "k"]
)
records = st.lists(st.dictionaries(keys, json_values, max_size=8), max_size=20)


def build() -> FilterChain:
    pairs: list[tuple[FilterConfig, FilterContext]] = []
    for index, raw in enumerate(CONFIGS):
        config: FilterConfig = msgspec.convert(
            raw, filter_types()[raw["type"]][0], dec_hook=config_dec_hook
        )
        context = FilterContext(
            name=f"{raw['type']}.{index}", logger=logging.getLogger("t"), metrics=NullMetrics()
        )
        pairs.append((config, context))
    return FilterChain(pairs)


CHAIN = build()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=records, tag=st.sampled_from(["syslog", "docker.web", "a.b.c"]))
def test_no_filter_raises(batch: list[dict[str, Any]], tag: str) -> None:
    # Each filter is called directly: the chain would hide an exception behind its safety net.
    batches = [(tag, batch)]
    for f in CHAIN.filters:
        out = []
        for t, rs in batches:
            out.extend(f.process(t, rs))
        batches = out
        for t, rs in batches:
            assert isinstance(t, str) and t
            assert all(isinstance(r, dict) for r in rs)
    for f in CHAIN.filters:
        f.flush(1e12)
        f.close()
