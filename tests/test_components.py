"""The one component registry (``agent.components``): every entry of every family resolves to
its config struct and class, a config with one component of each type validates and builds
through the agent's one build path, and what goes wrong is said the same way for every family."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent.components import (
    FAMILIES,
    FILTERS,
    ComponentError,
    build,
    label,
    types,
)
from agent.config import ConfigError, parse_config
from agent.filters.base import Filter, FilterConfig, FilterContext
from agent.inputs.base import Input
from agent.metrics import Registry
from agent.runtime import Agent
from outputs.base import Output

BASES = {"inputs": Input, "filters": Filter, "outputs": Output}

# One smallest valid table per component type: a new component adds its line here (the test
# below fails until it does), and is then built by the agent's own path.
TABLES = {
    "inputs": {
        "syslog": 'mode = "udp"\nlisten = "127.0.0.1:0"',
        "tail": 'paths = ["{tmp}/logs/*.log"]',
    },
    "filters": {
        "grep": 'regex = [["message", "x"]]',
        "modify": 'rules = [["set", "a", "b"]]',
        "record_modifier": 'record = [["a", "b"]]',
        "rewrite_tag": 'rules = [["ident", "x", "new.tag", false]]',
        "throttle": "rate = 10",
        "parser": 'format = "json"',
        "nest": 'operation = "lift"\nnested_under = "x"',
        "multiline": 'start_pattern = "^\\\\S"',
        "python": 'function = "copy:copy"',
        "kubernetes": 'kube_url = "http://127.0.0.1:1"\nnode_name = "n1"',
        "audit": "",
        "auditd": "",
    },
    "outputs": {
        "stdout": "",
        "file": 'path = "{tmp}/out.ndjson"',
        "null": "",
        "s3": 'bucket = "audit-logs"',
        "elasticsearch": 'hosts = "http://127.0.0.1:9200"',
        "opensearch": 'hosts = "http://127.0.0.1:9200"',
        "http": 'url = "http://127.0.0.1:1/ingest"',
    },
}


@pytest.fixture
def fresh_types() -> Iterator[None]:
    """The family look-ups are cached: a test that changes a table sees its change, and the
    tests after it see the real tables again."""
    types.cache_clear()
    yield
    types.cache_clear()


def every_type_config(tmp: Path) -> str:
    text = f'[agent]\ndata_dir = "{tmp}/data"\n[buffer]\ntype = "memory"\n'
    for family, tables in TABLES.items():
        for kind, body in tables.items():
            text += f'[[{family}]]\ntype = "{kind}"\n{body.format(tmp=tmp)}\n'
    return text


@pytest.mark.parametrize(("family", "table"), FAMILIES, ids=[f for f, _ in FAMILIES])
def test_every_entry_resolves_to_its_config_struct_and_class(family: str, table: dict) -> None:
    resolved = types(family)
    assert sorted(resolved) == sorted(table)
    for kind, (config, cls) in resolved.items():
        assert issubclass(config, msgspec.Struct), f"{family} {kind!r}: {config} is no struct"
        assert config.__struct_config__.tag == kind, f"{family} {kind!r}: the struct's tag"
        assert issubclass(cls, BASES[family]), f"{family} {kind!r}: {cls} is no {family[:-1]}"


def test_every_type_has_a_smallest_config_here() -> None:
    for family, table in FAMILIES:
        assert sorted(TABLES[family]) == sorted(table), f"add the new {family} type to TABLES"


def test_one_of_every_type_validates_and_builds(tmp_path: Path) -> None:
    config = parse_config(every_type_config(tmp_path), "every.toml")
    agent = Agent(config, "every.toml", Registry())
    agent.build()
    assert [type(i) for i in agent.inputs] == [
        types("inputs")[kind][1] for kind in TABLES["inputs"]
    ]
    assert agent.chain is not None
    assert [type(f) for f in agent.chain.filters] == [
        types("filters")[kind][1] for kind in TABLES["filters"]
    ]
    assert [type(o) for o in agent.outputs.values()] == [
        types("outputs")[kind][1] for kind in TABLES["outputs"]
    ]


def test_a_typo_in_a_table_fails_loudly(monkeypatch: pytest.MonkeyPatch, fresh_types: None) -> None:
    monkeypatch.setitem(FILTERS, "grep", ("agent.filters.grep", "GrepConfg", "GrepFilter"))
    with pytest.raises(RuntimeError, match=r"filters 'grep' -> agent\.filters\.grep\.GrepConfg"):
        types("filters")
    monkeypatch.setitem(FILTERS, "grep", ("agent.filters.grepp", "GrepConfig", "GrepFilter"))
    with pytest.raises(
        RuntimeError, match=r"filters 'grep' .*No module named 'agent\.filters\.grepp'"
    ):
        types("filters")


class _NotRegistered(FilterConfig, tag="not_registered"):
    pass


def _filter_context() -> FilterContext:
    return FilterContext(
        name="f", logger=logging.getLogger("test"), metrics=Registry().component("f", "f")
    )


def test_an_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ComponentError) as err:
        build("filters", 3, _NotRegistered(name="odd"), _filter_context())
    assert str(err.value) == (
        f"filters[3] (not_registered) 'odd': unknown type 'not_registered'; expected one of "
        f"{sorted(FILTERS)}"
    )
    with pytest.raises(ConfigError) as parsed:
        parse_config(
            '[[inputs]]\ntype = "syslog"\nmode = "udp"\nlisten = "127.0.0.1:0"\n'
            '[[outputs]]\ntype = "nul"\n',
            "a.toml",
        )
    assert parsed.value.problems == [
        f"a.toml: outputs[0].type: invalid value 'nul'; expected one of "
        f"{sorted(types('outputs'))}; did you mean null?"
    ]


def test_a_refusal_names_family_position_type_and_name() -> None:
    config = parse_config(
        '[[inputs]]\ntype = "syslog"\nmode = "udp"\nlisten = "127.0.0.1:0"\n'
        '[[filters]]\ntype = "modify"\nname = "m"\nrules = [["set", "a", "b"]]\n'
        '[[filters]]\ntype = "grep"\nname = "bad"\nexclude = [["message", "("]]\n'
        '[[outputs]]\ntype = "null"\n'
    )
    grep = config.filters[1]
    assert label("filters", 1, grep) == "filters[1] (grep) 'bad'"
    with pytest.raises(ComponentError, match=r"^filters\[1\] \(grep\) 'bad': exclude\[0\]\[1\]: "):
        build("filters", 1, grep, _filter_context())
    with pytest.raises(ConfigError) as err:
        Agent(config, "a.toml").build()
    assert err.value.problems[0].startswith(
        "a.toml: filters[1] (grep) 'bad': exclude[0][1]: invalid regular expression '('"
    )


def test_checks_across_keys_are_the_structs_own_and_reported_together() -> None:
    """A filter's checks of its own keys run when the config is read, so every one of them is
    reported at once, each at its key, before anything is built."""
    text = (
        '[[inputs]]\ntype = "syslog"\nmode = "udp"\nlisten = "127.0.0.1:0"\n'
        '[[filters]]\ntype = "modify"\n'
        '[[filters]]\ntype = "record_modifier"\n'
        '[[filters]]\ntype = "rewrite_tag"\n'
        '[[outputs]]\ntype = "null"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    assert err.value.problems == [
        "a.toml: filters[0].rules: give at least one rule",
        "a.toml: filters[1]: record, remove_keys, allowlist_keys: give at least one",
        "a.toml: filters[2].rules: give at least one [field, regex, new_tag, keep] rule",
    ]
