"""Every shipped example config passes `python -m agent --check` (with the environment its
comments ask for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, check_config

EXAMPLES = sorted((REPO / "examples").glob("*.toml"))
ENV = {"S3_BUCKET": "audit-logs", "ES_PASSWORD": "secret", "ES_HOST": "https://es.example:9200"}


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "local.toml",
        "s3.toml",
        "elasticsearch.toml",
        "s3-and-elasticsearch.toml",
        "containerd.toml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_check(path: Path) -> None:
    result = check_config(path, **ENV)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "NO OUTPUT" not in result.stdout
