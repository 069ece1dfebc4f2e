"""A config error is always a config error: through the real ``python -m agent`` process, at
start and with ``--check``, every problem prints ``config error: FILE: key.path: problem`` and
exits 2, never a traceback; every problem of the file at once; ``--check`` catches what the run
would hit on this machine (missing optional packages, an unwritable data_dir, a taken port)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.conftest import REPO, agent_command, agent_env, free_port, wait_for

VALID = """
[agent]
data_dir = "{data}"
{agent}
[buffer]
type = "memory"
{buffer}
[[inputs]]
type = "syslog"
mode = "udp"
listen = "127.0.0.1:0"
{inputs}
{filters}
[[outputs]]
type = "null"
match = "*"
{outputs}
"""


def config_text(tmp_path: Path, **sections: str) -> str:
    values = {"agent": "", "buffer": "", "inputs": "", "filters": "", "outputs": ""}
    values.update(sections)
    return VALID.format(data=tmp_path / "data", **values)


def agent(tmp_path: Path, text: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m agent --config FILE ARGS``; a run that passes its checks would go on, so
    the timeout fails the test (the cases here must all be refused at start)."""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return subprocess.run(
        agent_command("--config", str(path), *args),
        env=agent_env(**env),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def assert_config_errors(
    result: subprocess.CompletedProcess[str], path: Path, *expected: str
) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "config error: " in line]
    for text in expected:
        assert any(f"config error: {path}: {text}" in line for line in lines), (text, lines)


# Each case: the config's sections, and what the error says after "FILE: ".
CASES = {
    "max_bytes below chunk_bytes": (
        {"buffer": 'max_bytes = "1MiB"\nchunk_bytes = "2MiB"'},
        "buffer.max_bytes: must be at least chunk_bytes (2097152 bytes), got 1048576 bytes",
    ),
    "chunk_bytes 0": ({"buffer": "chunk_bytes = 0"}, "buffer.chunk_bytes: must be at least 1"),
    "max_bytes 0": ({"buffer": "max_bytes = 0"}, "buffer.max_bytes: must be at least chunk_bytes"),
    "flush_interval 0": (
        {"buffer": "flush_interval = 0"},
        "buffer.flush_interval: must be more than 0 seconds",
    ),
    "output match and match_regex": (
        {"outputs": 'match_regex = "syslog.*"'},
        "outputs[0].match_regex: give match or match_regex, not both",
    ),
    "invalid filter match_regex": (
        {"filters": '[[filters]]\ntype = "grep"\nmatch_regex = "("\nregex = [["message", "x"]]'},
        "filters[0].match_regex: invalid regular expression '('",
    ),
    "http_listen nonsense": (
        {"agent": 'http_listen = "nonsense"'},
        'agent.http_listen: expected "host:port"',
    ),
    "http_listen port 99999": (
        {"agent": 'http_listen = "127.0.0.1:99999"'},
        'agent.http_listen: expected "host:port"',
    ),
    "retry_max below retry_base": (
        {"outputs": 'retry_base = "10s"\nretry_max = "1s"'},
        "outputs[0].retry_max: must be at least retry_base (10s), got 1s",
    ),
    "enum lists the allowed values": (
        {"inputs": 'format = "RFC5424"'},
        "inputs[0].format: 'RFC5424' is not allowed; expected one of 'auto', 'rfc3164', 'rfc5424'",
    ),
    "typo gets the nearest key": (
        {"buffer": "chunk_byte = 1024"},
        "buffer.chunk_byte: unknown key; did you mean chunk_bytes?",
    ),
}


