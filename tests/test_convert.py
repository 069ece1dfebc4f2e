"""``python -m agent convert``: fluent-bit configurations shaped like the ones fluent-bit's
documentation and Helm chart ship (tests/data/fluent-bit/, written for these tests) become
agent.toml files that ``--check`` accepts; whatever is left out is listed with file and line,
in the file and on stderr, and the exit status says so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.components import filter_types, input_types
from tests.conftest import (
    REPO,
    agent_command,
    agent_env,
    check_config,
    free_port,
    read_ndjson,
    wait_for,
)

DATA = Path(__file__).parent / "data" / "fluent-bit"


def convert(source: Path, tmp_path: Path, *extra: str) -> tuple[int, str, str, dict[str, Any]]:
    """Run the real command; returns exit status, the written TOML, stderr and the parsed TOML."""
    out = tmp_path / "agent.toml"
    done = subprocess.run(
        agent_command("convert", str(source), "-o", str(out), *extra),
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode in (0, 3), done.stderr
    text = out.read_text()
    return done.returncode, text, done.stderr, tomllib.loads(text)


def check(tmp_path: Path) -> str:
    done = check_config(tmp_path / "agent.toml", "--no-environment")
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def has_input(kind: str) -> bool:
    return kind in input_types()


def has_filter(kind: str) -> bool:
    return kind in filter_types()


def by_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in items if item["type"] == kind]


def test_helm_chart_default(tmp_path: Path) -> None:
    """The chart's default: tail on /var/log/containers with the docker+cri multiline parser,
    the kubernetes filter with Merge_Log, two es outputs, a systemd input we do not have."""
    status, text, stderr, config = convert(DATA / "helm" / "fluent-bit.conf", tmp_path)
    assert status == 3
    assert config["agent"] == {"log_level": "info", "http_listen": "0.0.0.0:2020"}
    assert config["buffer"] == {"flush_interval": 1}
    [tail] = config["inputs"]
    assert tail == {
        "type": "tail",
        "tag": "kube.${namespace_name}.${pod_name}.${container_name}",
        "paths": ["/var/log/containers/*.log"],
        "format": "auto",
    }
    kubernetes, merge = config["filters"]
    assert kubernetes == {"type": "kubernetes", "match": "kube.*"}
    assert merge == {
        "type": "parser",
        "match": "kube.*",
        "format": "json",
        "key_name": "message",
        "reserve_data": True,
        "preserve_key": False,
    }
    es = config["outputs"]
    assert [o["match"] for o in es] == ["kube.*", "host.*"]
    assert all(o["hosts"] == "http://elasticsearch-master:9200" for o in es)
    assert all(o["logstash_format"] is True and o["retry_limit"] == "unlimited" for o in es)
    assert es[1]["logstash_prefix"] == "node-logs"
    # Left out, each with the line that holds it: in the file and on stderr.
    for where, what in [
        ("fluent-bit.conf:19", "Mem_Buf_Limit 5MB"),
        ("fluent-bit.conf:22", "[INPUT] systemd"),
        ("fluent-bit.conf:33", "K8S-Logging.Parser On"),
        ("fluent-bit.conf:34", "K8S-Logging.Exclude On"),
    ]:
        assert f"#   - {where}: {what}" in text.split("# Translated with")[0]
        assert f"not translated: {where}: {what}" in stderr
    assert "4 setting(s) not translated" in stderr
    if has_input("tail") and has_filter("kubernetes"):
        out = check(tmp_path)
        assert "input tail.0: tail" in out
    else:
        assert 'type = "tail"' in text and 'type = "kubernetes"' in text


def test_syslog_every_mode_with_include_set_and_storage(tmp_path: Path) -> None:
    """Every syslog mode, @INCLUDE of a glob, @SET variables, ${ENV} kept, [SERVICE] storage:
    all translated (exit 0)."""
    status, text, stderr, config = convert(DATA / "syslog" / "fluent-bit.conf", tmp_path)
    assert status == 0, stderr
    assert "NOT TRANSLATED" not in text and "not translated" not in stderr
    assert config["agent"] == {"log_level": "warning", "data_dir": "/var/lib/fluent-bit/buffer"}
    assert config["buffer"] == {"flush_interval": 2, "sync": "always"}
    inputs = {item["tag"]: item for item in config["inputs"]}
    assert inputs["syslog.udp"] == {
        "type": "syslog",
        "tag": "syslog.udp",
        "mode": "udp",
        "listen": "0.0.0.0:5140",
        "format": "rfc5424",
        "receive_buffer_bytes": "4MiB",
        "source_key": "source",
    }
    assert inputs["syslog.tcp"]["mode"] == "tcp"
    assert inputs["syslog.tcp"]["listen"] == "127.0.0.1:5170"
    assert inputs["syslog.tcp"]["format"] == "rfc3164"
    assert inputs["syslog.tcp"]["max_message_bytes"] == "128KiB"
    assert inputs["syslog.local"]["mode"] == "unix_dgram"
    assert inputs["syslog.local"]["path"] == "/var/run/fluent-bit/in_syslog"  # @SET
    assert inputs["syslog.local"]["socket_mode"] == "0644"
    assert inputs["syslog.local"]["max_message_bytes"] == 64000
    assert inputs["syslog.stream"]["mode"] == "unix_stream"
    assert inputs["syslog.stream"]["format"] == "rfc5424"
    [out] = config["outputs"]
    assert out == {"type": "file", "match": "syslog.*", "path": "${LOG_DIR}/syslog.log"}
    result = check(tmp_path)
    assert "input syslog.2: syslog unix_dgram /var/run/fluent-bit/in_syslog" in result
    assert "sync=always" in result


def test_s3_examples(tmp_path: Path) -> None:
    status, _, stderr, config = convert(DATA / "s3" / "fluent-bit.conf", tmp_path)
    assert status == 3
    first, second = config["outputs"]
    assert first["bucket"] == "my-audit-bucket" and first["region"] == "us-east-1"
    assert first["total_file_size"] == "50MiB" and first["upload_timeout"] == "10m"
    assert first["retry_limit"] == 5 and first["compression"] == "gzip"
    assert first["key_format"] == "${tag[2]}/${tag[0]}/%Y/%m/%d/%H/%M/%S/${host}-${chunk_id}.gz"
    assert second["endpoint_url"] == "http://minio.storage.svc:9000"
    assert second["compression"] == "zstd" and second["upload_chunk_size"] == "6MiB"
    assert second["role_arn"] == "arn:aws:iam::123456789012:role/log-writer"
    assert second["workers"] == 2
    assert second["key_format"] == "fluent-bit-logs/${tag}/%Y/%m/%d/%H/%M/%S-${host}-${chunk_id}"
    [modifier] = config["filters"]
    assert modifier["record"] == [["cluster", "${CLUSTER_NAME}"], ["hostname", "${HOSTNAME}"]]
    assert modifier["remove_keys"] == ["extradata"]
    assert "not translated: fluent-bit.conf:48: [OUTPUT] s3: log_key message" in stderr
    assert "s3_key_format_tag_delimiters" not in stderr.split("note:")[0]
    assert "1 setting(s) not translated" in stderr
    check(tmp_path)


def test_every_filter_and_what_cannot_be_translated(tmp_path: Path) -> None:
    status, _, stderr, config = convert(DATA / "filters" / "fluent-bit.conf", tmp_path)
    assert status == 3
    assert config["agent"] == {"http_listen": "0.0.0.0:2021"}
    filters = config["filters"]
    assert [f["type"] for f in filters] == [
        "grep", "modify", "rewrite_tag", "throttle", "nest", "nest", "parser", "multiline",
    ]  # fmt: skip
    grep, modify, rewrite, throttle, nest, lift, parser, multiline = filters
    assert grep["regex"] == [["ident", "^(sshd|sudo)$"]]
    assert grep["exclude"] == [["message", "session closed"], ["sd.origin.ip", r"^10\."]]
    assert modify["condition"] == [["key_value_matches", "ident", "^sshd"], ["key_exists", "host"]]
    assert modify["rules"] == [
        ["set", "cluster", "prod"],
        ["add", "env", "staging"],
        ["rename", "msg", "message"],
        ["copy", "host", "node"],
        ["remove_wildcard", "tmp_"],
        ["hard_rename", "pri", "priority"],
    ]
    assert rewrite["rules"] == [
        ["ident", "^(sudo)$", "secure.$1.$TAG[1]", False],
        ["sd.meta.team", r"^(\w+)$", "team.$1", True],
    ]
    assert (throttle["rate"], throttle["window"], throttle["print_status"]) == (2400, 3, True)
    assert nest == {
        "type": "nest",
        "match": "syslog.*",
        "operation": "nest",
        "wildcard": ["container_*", "image"],
        "nest_under": "container",
        "remove_prefix": "container_",
    }
    assert lift["nested_under"] == "sd" and lift["operation"] == "lift"
    assert parser["format"] == "regex" and parser["regex"].startswith("^(?<client>")
    assert parser["reserve_data"] is True and parser["preserve_key"] is True
    assert multiline["start_pattern"] == r"^\d{4}-\d{2}-\d{2} \d\d:\d\d:\d\d"
    assert multiline["flush_timeout"] == "1000ms" and multiline["key"] == "message"
    stdout, null, opensearch, http = config["outputs"]
    assert stdout == {"type": "stdout", "match": "secure.*"}
    assert null == {"type": "null", "match": "team.*"}
    assert opensearch["type"] == "opensearch"
    assert opensearch["hosts"] == [
        "https://search-1.example.com:443",
        "https://search-2.example.com:443",
    ]
    assert opensearch["user"] == "${OS_USER}" and opensearch["password"] == "${OS_PASSWORD}"
    assert opensearch["verify_tls"] is False and opensearch["id_mode"] == "hash"
    assert http == {
        "type": "http",
        "match": "*",
        "retry_limit": 5,
        "url": "http://collector.example.com:8080/ingest",
        "format": "ndjson",
        "http_user": "${COLLECTOR_USER}",
        "http_passwd": "${COLLECTOR_PASSWORD}",
        "compress": "gzip",
        "headers": {"X-Tenant": "team-a", "X-Source": "fluent-bit"},
    }
    left_out = [line for line in stderr.splitlines() if line.startswith("not translated:")]
    assert left_out == [
        "not translated: fluent-bit.conf:78: [FILTER] lua: Lua scripts cannot be translated; "
        'a [[filters]] type = "python" function can do the same',
        "not translated: fluent-bit.conf:105: [OUTPUT] opensearch: Trace_Output On: no "
        "equivalent in the agent",
        "not translated: fluent-bit.conf:107: [OUTPUT] http: Format msgpack: records are sent "
        'as JSON lines (format = "ndjson"); the receiver must accept them',
    ]
    result = check(tmp_path)
    assert "filter multiline.7: multiline match='syslog.*'" in result


def test_yaml_pipeline(tmp_path: Path) -> None:
    """env, includes, parsers, multiline_parsers and pipeline; record accessors and the tail
    input's ``log`` become our field paths and ``message``."""
    pytest.importorskip("yaml")
    status, text, stderr, config = convert(DATA / "yaml" / "fluent-bit.yaml", tmp_path)
    assert status == 3
    assert config["agent"] == {
        "log_level": "debug",
        "http_listen": "127.0.0.1:2020",
        "data_dir": "/var/lib/fluent-bit/storage",
    }
    assert config["buffer"] == {"flush_interval": 2, "sync": "none"}  # env: flush_interval
    tail, syslog = config["inputs"]
    assert tail == {
        "type": "tail",
        "tag": "kube.${namespace_name}.${pod_name}.${container_name}",
        "paths": ["/var/log/containers/*.log"],
        "exclude": ["/var/log/containers/*_kube-system_*.log", "/var/log/containers/fluent-bit*"],
        "read_from_head": True,
        "refresh_interval": 5,
        "rotate_wait": 10,
        "max_line_bytes": "2MiB",
        "path_key": "file",
        "format": "cri",
    }
    assert syslog == {
        "type": "syslog",
        "tag": "audit.node",
        "mode": "unix_dgram",
        "path": "/run/fluent-bit/audit.sock",
        "format": "rfc5424",
    }
    kubernetes, merge, grep, parser, multiline = config["filters"]
    assert kubernetes == {
        "type": "kubernetes",
        "match": "kube.*",
        "kube_url": "https://kubernetes.default.svc:443",
        "kube_ca_file": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "kube_token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "labels": True,
        "annotations": False,
    }
    assert merge["type"] == "parser" and merge["preserve_key"] is True
    assert grep["exclude"] == [
        ["message", r"^\s*$"],
        ["kubernetes.namespace_name", "^kube-system$"],
    ]
    assert parser["key_name"] == "message" and parser["format"] == "regex"
    assert multiline["start_pattern"] == r"^\[\d{4}-\d\d-\d\d" and multiline["key"] == "message"
    es, stdout = config["outputs"]
    assert es["hosts"] == "http://opensearch.logging.svc:9200"  # env: es_host
    assert es["user"] == "${ES_USERNAME}" and es["password"] == "${ES_PASSWORD}"
    assert es["retry_limit"] == 10 and es["workers"] == 4
    assert es["replace_dots"] is True and es["logstash_prefix"] == "kube"
    assert stdout == {"type": "stdout", "match": "audit.*"}
    assert "not translated: inputs.yaml:14: mem_buf_limit 50MB" in stderr
    assert "1 setting(s) not translated" in stderr
    if has_input("tail") and has_filter("kubernetes"):
        check(tmp_path)
    else:
        assert 'type = "tail"' in text and 'type = "kubernetes"' in text


