"""The real audit subsystem: ``auditctl`` and a real ``auditd`` in the foreground (``-n``) with
its own config and log file under a directory of the caller's.

Shared by ``tests/test_auditd_real.py`` and ``bench/exec_cost.py``. Starting the daemon changes
kernel state (auditd enables auditing when it registers); ``AuditDaemon.stop`` puts ``enabled``
back to what it was before ``start``. Rules are the caller's to add and delete.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from tests.peers.base import Peer

AUDITD_CONF = """\
local_events = yes
write_logs = yes
log_file = {log}
log_group = root
log_format = ENRICHED
flush = {flush}
freq = {freq}
max_log_file = 100
num_logs = 2
priority_boost = {priority_boost}
name_format = NONE
max_log_file_action = {max_log_file_action}
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
transport = TCP
q_depth = 2000
overflow_action = IGNORE
max_restarts = 0
plugin_dir = {plugins}
end_of_event_timeout = 2
"""


def auditctl(*args: str) -> str:
    done = subprocess.run(["auditctl", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"auditctl {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def status() -> dict[str, str]:
    return dict(line.split(" ", 1) for line in auditctl("-s").splitlines() if " " in line)


def unavailable() -> str | None:
    """Why the audit subsystem cannot be used here, with the exact error; None if it can."""
    if os.geteuid() != 0:
        return "needs root for the audit netlink socket"
    for tool in ("auditd", "auditctl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install-system-deps.sh installs auditd)"
    try:
        state = status()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"audit subsystem unavailable: {exc}"
    if state.get("pid", "0") != "0":
        return f"another auditd (pid {state['pid']}) owns the audit log"
    return None


class AuditdExited(RuntimeError):
    """auditd exited right after starting (bad config, no audit support); says why."""


class AuditDaemon(Peer):
    """``auditd -n -c <directory>`` writing ``<directory>/audit.log``.

    The defaults are the tests' (every record synced, no priority boost); a benchmark passes the
    package's (``flush="INCREMENTAL_ASYNC"``, ``freq=50``, ``priority_boost=4``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        flush: str = "DATA",
        freq: int = 0,
        priority_boost: int = 0,
        max_log_file_action: str = "ROTATE",
    ) -> None:
        self.directory = directory
        self.log = directory / "audit.log"
        self.settings = {
            "flush": flush,
            "freq": freq,
            "priority_boost": priority_boost,
            "max_log_file_action": max_log_file_action,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.enabled_before: str | None = None
        self._output: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> AuditDaemon:
        """Starts auditd and waits until the kernel has it as the audit daemon. Raises
        ``AuditdExited`` (with auditd's own words) if it exits, RuntimeError if it does not
        register within 10 s; either way nothing is left running."""
        self.enabled_before = status().get("enabled", "0")
        plugins = self.directory / "plugins"
        plugins.mkdir(exist_ok=True)
        conf = self.directory / "auditd.conf"
        conf.write_text(AUDITD_CONF.format(log=self.log, plugins=plugins, **self.settings))
        conf.chmod(0o600)
        self._output = (self.directory / "auditd.out").open("wb")
        self.process = subprocess.Popen(
            ["auditd", "-n", "-c", str(self.directory)],
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(500):
                if status().get("pid") == str(self.process.pid):
                    return self
                if self.process.poll() is not None:
                    raise AuditdExited(self._why_exited())
                time.sleep(0.02)
            raise RuntimeError("auditd did not register with the kernel within 10 s")
        except BaseException:
            self.stop()
            raise

    def _why_exited(self) -> str:
        # -n reports errors to syslog only; -f (debug, events to stderr) says why on stderr.
        assert self.process is not None
        debug = subprocess.run(
            ["auditd", "-f", "-c", str(self.directory)], capture_output=True, text=True, timeout=10
        )
        said = [line for line in debug.stderr.splitlines() if "parser called" not in line]
        return f"auditd exited with {self.process.returncode}: {' / '.join(said[-3:])}"

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s), then ``auditctl -e`` as it was before ``start``."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None
            if self.enabled_before is not None:
                auditctl("-e", self.enabled_before)
                self.enabled_before = None
