"""Running a benchmark the way the smoke tests do: ``python -m bench.NAME ... --json OUT`` from
the repository, with the agent's environment; it must exit 0 and its JSON is returned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, agent_env


def run_bench(
    module: str, out: Path, *args: str, smoke: bool = True, timeout: float = 600
) -> tuple[dict[str, Any], str]:
    """The JSON ``module`` wrote to ``out`` and what it printed; ``--smoke`` unless told not."""
    command = [sys.executable, "-m", module, *(["--smoke"] if smoke else []), "--json", str(out)]
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=agent_env(),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result, done.stdout
