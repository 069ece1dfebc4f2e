"""A real writer: Debian's containerd runs a container through its CRI plugin (driven by crictl,
as kubelet drives it) and writes its output to the pod's log file exactly as on a node; the agent
tails that file. Skipped where containerd, runc, crictl or a static busybox are missing or the
test is not root (scripts/install-system-deps.sh installs them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.conftest import read_ndjson
from tests.peers import containerd
from tests.test_input_tail_e2e import seqs, tail_config, wait_all

pytestmark = pytest.mark.skipif(
    not containerd.available(),
    reason="needs root, containerd, runc, ctr, crictl and a static busybox",
)

LINES = 3000
# sh in the container: numbered lines on stdout, every tenth on stderr, and every 500th line
# 40,960 characters long (containerd cuts it into 16 KiB P pieces and an F piece).
SCRIPT = f"""
long=xxxxxxxxxx
for k in 1 2 3 4 5 6 7 8 9 10 11 12; do long=$long$long; done
i=0
while [ $i -lt {LINES} ]; do
  if [ $((i % 500)) -eq 0 ]; then echo "long $long seq=$i end"
  elif [ $((i % 10)) -eq 0 ]; then echo "  err $i	tab seq=$i end" >&2
  else echo "out $i seq=$i end"; fi
  i=$((i + 1))
done
sleep 3600
"""


def test_containerd_writes_what_the_agent_reads(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    with containerd.Containerd(tmp_path / "containerd") as runtime:
        agent = start_agent(tail_config(tmp_path, [str(runtime.logs / "*" / "*" / "*.log")]))
        log = runtime.run("shop", "writer", "7f3e-uid", "app", SCRIPT)
        counts = wait_all(tmp_path / "out.ndjson", LINES, timeout=120)
        assert counts == dict.fromkeys(range(LINES), 1)
        raw = log.read_bytes()
        assert b" stdout P " in raw, "containerd wrote no partial line"
        records = {
            int(str(r["message"]).rsplit("seq=", 1)[1].split()[0]): r
            for r in read_ndjson(tmp_path / "out.ndjson")
        }
        assert records[500]["message"] == "long " + "x" * 40960 + " seq=500 end"
        assert records[10] == {
            "time": records[10]["time"],
            "stream": "stderr",
            "message": "  err 10\ttab seq=10 end",
            "kubernetes": {
                "namespace_name": "shop",
                "pod_name": "writer",
                "pod_id": "7f3e-uid",
                "container_name": "app",
            },
        }
        assert str(records[10]["time"]).endswith("Z")
        assert agent.metric("parse_errors_total") == 0
        assert seqs(read_ndjson(tmp_path / "out.ndjson")) == counts