@pytest.mark.parametrize("mode", ["--check", "start"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_config_problem_is_a_config_error(tmp_path: Path, case: str, mode: str) -> None:
    sections, expected = CASES[case]
    result = agent(
        tmp_path, config_text(tmp_path, **sections), *([mode] if mode != "start" else [])
    )
    assert_config_errors(result, tmp_path / "agent.toml", expected)


def test_invalid_output_match_regex_alone(tmp_path: Path) -> None:
    text = config_text(tmp_path, outputs='match_regex = "("').replace('match = "*"\n', "")
    for args in (["--check"], []):
        result = agent(tmp_path, text, *args)
        assert_config_errors(
            result,
            tmp_path / "agent.toml",
            "outputs[0].match_regex: invalid regular expression '(': missing ), unterminated",
        )


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("s3://audit-logs", 'give the bare bucket name, without "s3://"'),
        ("Audit-Logs", "bucket names are lower case"),
        ("audit_logs", "bucket names cannot contain underscores"),
    ],
)
def test_bucket_names_s3_refuses(tmp_path: Path, bucket: str, problem: str) -> None:
    outputs = f'[[outputs]]\ntype = "s3"\nbucket = "{bucket}"\nmatch = "*"'
    result = agent(tmp_path, config_text(tmp_path, outputs=outputs), "--check")
    assert_config_errors(result, tmp_path / "agent.toml", f"outputs[1].bucket: {problem}")


def test_every_problem_of_the_file_at_once(tmp_path: Path) -> None:
    text = (
        config_text(
            tmp_path,
            agent='http_listen = "nonsense"',
            buffer="chunk_byte = 1\nmax_bytes = 0",
            inputs="tag_patern = 'x'",
            outputs="workers = 0",
        ).replace('mode = "udp"', 'mode = "UDP"')
        + '\n[[input]]\ntype = "syslog"\n'
    )
    result = agent(tmp_path, text, "--check")
    assert_config_errors(
        result,
        tmp_path / "agent.toml",
        "input: unknown key; did you mean [[inputs]]?",
        "agent.http_listen: ",
        "buffer.chunk_byte: unknown key; did you mean chunk_bytes?",
        "buffer.max_bytes: must be at least chunk_bytes",
        "inputs[0].tag_patern: unknown key; did you mean tag_pattern?",
        "inputs[0].mode: 'UDP' is not allowed; expected one of 'relp', 'tcp', 'udp', "
        "'unix_dgram', 'unix_stream'",
        "outputs[0].workers: workers must be at least 1",
    )
    assert result.stderr.strip().endswith("7 config errors")


# ------------------------------------------------------------------ what the run would hit


@pytest.fixture
def without_package(tmp_path: Path) -> Iterator[Callable[..., dict[str, str]]]:
    """An environment in which ``import NAME`` fails as it does when NAME is not installed."""

    def env(*names: str) -> dict[str, str]:
        shim = tmp_path / "shim"
        shim.mkdir(exist_ok=True)
        lines = ["import sys"] + [f"sys.modules[{name!r}] = None" for name in names]
        (shim / "sitecustomize.py").write_text("\n".join(lines) + "\n")
        return {"PYTHONPATH": f"{REPO}{os.pathsep}{shim}"}

    yield env


@pytest.mark.parametrize(
    ("output", "package", "extra"),
    [
        ('type = "s3"\nbucket = "audit-logs"', "aiobotocore", "s3"),
        ('type = "elasticsearch"\nhosts = "http://127.0.0.1:9200"', "aiohttp", "elasticsearch"),
    ],
)
@pytest.mark.parametrize("mode", ["--check", "start"])
def test_missing_optional_package_names_the_pip_extra(
    tmp_path: Path,
    without_package: Callable[..., dict[str, str]],
    output: str,
    package: str,
    extra: str,
    mode: str,
) -> None:
    outputs = f"[[outputs]]\n{output}\nmatch = '*'"
    result = agent(
        tmp_path,
        config_text(tmp_path, outputs=outputs),
        *([mode] if mode != "start" else []),
        **without_package(package),
    )
    assert_config_errors(
        result,
        tmp_path / "agent.toml",
        f"outputs[1]: the {extra if extra == 's3' else 'elasticsearch'} output needs the "
        f"{package} package",
    )
    assert f"pip install 'container-audit-agent[{extra}]'" in result.stderr


