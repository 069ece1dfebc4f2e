"""syslog over TCP -> ``python -m agent`` (disk buffer) -> the Elasticsearch output -> a real
OpenSearch node: every record arrives once, searchable, including across a node outage."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, syslog_input
from tests.conftest import free_port, wait_for
from tests.peers.opensearch import OpenSearchNode, opensearch_fixture  # noqa: F401

pytestmark = [
    pytest.mark.opensearch,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("agent.inputs.syslog") is None,
        reason="the syslog input is not in this build yet",
    ),
]


def lines(start: int, stop: int) -> bytes:
    return b"".join(
        b"<86>1 2026-11-29T21:00:00.250Z node-7 sshd %d - - accepted key seq=%d\n" % (n, n)
        for n in range(start, stop)
    )


def config(tmp_path: Path, port: int, url: str, index: str) -> str:
    output = {
        "type": "elasticsearch",
        "match": "*",
        "hosts": [url],
        "index": f"{index}-${{tag}}-%Y.%m.%d",
        "id_mode": "hash",
        "include_tag_key": True,
        "retry_base": "100ms",
        "retry_max": "1s",
        "retry_limit": "unlimited",
    }
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="syslog"),
        agent={"grace_period": "5s"},
        buffer={"type": "disk"},
        outputs=[output],
    )


def test_syslog_to_opensearch_through_the_agent(
    tmp_path: Path, start_agent: Callable[..., AgentProcess], opensearch: OpenSearchNode
) -> None:
    port = free_port()
    agent = start_agent(config(tmp_path, port, opensearch.url, "e2e"))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(lines(0, 3000))
    index = "e2e-syslog-2026.11.29"
    wait_for(lambda: opensearch.count(index) >= 3000, timeout=120, interval=0.5)

    # the node goes away; records keep coming into the disk buffer; the node comes back
    opensearch.stop()
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(lines(3000, 5000))
        wait_for(lambda: agent.metric("output_retries_total") >= 1, timeout=60)
    finally:
        opensearch.start()
    wait_for(lambda: agent.metric("buffer_chunks") == 0, timeout=180, interval=0.5)

    assert opensearch.count(index) == 5000  # every record once: no loss, no duplicate
    hit = opensearch.search(index, query={"match_phrase": {"message": "seq=4321"}})
    assert len(hit) == 1
    source = hit[0]["_source"]
    assert source["@timestamp"] == "2026-11-29T21:00:00.250Z"
    assert source["host"] == "node-7" and source["tag"] == "syslog"
    assert source["message"].endswith("seq=4321")
    assert agent.metric("output_es_items_total", outcome="accepted") >= 5000
