"""A real rsyslogd started by a test, with its own config, work directory and input socket.

It never touches system paths: no /dev/log (imuxsock's system socket is off), no kernel log,
its pid file and spool live in the test's temporary directory. rsyslog reads from a UNIX socket
of its own (``input_socket``) that tests feed with ``logger``; the caller's ``snippet`` holds the
actions (typically forwarding to the input under test)::

    forward = '*.* action(type="omfwd" target="127.0.0.1" port="5514" protocol="udp")'
    with Rsyslog(tmp_path, forward) as peer:
        peer.log("hello")

Stopped with SIGTERM (rsyslog then drains its queues for a while), killed if it does not exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.peers.base import Peer

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
LOGGER = shutil.which("logger") or "/usr/bin/logger"

BASE_CONFIG = """\
global(workDirectory="{workdir}" parser.permitSlashInProgramName="on" maxMessageSize="256k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{input_socket}" UseSpecialParser="off" RateLimit.Interval="0"
      CreatePath="on")
"""


def available() -> bool:
    return os.path.exists(RSYSLOGD) and os.path.exists(LOGGER)


class Rsyslog(Peer):
    def __init__(self, directory: Path, snippet: str, name: str = "rsyslog") -> None:
        self.directory = Path(directory) / name
        self.workdir = self.directory / "work"
        self.config_file = self.directory / "rsyslog.conf"
        self.pid_file = self.directory / "rsyslogd.pid"
        self.log_file = self.directory / "rsyslogd.out"
        self.input_socket = self.directory / "in.sock"
        self.snippet = snippet
        self.process: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 20.0) -> Rsyslog:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = BASE_CONFIG.format(workdir=self.workdir, input_socket=self.input_socket)
        self.config_file.write_text(config + self.snippet + "\n")
        check = subprocess.run(
            [RSYSLOGD, "-N1", "-f", str(self.config_file)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"rsyslog config invalid:\n{check.stdout}{check.stderr}")
        with open(self.log_file, "wb") as out:
            self.process = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.config_file), "-i", str(self.pid_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.input_socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise RuntimeError(f"rsyslogd did not start:\n{output}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except ProcessLookupError:
                pass

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ----------------------------------------------------------------------- feeding

    def log(self, *messages: str, tag: str = "test", rfc5424: bool = False) -> None:
        """Send each message as one line through ``logger`` (one process for all)."""
        args = [LOGGER, "-u", str(self.input_socket), "-d", "-t", tag]
        if rfc5424:
            args.append("--rfc5424")
        subprocess.run(args, input="".join(m + "\n" for m in messages).encode(), check=True)