@pytest.mark.parametrize("mode", ["--check", "start"])
def test_unwritable_data_dir(tmp_path: Path, mode: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"
    text = config_text(tmp_path).replace(str(tmp_path / "data"), str(data_dir))
    text = text.replace('type = "memory"', 'type = "disk"')
    result = agent(tmp_path, text, *([mode] if mode != "start" else []))
    assert_config_errors(
        result,
        tmp_path / "agent.toml",
        f"agent.data_dir: {data_dir}: cannot be created: {tmp_path / 'a-file'} is not a directory",
    )


@pytest.mark.parametrize("mode", ["--check", "start"])
def test_kubernetes_filter_without_an_api_server_is_a_config_error(
    tmp_path: Path, mode: str
) -> None:
    """Outside a pod (no KUBERNETES_SERVICE_HOST) and without kube_url or kubeconfig the filter
    has no API server to watch: said before the run, not as a traceback from the filter's start."""
    text = config_text(
        tmp_path, filters='[[filters]]\ntype = "kubernetes"\nmatch = "*"\nnode_name = "n1"'
    )
    env = {"KUBERNETES_SERVICE_HOST": ""}
    result = agent(tmp_path, text, *([mode] if mode != "start" else []), **env)
    assert_config_errors(
        result,
        tmp_path / "agent.toml",
        "filters[0].kube_url: filter kubernetes.0: kube_url is empty and KUBERNETES_SERVICE_HOST "
        "is not set",
    )
    missing = tmp_path / "none"
    with_kubeconfig = text.replace(
        'node_name = "n1"', f'node_name = "n1"\nkubeconfig = "{missing}"'
    )
    result = agent(tmp_path, with_kubeconfig, *([mode] if mode != "start" else []), **env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"config error: {tmp_path / 'agent.toml'}: filters[0]" in result.stderr
    assert str(missing) in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_data_dir_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        text = config_text(tmp_path).replace(str(tmp_path / "data"), str(locked))
        result = agent(tmp_path, text, "--check")
        assert_config_errors(result, tmp_path / "agent.toml", f"agent.data_dir: {locked}: not")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("kind", ["tcp", "udp", "http"])
@pytest.mark.parametrize("mode", ["--check", "start"])
def test_taken_port_names_the_input_and_address(tmp_path: Path, kind: str, mode: str) -> None:
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as holder:
        holder.bind(("127.0.0.1", 0))
        if sock_type == socket.SOCK_STREAM:
            holder.listen()
        port = holder.getsockname()[1]
        address = f"127.0.0.1:{port}"
        if kind == "http":
            text = config_text(tmp_path, agent=f'http_listen = "{address}"')
            expected = f"agent.http_listen: the HTTP server cannot listen on {address}: "
        else:
            text = config_text(tmp_path).replace(
                'mode = "udp"\nlisten = "127.0.0.1:0"', f'mode = "{kind}"\nlisten = "{address}"'
            )
            expected = f"inputs[0].listen: input syslog.0 cannot listen on {address} ({kind}): "
        result = agent(tmp_path, text, *([mode] if mode != "start" else []))
    assert_config_errors(
        result, tmp_path / "agent.toml", expected + "the address is already in use"
    )


def test_free_ports_pass_the_check(tmp_path: Path) -> None:
    tcp, http = free_port(), free_port()
    text = config_text(tmp_path, agent=f'http_listen = "127.0.0.1:{http}"').replace(
        'mode = "udp"\nlisten = "127.0.0.1:0"', f'mode = "tcp"\nlisten = "127.0.0.1:{tcp}"'
    )
    result = agent(tmp_path, text, "--check")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()  # --check creates nothing


def test_check_into_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """``--check | head -1``: the reader may be gone before the agent writes."""
    path = tmp_path / "agent.toml"
    path.write_text(config_text(tmp_path))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the agent writes a byte
    try:
        result = subprocess.run(
            agent_command("--config", str(path), "--check"),
            env=agent_env(),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_check_of_the_embedded_default_leaves_no_temporary_directory(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run(
        agent_command("--check"),
        env=agent_env(TMPDIR=str(tmp)),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "config OK: <embedded default config>" in result.stdout
    assert list(tmp.iterdir()) == []


# ----------------------------------------------------------------------- --no-environment


def test_no_environment_accepts_placeholders_as_they_are(tmp_path: Path) -> None:
    outputs = (
        '[[outputs]]\ntype = "s3"\nbucket = "${BUCKET_NOT_SET}"\nworkers = "${WORKERS_NOT_SET}"\n'
        'match = "*"\n[[outputs]]\ntype = "elasticsearch"\nhosts = ["${ES_URL_NOT_SET}"]\n'
        'user = "${ES_USERNAME_NOT_SET}"\npassword = "${ES_PASSWORD_NOT_SET}"\nmatch = "*"'
    )
    inputs = 'tag = "${TAG_NOT_SET:-syslog}"'
    text = config_text(tmp_path, outputs=outputs, inputs=inputs).replace(
        'listen = "127.0.0.1:0"', 'listen = "${LISTEN_NOT_SET}"'
    )
    path = tmp_path / "agent.toml"
    plain = agent(tmp_path, text, "--check")
    assert_config_errors(
        plain,
        path,
        "outputs[1].bucket: environment variable BUCKET_NOT_SET is not set",
        "inputs[0].listen: environment variable LISTEN_NOT_SET is not set",
    )
    assert "expected" not in plain.stderr  # only the unset variables, no knock-on errors
    result = agent(tmp_path, text, "--check", "--no-environment")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config structure OK (--no-environment): {path}")
    assert "not checked: outputs[1].bucket = '${BUCKET_NOT_SET}'" in result.stdout
    assert "not checked: inputs[0].listen = '${LISTEN_NOT_SET}'" in result.stdout
    assert "tag='syslog'" in result.stdout  # a default is taken as written


def test_no_environment_still_reports_structure_errors(tmp_path: Path) -> None:
    text = config_text(tmp_path, buffer="chunk_byte = 1", outputs='workers = "${W_NOT_SET}"')
    result = agent(tmp_path, text, "--check", "--no-environment")
    assert_config_errors(
        result, tmp_path / "agent.toml", "buffer.chunk_byte: unknown key; did you mean chunk_bytes?"
    )


def test_no_environment_needs_check(tmp_path: Path) -> None:
    result = agent(tmp_path, config_text(tmp_path), "--no-environment")
    assert result.returncode == 2
    assert "--no-environment only goes with --check" in result.stderr


# ------------------------------------------------------------------------------------ reload


def test_reload_with_a_config_error_keeps_the_running_agent(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """The cases that crashed a running agent on SIGHUP (traceback, exit 1): each is logged as
    a config error and the running pipeline goes on."""
    text = (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[buffer]\ntype = "memory"\n'
        '[[inputs]]\ntype = "syslog"\nmode = "udp"\nlisten = "127.0.0.1:0"\n'
        '[[outputs]]\ntype = "null"\nmatch = "*"\n'
    )
    agent = start_agent(text)
    valid = agent.config_path.read_text()
    bad = {
        "buffer.max_bytes: must be at least chunk_bytes": valid.replace(
            '[buffer]\ntype = "memory"', '[buffer]\ntype = "memory"\nmax_bytes = 10'
        ),
        "outputs[0].match_regex: invalid regular expression": valid.replace(
            'match = "*"', 'match_regex = "("'
        ),
        "outputs[0].match_regex: give match or match_regex, not both": valid.replace(
            'match = "*"', 'match = "*"\nmatch_regex = "x"'
        ),
    }
    for count, (expected, config) in enumerate(bad.items(), start=1):
        agent.config_path.write_text(config)
        os.kill(agent.pid, signal.SIGHUP)
        # wait_for returns before the loop moves on: the lambda sees this count (B023).
        wait_for(lambda: agent.log().count("config not reloaded") >= count)  # noqa: B023
        assert f"{agent.config_path}: {expected}" in agent.log()
        assert "Traceback" not in agent.log()
        assert agent.ready()
    assert agent.stop() == 0
