"""The configuration reference is generated from the config structs: the committed docs must be
what the generator prints, and the keys it documents must have docstrings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from agent import reference
from agent.buffer.base import BufferConfig
from agent.components import filter_types, input_types, output_types
from agent.config import AgentConfig

ROOT = Path(__file__).resolve().parent.parent


def test_committed_docs_are_what_the_generator_prints() -> None:
    stale = [str(path.relative_to(ROOT)) for path in reference.stale_files(ROOT)]
    assert not stale, (
        f"generated configuration reference is stale in {', '.join(stale)}: run `make docs` "
        "(python -m agent.reference --write) and commit the result"
    )


def test_print_reference_prints_the_generated_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--print-reference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == reference.render()
    assert result.stdout.startswith("# Configuration reference\n")


def test_every_section_and_registered_component_has_its_keys_listed() -> None:
    text = reference.render()
    sections = [AgentConfig, BufferConfig]
    components = [
        (family, kind, cls)
        for family, registry in (
            ("inputs", input_types()),
            ("filters", filter_types()),
            ("outputs", output_types()),
        )
        for kind, (cls, _) in registry.items()
    ]
    for cls in [*sections, *(cls for _, _, cls in components)]:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType), cls
        for field in info.fields:
            assert f"| `{field.encode_name}` |" in text, (cls.__name__, field.encode_name)
    for family, kind, _ in components:
        assert f'### `[[{family}]]` `type = "{kind}"`' in text


def test_inherited_fields_carry_their_base_docstring() -> None:
    from outputs.file import FileConfig

    docs = reference.field_docs(FileConfig)
    assert docs["retry_limit"].startswith("Failed attempts per chunk")
    assert docs["workers"].startswith("One writer")  # the subclass's own words win
    assert docs["path"].startswith("The NDJSON file")


def test_defaults_are_shown_as_written_in_toml() -> None:
    table = reference.key_table(BufferConfig)
    assert '| `chunk_bytes` | size | `"2MiB"` |' in table
    assert '| `flush_interval` | duration | `"1s"` |' in table
    assert '`"none"` \\| `"batch"` \\| `"always"`' in table
    agent = reference.key_table(AgentConfig)
    assert '| `grace_period` | duration | `"10s"` |' in agent
    assert "| `http_listen` | string | unset |" in agent


def test_a_stale_block_is_refreshed() -> None:
    text = "before\n<!-- reference:begin buffer -->\nold table\n<!-- reference:end -->\nafter\n"
    refreshed = reference.refreshed(text, reference.blocks())
    assert "old table" not in refreshed
    assert refreshed.startswith("before\n<!-- reference:begin buffer -->\n| key |")
    assert refreshed.endswith("<!-- reference:end -->\nafter\n")
    with pytest.raises(KeyError, match="no generated block named 'nothing'"):
        reference.refreshed("<!-- reference:begin nothing -->\n<!-- reference:end -->", {})


DOCUMENTED = [
    AgentConfig,
    BufferConfig,
    *(cls for cls, _ in [*filter_types().values(), *input_types().values()]),
    *(cls for cls, _ in output_types().values()),
]


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda cls: cls.__name__)
def test_every_key_has_a_docstring(cls: type) -> None:
    assert reference.undocumented(cls) == []
