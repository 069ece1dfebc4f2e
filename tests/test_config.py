"""Config loading: the issue's example works as written; every error names file, key and what
was expected; ${ENV} interpolation; units."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config
from common.units import parse_duration, parse_size
from tests.conftest import check_config

ISSUE_EXAMPLE = """
[agent]
data_dir = "/var/lib/container-audit-agent"
[[inputs]]
type = "syslog"
mode = "udp"                  # also "tcp", "unix_dgram", "unix_stream"
listen = "127.0.0.1:5514"     # unix modes use path = "/run/agent/syslog.sock"
tag = "syslog"
[[outputs]]
type = "file"                 # NDJSON, one record per line, flushed at least every second
match = "*"
path = "/var/log/container-audit-agent/out.ndjson"
"""


def test_issue_example_validates_as_written() -> None:
    config = parse_config(ISSUE_EXAMPLE)
    assert config.agent.data_dir == "/var/lib/container-audit-agent"
    assert config.inputs[0].mode == "udp"
    assert config.inputs[0].name == "syslog.0"
    assert config.outputs[0].path == "/var/log/container-audit-agent/out.ndjson"
    assert config.outputs[0].name == "file.0"
    assert config.buffer.type == "disk"


def test_unknown_key_names_file_and_key_path() -> None:
    text = ISSUE_EXAMPLE.replace('tag = "syslog"', 'tag = "syslog"\nlisten_port = 1')
    with pytest.raises(ConfigError) as err:
        parse_config(text, "/etc/agent.toml")
    expected = "/etc/agent.toml: inputs[0].listen_port: unknown key; did you mean listen?"
    assert str(err.value) == expected


def test_unknown_top_level_section() -> None:
    with pytest.raises(
        ConfigError, match=r"^x.toml: bufer: unknown key; did you mean \[buffer\]\?$"
    ):
        parse_config(ISSUE_EXAMPLE + "\n[bufer]\n", "x.toml")


def test_wrong_type_says_what_was_expected() -> None:
    text = ISSUE_EXAMPLE + '\n[buffer]\nmax_bytes = "lots"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    message = str(err.value)
    assert message.startswith("a.toml: buffer.max_bytes: ")
    assert "expected a size" in message


def test_unknown_component_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(ISSUE_EXAMPLE.replace('type = "file"', 'type = "kafka"'), "a.toml")
    assert "a.toml: outputs[0].type:" in str(err.value)
    assert "'file'" in str(err.value) and "'stdout'" in str(err.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"outputs\[0\]\.path: required key is missing"):
        parse_config(
            ISSUE_EXAMPLE.replace('path = "/var/log/container-audit-agent/out.ndjson"', "")
        )


def test_invalid_toml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^a.toml: invalid TOML: "):
        parse_config("[agent\n", "a.toml")


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_DIR", "/tmp/out")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    text = ISSUE_EXAMPLE.replace(
        'path = "/var/log/container-audit-agent/out.ndjson"',
        'path = "${OUT_DIR}/${UNSET_VAR:-x}.ndjson"\nworkers = "${WORKERS}"',
    )
    config = parse_config(text)
    assert config.outputs[0].path == "/tmp/out/x.ndjson"
    assert config.outputs[0].workers == 3


def test_unset_env_without_default_names_variable_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    text = ISSUE_EXAMPLE.replace('"/var/log/container-audit-agent/out.ndjson"', '"${NOPE_NOT_SET}"')
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    assert str(err.value) == "a.toml: outputs[0].path: environment variable NOPE_NOT_SET is not set"


def test_duplicate_names_rejected() -> None:
    text = ISSUE_EXAMPLE + '\n[[outputs]]\ntype = "null"\nname = "file.0"\n'
    with pytest.raises(ConfigError, match=r"outputs\[1\]\.name: name 'file.0' is already used"):
        parse_config(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [(5, 5.0), ("500ms", 0.5), ("3s", 3.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [(100, 100), ("64KiB", 65536), ("2MiB", 2 << 20), ("1GiB", 1 << 30)]
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["fast", "-1s", True, "5 parsecs"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "nope.toml"))


def _on_this_machine(tmp_path: Path) -> str:
    """ISSUE_EXAMPLE with a data_dir and a port that --check finds usable here."""
    return ISSUE_EXAMPLE.replace("/var/lib/container-audit-agent", str(tmp_path / "data")).replace(
        "127.0.0.1:5514", "127.0.0.1:0"
    )


def test_cli_check_prints_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_on_this_machine(tmp_path))
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert f"config OK: {path}" in result.stdout
    assert "input syslog.0: syslog udp 127.0.0.1:0 tag='syslog'" in result.stdout
    assert "-> file.0" in result.stdout


def test_cli_config_error_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(ISSUE_EXAMPLE.replace("[agent]", "[agent]\nlog_levl = 'info'"))
    result = check_config(path)
    assert result.returncode == 2
    assert f"{path}: agent.log_levl: unknown key" in result.stderr


def test_cli_warns_about_unrouted_tags(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_on_this_machine(tmp_path).replace('match = "*"', 'match = "docker.*"'))
    result = check_config(path)
    assert result.returncode == 0
    assert "no output matches tag 'syslog'" in result.stdout


def test_lower_case_placeholders_are_left_for_record_field_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ident", "from-env")  # a field template is never taken from the env
    config = parse_config(ISSUE_EXAMPLE.replace('tag = "syslog"', 'tag = "docker.${ident}"'))
    assert config.inputs[0].tag == "docker.${ident}"
    monkeypatch.setenv("region", "eu-west-1")
    text = ISSUE_EXAMPLE.replace('tag = "syslog"', 'tag = "${region:-x}.${sd.origin.ip}"')
    assert parse_config(text).inputs[0].tag == "eu-west-1.${sd.origin.ip}"


def test_component_that_rejects_its_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(ISSUE_EXAMPLE + '\n[[filters]]\ntype = "grep"\nregex = [["message", "("]]\n')
    result = check_config(path)
    assert result.returncode == 2, result.stdout
    expected = f"{path}: filters[0] (grep) 'grep.0': regex[0][1]: invalid regular expression"
    assert expected in result.stderr


def test_every_wrong_value_of_one_table_is_reported() -> None:
    """msgspec stops at a table's first problem; the loader reports each of them."""
    text = ISSUE_EXAMPLE.replace(
        'tag = "syslog"',
        'tag = "syslog"\nmax_message_bytes = "lots"\nformat = "syslog"\nmax_connections = "many"',
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    assert err.value.problems == [
        'a.toml: inputs[0].max_message_bytes: expected a size such as 65536, "64KiB", "2MiB" or '
        "\"1GiB\", got 'lots'",
        "a.toml: inputs[0].format: 'syslog' is not allowed; expected one of 'auto', 'rfc3164', "
        "'rfc5424'",
        "a.toml: inputs[0].max_connections: expected int, got str",
    ]


def test_problems_of_every_table_and_duplicate_names_together() -> None:
    text = (
        ISSUE_EXAMPLE.replace("[agent]", '[agent]\nlog_level = "loud"')
        + '\n[[outputs]]\ntype = "null"\nname = "file.0"\n[buffer]\nsync = "sometimes"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    assert [p.split(":")[1].strip() for p in err.value.problems] == [
        "agent.log_level",
        "buffer.sync",
        "outputs[1].name",
    ]


def test_a_table_where_an_array_of_tables_belongs() -> None:
    text = ISSUE_EXAMPLE.replace("[[inputs]]", "[inputs]")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "a.toml")
    assert str(err.value) == (
        "a.toml: inputs: expected an array of tables ([[inputs]]), got a table ([inputs])"
    )
