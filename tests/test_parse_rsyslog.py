"""Lines forwarded by a real rsyslogd with each of its forwarding templates parse correctly.

The test starts rsyslogd with its own config: it receives Docker-shaped lines on UDP and
``logger`` lines on a UNIX socket, and forwards every message with omfwd over UDP to four
sockets of this test, one per template (RSYSLOG_TraditionalForwardFormat, RSYSLOG_ForwardFormat,
RSYSLOG_SyslogProtocol23Format, RSYSLOG_FileFormat). Each datagram is one frame.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parsers.syslog import SyslogParser
from parsers.timeutil import rfc3339_to_epoch
from tests.conftest import free_port

pytestmark = pytest.mark.rsyslog

TEMPLATES = (
    "RSYSLOG_TraditionalForwardFormat",
    "RSYSLOG_ForwardFormat",
    "RSYSLOG_SyslogProtocol23Format",
    "RSYSLOG_FileFormat",
)
CONTAINER = "5a6e1c8e6f3b"


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[int, Path, dict[str, socket.socket]]]:
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(rsyslogd):
        pytest.skip("rsyslogd is not installed")
    sinks: dict[str, socket.socket] = {}
    for template in TEMPLATES:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        sinks[template] = sink
    udp_port = free_port(socket.SOCK_DGRAM)
    unix_path = tmp_path / "log.sock"
    actions = "\n".join(
        f'action(type="omfwd" target="127.0.0.1" protocol="udp" '
        f'port="{sink.getsockname()[1]}" template="{template}")'
        for template, sink in sinks.items()
    )
    config = tmp_path / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{tmp_path}")\n'
        'module(load="imudp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{udp_port}")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imuxsock" Socket="{unix_path}")\n'
        f"{actions}\n"
    )
    process = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslogd.pid")],
        env={**os.environ, "TZ": "UTC"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield udp_port, unix_path, sinks
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for sink in sinks.values():
            sink.close()


def _drain(sink: socket.socket) -> list[bytes]:
    frames = []
    while True:
        try:
            frames.append(sink.recv(65536))
        except TimeoutError:
            return frames


def _collect(sinks: dict[str, socket.socket], marker: str, count: int) -> dict[str, list[bytes]]:
    """Datagrams holding ``marker``, per template, until each template delivered ``count``."""
    got: dict[str, list[bytes]] = {template: [] for template in sinks}
    deadline = time.monotonic() + 20
    while any(len(frames) < count for frames in got.values()):
        assert time.monotonic() < deadline, f"rsyslog forwarded only {got}"
        for template, sink in sinks.items():
            got[template] += [f for f in _drain(sink) if marker.encode() in f]
    return got


def test_rsyslog_forwarding_templates(
    rsyslog: tuple[int, Path, dict[str, socket.socket]],
) -> None:
    udp_port, unix_path, sinks = rsyslog
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # rsyslogd needs a moment to bind: probe until the probe comes back through every template
    deadline = time.monotonic() + 20
    while True:
        sender.sendto(b"<13>probe: ready", ("127.0.0.1", udp_port))
        if all(any(b"ready" in f for f in _drain(sink)) for sink in sinks.values()):
            break
        assert time.monotonic() < deadline, "rsyslogd did not start forwarding"
    time.sleep(0.5)
    for sink in sinks.values():
        _drain(sink)

    now = time.time()
    whole = time.gmtime(now)
    classic = (
        time.strftime("%b ", whole) + f"{whole.tm_mday:2d}" + time.strftime(" %H:%M:%S", whole)
    )
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", whole)
    # Docker's default syslog-format (no hostname) for stdout, rfc5424micro for stderr
    sender.sendto(f"<30>{classic} {CONTAINER}[2731]: stdout line".encode(), ("127.0.0.1", udp_port))
    sender.sendto(
        f"<27>1 {iso}.12345Z node-1 {CONTAINER} 2731 {CONTAINER} - stderr line".encode(),
        ("127.0.0.1", udp_port),
    )
    sender.close()
    subprocess.run(
        ["logger", "-u", str(unix_path), "-t", "myapp", "--id=4242", "logger line"],
        check=True,
        timeout=10,
    )
    frames = _collect(sinks, " line", 3)

    parser = SyslogParser()
    for template, datagrams in frames.items():
        records = {
            record["message"].strip(): record for record in parser.parse_batch(datagrams, now)
        }
        assert set(records) == {"stdout line", "stderr line", "logger line"}, (template, records)
        stdout, stderr, logged = (
            records["stdout line"],
            records["stderr line"],
            records["logger line"],
        )
        for record in (stdout, stderr, logged):
            assert "parse_error" not in record, (template, record)
            assert record["host"], (template, record)
        for record in (stdout, stderr):
            assert record["ident"] == record["container_id"] == CONTAINER, (template, record)
            assert record["pid"] == "2731", (template, record)
        assert logged["ident"] == "myapp" and logged["pid"] == "4242", (template, logged)
        assert stdout["time"] == iso + "Z", (template, stdout)
        if template == "RSYSLOG_TraditionalForwardFormat":
            assert stderr["time"] == iso + "Z"  # low-precision stamps lose the fraction
        else:
            assert stderr["time"] == iso + ".12345Z", (template, stderr)
        if template == "RSYSLOG_FileFormat":  # a file format: no PRI, read as user.notice
            assert stdout["pri"] == stderr["pri"] == 13
        else:
            assert stdout["facility"] == "daemon" and stdout["severity"] == "info"
            assert stderr["facility"] == "daemon" and stderr["severity"] == "err"
            assert logged["facility"] == "user" and logged["severity"] == "notice"
    assert parser.parse_errors == 0


# --- the parser reads odd real lines the way rsyslog's own parsers do ----------------------------

RSYSLOG_FIELDS = """
template(name="fields" type="list" option.jsonf="on") {
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="programname" name="programname" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
"""


@pytest.fixture
def rsyslog_fields(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """rsyslogd receiving on UDP and writing each message's parsed fields as a JSON line."""
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(rsyslogd):
        pytest.skip("rsyslogd is not installed")
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "fields.ndjson"
    config = tmp_path / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{tmp_path}")\n'
        'module(load="imudp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{port}")\n'
        f"{RSYSLOG_FIELDS}\n"
        f'action(type="omfile" file="{out}" template="fields")\n'
    )
    process = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslogd.pid")],
        env={**os.environ, "TZ": "UTC"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield port, out
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_odd_real_lines_parse_as_rsyslog_parses_them(rsyslog_fields: tuple[int, Path]) -> None:
    """Upper-case months, a space after the PRI, a lone hostname after the stamp and spaces
    after "=" in structured data: rsyslogd 8.2302 (pmrfc3164, pmrfc5424) reads these lines, and
    the parser must give the same hostname, tag, pid, message, time and structured data."""
    port, out = rsyslog_fields
    now = time.time()
    whole = time.gmtime(now)  # this month: rsyslog and the parser infer the same year
    day_time = f"{whole.tm_mday:2d}" + time.strftime(" %H:%M:%S", whole)
    month = time.strftime("%b", whole)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", whole)
    lines = [
        f"<13>{month} {day_time} node-1 app[3]: control line",
        f"<13>{month.upper()} {day_time} node-1 app[3]: upper-case month",
        f"<13>{month.lower()} {day_time} node-1 app: lower-case month",
        f"<38> {month} {day_time} node-2 sshd[9]: a space after the PRI",
        f"<38> {month.upper()} {day_time} node-2 sshd[9]: both",
        f"<13>{month} {day_time} lonely-host",
        f"<13>{month} {day_time} lonely-host ",
        f"<13>{month} {day_time} app[12]",
        f'<13>1 {iso}.5Z h a 7 - [x@1 eventSource= "Application" k="v"] sd spacing',
        f'<13>1 {iso}Z h a - - [x@1 eventSource=  "Application"][y@2 k= "v w"] two elements',
    ]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 20
    with sender:
        while len(got) < len(lines):  # rsyslogd binds after a moment: resend until all came
            assert time.monotonic() < deadline, f"rsyslogd wrote only {got}"
            for line in lines:
                if line not in got:
                    sender.sendto(line.encode(), ("127.0.0.1", port))
            time.sleep(0.3)
            if out.exists():
                for text in out.read_text().splitlines():
                    fields = json.loads(text)
                    got[fields["raw"]] = fields
    parser = SyslogParser()
    for line in lines:
        theirs = got[line]
        ours = parser.parse(line.encode(), now)
        assert "parse_error" not in ours, (line, ours)
        if "host" in ours:
            assert ours["host"] == theirs["hostname"], (line, ours, theirs)
        assert ours.get("ident", "") == theirs["programname"], (line, ours, theirs)
        assert ours.get("pid", "-") == theirs["procid"], (line, ours, theirs)
        assert ours["message"] == theirs["msg"].removeprefix(" "), (line, ours, theirs)
        assert rfc3339_to_epoch(ours["time"]) == rfc3339_to_epoch(theirs["time"]), (line, ours)
        assert ours.get("extradata", "-") == theirs["sd"], (line, ours, theirs)
    assert parser.parse_errors == 0
