"""Every shipped example config passes `python -m agent --check` (with the environment its
comments ask for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, check_config

EXAMPLES = sorted((REPO / "examples").glob("*.toml"))
ENV = {
    "S3_BUCKET": "audit-logs",
    "ES_PASSWORD": "secret",
    "ES_URL": "https://es.example:9200",
    "COLLECTOR_URL": "https://logs.example.com/ingest",
    "COLLECTOR_PASSWORD": "secret",
}


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "local.toml",
        "s3.toml",
        "elasticsearch.toml",
        "s3-and-elasticsearch.toml",
        "containerd.toml",
        "http.toml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_check(path: Path) -> None:
    """With every variable its comments ask for; --no-environment: whether this machine has
    its data_dir and ports free is not the example's business."""
    result = check_config(path, "--no-environment", **ENV)
    assert result.returncode == 0, result.stderr
    assert "config structure OK" in result.stdout
    assert "not checked" not in result.stdout  # every variable was given, every value checked
    assert "NO OUTPUT" not in result.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_structure_passes_check_without_its_secrets(path: Path) -> None:
    """What a CI job without the secrets can check (``--check --no-environment``)."""
    result = check_config(path, "--no-environment")
    assert result.returncode == 0, result.stderr
    assert "config structure OK (--no-environment)" in result.stdout
