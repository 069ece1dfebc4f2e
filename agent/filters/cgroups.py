"""Which container a host process runs in, from ``/proc/<pid>/cgroup``.

The agent runs with ``hostPID`` (audit records carry host pids) and reads the process's cgroup
path, where every runtime puts the container ID:

- containerd (CRI, systemd driver):
  ``.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope``
- containerd / CRI-O with the cgroupfs driver: ``/kubepods/burstable/pod<uid>/<id>``
- CRI-O (systemd driver): ``.../crio-<id>.scope`` (its ``crio-conmon-<id>.scope`` is the monitor,
  not the container)
- Docker: ``/system.slice/docker-<id>.scope`` or ``/docker/<id>``; Podman ``libpod-<id>.scope``

for cgroup v2 (one ``0::`` line) and v1 (a line per hierarchy). Inside a cgroup namespace the
path is relative (``/../../kubepods...``); nested containers (kind) give several IDs, and the
innermost (last) one is the container's.

Short-lived processes are often gone when their audit record is read: the parent (the shell or
the runtime's shim child that ran them) usually is not, and answers for them. Answers are cached
by pid and start time (``/proc/<pid>/stat``), so a reused pid is never taken for the old process.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

CONTAINER_IN_PATH = re.compile(
    r"(?:^|/)(?:cri-containerd-|crio-|docker-|libpod-)?([0-9a-f]{64})(?:\.scope)?(?=/|$)"
)


def container_id_of(cgroup_text: str) -> str | None:
    """The container ID in a ``/proc/<pid>/cgroup`` file's text, or None for a host process."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        found = CONTAINER_IN_PATH.findall(path)
        if found:
            return str(found[-1])
    return None


def start_time_of(stat_text: str) -> int | None:
    """Field 22 (start time in clock ticks since boot) of ``/proc/<pid>/stat``; the command
    name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'."""
    end = stat_text.rfind(")")
    if end < 0:
        return None
    fields = stat_text[end + 2 :].split(" ")
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


class ContainerResolver:
    """``resolve(pid, ppid)`` -> (container ID or None, how): ``how`` is ``pid``, ``ppid``
    (the process was gone, its parent answered), ``exited`` (gone, answered from what an
    earlier event of the same pid found) or ``gone`` (nothing to ask: not attributed).

    Reads ``<proc_root>/<pid>/stat`` and, on a cache miss, ``<proc_root>/<pid>/cgroup``."""

    def __init__(self, proc_root: str = "/proc", max_entries: int = 65536) -> None:
        self.proc_root = proc_root.rstrip("/") or "/"
        self.max_entries = max_entries
        self._by_start: OrderedDict[tuple[int, int], str | None] = OrderedDict()
        self._last: OrderedDict[int, str | None] = OrderedDict()
        """The last answer per pid: for an event read after its process exited."""

    def _read(self, name: str) -> str | None:
        try:
            with open(f"{self.proc_root}/{name}", encoding="utf-8", errors="replace") as file:
                return file.read()
        except OSError:
            return None

    def _remember(self, table: OrderedDict[Any, str | None], key: Any, value: str | None) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > self.max_entries:
            table.popitem(last=False)

    def _live(self, pid: int) -> tuple[bool, str | None]:
        stat = self._read(f"{pid}/stat")
        if stat is None:
            return False, None
        start = start_time_of(stat)
        key = (pid, start if start is not None else -1)
        if key in self._by_start:
            answer = self._by_start[key]
        else:
            cgroup = self._read(f"{pid}/cgroup")
            if cgroup is None:  # exited between the two reads
                return False, None
            answer = container_id_of(cgroup)
            self._remember(self._by_start, key, answer)
        self._remember(self._last, pid, answer)
        return True, answer

    def resolve(self, pid: int | None, ppid: int | None) -> tuple[str | None, str]:
        if pid is not None and pid > 0:
            alive, answer = self._live(pid)
            if alive:
                return answer, "pid"
        if ppid is not None and ppid > 1:
            alive, answer = self._live(ppid)
            if alive:
                return answer, "ppid"
        if pid is not None and pid in self._last:
            return self._last[pid], "exited"
        if ppid is not None and ppid in self._last:
            return self._last[ppid], "exited"
        return None, "gone"