def test_classic_and_yaml_of_the_same_pipeline_agree(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    classic = tmp_path / "fluent-bit.conf"
    classic.write_text(
        "[INPUT]\n    Name syslog\n    Mode tcp\n    Port 5514\n    Tag node\n"
        "[FILTER]\n    Name grep\n    Match node\n    Regex ident ^sshd$\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n    Format json_lines\n"
    )
    yaml = tmp_path / "fluent-bit.yaml"
    yaml.write_text(
        "pipeline:\n  inputs:\n    - name: syslog\n      mode: tcp\n      port: 5514\n"
        "      tag: node\n  filters:\n    - name: grep\n      match: node\n"
        "      regex: ident ^sshd$\n  outputs:\n    - name: stdout\n      match: '*'\n"
        "      format: json_lines\n"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = convert(classic, tmp_path / "a")
    second = convert(yaml, tmp_path / "b")
    assert first[0] == second[0] == 0
    assert first[3] == second[3]
    assert first[3]["inputs"] == [
        {"type": "syslog", "tag": "node", "mode": "tcp", "listen": "0.0.0.0:5514"}
    ]
    check(tmp_path / "a")


def test_default_tag_and_stdout_to_stdout(tmp_path: Path) -> None:
    """No Tag: fluent-bit tags with the instance name (syslog.0); no -o writes to stdout."""
    source = tmp_path / "fb.conf"
    source.write_text(
        "[INPUT]\n    Name syslog\n    Mode udp\n[OUTPUT]\n    Name null\n    Match *\n"
    )
    done = subprocess.run(
        agent_command("convert", str(source)), env=agent_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    config = tomllib.loads(done.stdout)
    assert config["inputs"] == [
        {"type": "syslog", "tag": "syslog.0", "mode": "udp", "listen": "0.0.0.0:5140"}
    ]
    assert config["outputs"] == [{"type": "null", "match": "*"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Name syslog\n", "outside any [SECTION]"),
        ("@INCLUDE missing.conf\n", "@INCLUDE missing.conf: no such file"),
        ("@SET novalue\n", "expected @SET NAME=value"),
    ],
)
def test_unreadable_input_is_exit_2_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    source = tmp_path / "fb.conf"
    source.write_text("# comment\n" + text)
    done = subprocess.run(
        agent_command("convert", str(source), "-o", str(tmp_path / "out.toml")),
        env=agent_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert f"{source}:2: " in done.stderr and message in done.stderr
    assert not (tmp_path / "out.toml").exists()


def test_yaml_without_pyyaml_names_the_extra(tmp_path: Path) -> None:
    source = tmp_path / "fluent-bit.yaml"
    source.write_text("pipeline:\n  inputs:\n    - name: syslog\n")
    script = (
        "import sys; sys.modules['yaml'] = None\n"
        "from agent.__main__ import main\n"
        f"sys.exit(main(['convert', {str(source)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=agent_env(),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "container-audit-agent[convert]" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_input_or_output_translated_still_writes_a_valid_file(tmp_path: Path) -> None:
    source = tmp_path / "fb.conf"
    source.write_text("[INPUT]\n    Name cpu\n    Tag cpu\n[OUTPUT]\n    Name kafka\n    Match *\n")
    status, _, stderr, _ = convert(source, tmp_path)
    assert status == 3
    assert "fb.conf:1: [INPUT] cpu: no such input" in stderr
    assert "fb.conf:4: [OUTPUT] kafka: no such output" in stderr
    check(tmp_path)


def test_example_configs_copy(tmp_path: Path) -> None:
    """The data directory converts from anywhere (includes and parsers files are relative to
    the file that names them, not to the working directory)."""
    copy = tmp_path / "copy"
    shutil.copytree(DATA / "syslog", copy)
    (tmp_path / "out").mkdir()
    status, _, stderr, config = convert(copy / "fluent-bit.conf", tmp_path / "out")
    assert status == 0, stderr
    assert len(config["inputs"]) == 4


def test_tail_with_a_custom_multiline_parser(tmp_path: Path) -> None:
    """``multiline.parser cri, java_stack`` on tail: the CRI format, then a multiline filter
    whose start pattern is the parser's start_state rule, on the tail's records."""
    (tmp_path / "parsers.conf").write_text(
        "[MULTILINE_PARSER]\n    name java_stack\n    type regex\n    flush_timeout 2000\n"
        '    rule "start_state" "/^\\d{4}-/" "cont"\n    rule "cont" "/^\\s+at /" "cont"\n'
    )
    source = tmp_path / "fluent-bit.conf"
    source.write_text(
        "[SERVICE]\n    Parsers_File parsers.conf\n"
        "[INPUT]\n    Name tail\n    Path /var/log/containers/app-*.log\n    Tag app.*\n"
        "    multiline.parser cri, java_stack\n"
        "[OUTPUT]\n    Name stdout\n    Match app.*\n    Format json_lines\n"
    )
    (tmp_path / "out").mkdir()
    status, text, stderr, config = convert(source, tmp_path / "out")
    assert status == 0, stderr
    [tail] = config["inputs"]
    assert tail["format"] == "cri"
    assert tail["tag"] == "app.${namespace_name}.${pod_name}.${container_name}"
    assert config["filters"] == [
        {
            "type": "multiline",
            "match": "app.*.*.*",
            "start_pattern": r"^\d{4}-",
            "flush_timeout": "2000ms",
            "key": "message",
            "stream_keys": ["stream"],
        }
    ]
    if has_input("tail"):
        check(tmp_path / "out")
    else:
        assert 'type = "tail"' in text


def test_values_not_understood_are_listed_and_secrets_not_repeated(tmp_path: Path) -> None:
    """A value the converter cannot read is listed, never dropped quietly; a credential of a
    setting with no equivalent is not repeated in the notes (stderr, comments)."""
    source = tmp_path / "fb.conf"
    source.write_text(
        "[SERVICE]\n    Flush soon\n"
        "[INPUT]\n    Name syslog\n    Mode tcp\n    Buffer_Max_Size huge\n"
        "[FILTER]\n    Name throttle\n    Match *\n    Rate lots\n"
        "[OUTPUT]\n    Name es\n    Match *\n    Cloud_Auth elastic:hunter2\n"
        "    Generate_ID maybe\n"
    )
    (tmp_path / "out").mkdir()
    status, text, stderr, config = convert(source, tmp_path / "out")
    assert status == 3
    for where, what in [
        ("fb.conf:2", "flush soon: not understood"),
        ("fb.conf:6", "buffer_max_size huge: not understood"),
        ("fb.conf:10", "rate lots: not understood"),
        ("fb.conf:14", "[OUTPUT] es: Cloud_Auth (value redacted): no equivalent"),
        ("fb.conf:15", "generate_id maybe: not understood"),
    ]:
        assert f"not translated: {where}: {what}" in stderr
    assert "hunter2" not in stderr and "hunter2" not in text
    assert "max_message_bytes" not in config["inputs"][0]
    assert config["filters"][0]["rate"] == 5  # the default Rate 1 over Window 5
    check(tmp_path / "out")


def test_yaml_nested_keys_processors_and_sections_without_match(tmp_path: Path) -> None:
    """``storage: {path: ...}`` reads as storage.path; processors are listed as not translated;
    a filter or output without match (fluent-bit gives it nothing) is not written; an es output
    without Index writes to fluent-bit's default index."""
    pytest.importorskip("yaml")
    source = tmp_path / "fluent-bit.yaml"
    source.write_text(
        "service:\n  storage:\n    path: /var/lib/fb\n    sync: full\n"
        "pipeline:\n"
        "  inputs:\n    - name: syslog\n      mode: udp\n      port: 5514\n      tag: node\n"
        "      processors:\n        logs:\n          - name: content_modifier\n"
        "            action: insert\n            key: k\n            value: v\n"
        "  filters:\n    - name: grep\n      regex: ident ^x$\n"
        "  outputs:\n    - name: es\n      match: node\n      host: es.local\n"
        "    - name: stdout\n"
    )
    (tmp_path / "out").mkdir()
    status, _, stderr, config = convert(source, tmp_path / "out")
    assert status == 3
    assert config["agent"] == {"data_dir": "/var/lib/fb"}
    assert config["buffer"] == {"sync": "always"}
    assert "filters" not in config
    [es] = config["outputs"]
    assert es["index"] == "fluent-bit" and es["hosts"] == "http://es.local:9200"
    assert "fluent-bit.yaml:11: [INPUT] syslog: processors" in stderr
    assert "fluent-bit.yaml:18: [FILTER] grep without Match" in stderr
    assert "fluent-bit.yaml:24: [OUTPUT] stdout without Match" in stderr
    check(tmp_path / "out")


def test_converted_config_runs_and_delivers(tmp_path: Path, start_agent: Any) -> None:
    """The converted file is not only valid: the agent runs it. Syslog over UDP through grep,
    modify and rewrite_tag into two files, with fluent-bit's field names."""
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "out"
    source = tmp_path / "fluent-bit.conf"
    source.write_text(
        f"[SERVICE]\n    Flush 1\n    storage.path {tmp_path / 'data'}\n"
        f"[INPUT]\n    Name syslog\n    Mode udp\n    Listen 127.0.0.1\n    Port {port}\n"
        "    Parser syslog-rfc5424\n    Tag syslog.node\n"
        "[FILTER]\n    Name grep\n    Match syslog.*\n    Exclude $message ^healthcheck\n"
        "[FILTER]\n    Name modify\n    Match syslog.*\n    Set cluster prod\n"
        "    Rename msgid message_id\n"
        "[FILTER]\n    Name rewrite_tag\n    Match syslog.*\n"
        "    Rule $ident ^(sudo)$ secure.$1 false\n"
        f"[OUTPUT]\n    Name file\n    Match syslog.*\n    Path {out}\n    File all.log\n"
        "    Format plain\n"
        f"[OUTPUT]\n    Name file\n    Match secure.*\n    Path {out}\n    File secure.log\n"
        "    Format plain\n"
    )
    (tmp_path / "conv").mkdir()
    status, text, stderr, _ = convert(source, tmp_path / "conv")
    assert status == 0, stderr
    start_agent(text, workdir=tmp_path / "run")
    lines = [
        b"<14>1 2026-12-06T10:00:00.123Z node-1 app 42 ID7 - started worker",
        b"<14>1 2026-12-06T10:00:01Z node-1 app 42 - - healthcheck ok",
        b"<85>1 2026-12-06T10:00:02Z node-1 sudo 77 - - alice : COMMAND=/bin/sh",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for line in lines:
            sender.sendto(line, ("127.0.0.1", port))
    wait_for(lambda: read_ndjson(out / "all.log") and read_ndjson(out / "secure.log"), 30)
    [kept] = read_ndjson(out / "all.log")
    assert {k: kept[k] for k in ("pri", "time", "host", "ident", "pid", "message")} == {
        "pri": 14,
        "time": "2026-12-06T10:00:00.123Z",
        "host": "node-1",
        "ident": "app",
        "pid": "42",
        "message": "started worker",
    }
    assert kept["message_id"] == "ID7" and "msgid" not in kept and kept["cluster"] == "prod"
    [secure] = read_ndjson(out / "secure.log")
    assert secure["ident"] == "sudo" and secure["message"] == "alice : COMMAND=/bin/sh"


@pytest.mark.parametrize(
    ("accessor", "path"),
    [
        ("$kubernetes['labels']['app.kubernetes.io/name']",
         'kubernetes.labels["app.kubernetes.io/name"]'),
        ("$sd['origin']['ip']", "sd.origin.ip"),
        ("ident", "ident"),
        ("$ident", "ident"),
        ("kubernetes.labels", '["kubernetes.labels"]'),  # a plain key is one key, dots and all
    ],
)  # fmt: skip
def test_record_accessors_become_field_paths(accessor: str, path: str) -> None:
    from agent.convert.mapping import Mapper
    from agent.convert.model import FluentBitConfig
    from agent.filters.common import parse_path

    assert Mapper(FluentBitConfig("x")).field(accessor) == path
    parse_path(path, "key")  # our filters accept it


@pytest.mark.parametrize(
    ("tag", "ours"),
    [
        ("secure.$1.$TAG[1]", "secure.$1.$TAG[1]"),
        ("$TAG.copy", "$TAG.copy"),
        ("ns.$kubernetes['namespace_name'].app", "ns.${kubernetes.namespace_name}.app"),
    ],
)
def test_rewrite_tag_templates(tag: str, ours: str) -> None:
    from agent.convert.mapping import Mapper
    from agent.convert.model import FluentBitConfig

    assert Mapper(FluentBitConfig("x")).template(tag) == ours


def test_nested_include_found_beside_the_main_file(tmp_path: Path) -> None:
    """conf.d/inputs.conf includes outputs.conf that lives beside the main file: found there
    when it is not beside the including file."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "fluent-bit.conf").write_text("@INCLUDE conf.d/*.conf\n")
    (tmp_path / "conf.d" / "inputs.conf").write_text(
        "@INCLUDE outputs.conf\n[INPUT]\n    Name syslog\n    Mode udp\n    Tag a\n"
    )
    (tmp_path / "outputs.conf").write_text("[OUTPUT]\n    Name null\n    Match a\n")
    (tmp_path / "out").mkdir()
    status, _, stderr, config = convert(tmp_path / "fluent-bit.conf", tmp_path / "out")
    assert status == 0, stderr
    assert config["outputs"] == [{"type": "null", "match": "a"}]


def test_unwritable_output_is_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "fb.conf"
    source.write_text(
        "[INPUT]\n    Name syslog\n    Mode udp\n[OUTPUT]\n    Name null\n    Match *\n"
    )
    done = subprocess.run(
        agent_command("convert", str(source), "-o", str(tmp_path / "missing" / "agent.toml")),
        env=agent_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "convert: cannot write" in done.stderr and "Traceback" not in done.stderr


def test_lower_case_environment_variables_keep_their_meaning(tmp_path: Path) -> None:
    """fluent-bit reads ${node_ip} from the environment; for the agent a lower-case ${name} is a
    record field, so it is written ${node_ip:-} (the variable, or empty as in fluent-bit)."""
    source = tmp_path / "fb.conf"
    source.write_text(
        "@SET region=eu-west-1\n"
        "[INPUT]\n    Name syslog\n    Mode udp\n    Listen ${node_ip}\n    Port 5140\n"
        "[OUTPUT]\n    Name s3\n    Match *\n    bucket ${BUCKET}\n    region ${region}\n"
    )
    (tmp_path / "out").mkdir()
    status, _, stderr, config = convert(source, tmp_path / "out")
    assert status == 0, stderr
    assert config["inputs"][0]["listen"] == "${node_ip:-}:5140"
    assert config["outputs"][0]["bucket"] == "${BUCKET}"
    assert config["outputs"][0]["region"] == "eu-west-1"  # @SET
    assert "note: fb.conf:5: ${node_ip} (an environment variable) becomes ${node_ip:-}" in stderr
    done = check_config(tmp_path / "out" / "agent.toml", "--no-environment", node_ip="127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert "udp 127.0.0.1:5140" in done.stdout


def test_stdout_date_key_is_listed(tmp_path: Path) -> None:
    source = tmp_path / "fb.conf"
    source.write_text(
        "[INPUT]\n    Name syslog\n    Mode udp\n"
        "[OUTPUT]\n    Name stdout\n    Match *\n    Format json_lines\n"
        "    json_date_key ts\n"
    )
    (tmp_path / "out").mkdir()
    status, _, stderr, config = convert(source, tmp_path / "out")
    assert status == 3
    assert "not translated: fb.conf:8: json_date_key ts: records keep their time field" in stderr
    assert config["outputs"] == [{"type": "stdout", "match": "*"}]


def test_what_the_syslog_and_tail_inputs_cannot_take(tmp_path: Path) -> None:
    """A custom syslog parser, a unix mode without Path, a built-in multiline parser the agent
    lacks (java): each listed with its line; the file is still valid."""
    (tmp_path / "parsers.conf").write_text(
        "[PARSER]\n    Name my-syslog\n    Format regex\n    Regex ^(?<message>.*)$\n"
    )
    source = tmp_path / "fb.conf"
    source.write_text(
        "[SERVICE]\n    Parsers_File parsers.conf\n"
        "[INPUT]\n    Name syslog\n    Mode udp\n    Parser my-syslog\n    Tag a\n"
        "[INPUT]\n    Name syslog\n    Mode unix_tcp\n    Tag b\n"
        "[INPUT]\n    Name tail\n    Path /var/log/app/*.log\n    Tag app\n"
        "    multiline.parser java\n"
        "[OUTPUT]\n    Name null\n    Match *\n"
    )
    (tmp_path / "out").mkdir()
    status, text, stderr, config = convert(source, tmp_path / "out")
    assert status == 3
    assert "not translated: fb.conf:6: Parser my-syslog: the syslog input parses" in stderr
    assert "not translated: fb.conf:8: [INPUT] syslog: a unix mode without Path" in stderr
    assert "not translated: fb.conf:16: multiline parser java: built-in fluent-bit" in stderr
    a, b, tail = config["inputs"]
    assert "format" not in a  # auto
    assert b["mode"] == "unix_stream" and b["path"] == "/tmp/fluent-bit.sock"
    assert tail["paths"] == ["/var/log/app/*.log"] and tail["tag"] == "app"
    if has_input("tail"):
        check(tmp_path / "out")
    else:
        assert 'type = "tail"' in text
