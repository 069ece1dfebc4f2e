"""S3 output config and key templates: no peer needed."""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
from typing import Any

import msgspec
import pytest

from common.units import config_dec_hook
from outputs.compression import compress, decompress, new_compressor
from outputs.s3 import S3Config
from outputs.s3.keys import KeyTemplate
from tests.conftest import REPO


def load(**values: Any) -> S3Config:
    return msgspec.convert({"type": "s3", **values}, S3Config, dec_hook=config_dec_hook)


def test_defaults() -> None:
    config = load(bucket="logs")
    assert config.key_format == "logs/${tag}/%Y/%m/%d/%H/${host}-${chunk_id}.ndjson${ext}"
    assert config.total_file_size == 50 * 1024 * 1024
    assert config.upload_timeout == 60.0
    assert config.upload_chunk_size == 8 * 1024 * 1024
    assert config.compression == "gzip"
    assert config.request_timeout == 30.0
    assert config.healthcheck is True


def test_units_are_parsed() -> None:
    config = load(bucket="bkt", total_file_size="1MiB", upload_timeout="500ms")
    assert config.total_file_size == 1024 * 1024
    assert config.upload_timeout == 0.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"key_format": "logs/${tag}/${host}.gz"}, "${chunk_id}"),
        ({"key_format": "logs/${tag}/${chunk_id}.gz"}, "${host}"),
        ({"key_format": "logs/${nope}/${host}-${chunk_id}"}, "unknown placeholder ${nope}"),
        ({"upload_chunk_size": "1MiB"}, "upload_chunk_size must be between 5MiB"),
        ({"sse_kms_key_id": "arn:aws:kms:key"}, 'sse = "aws:kms"'),
        ({"storage_class": "COLD"}, "storage_class must be one of"),
        ({"canned_acl": "everyone"}, "canned_acl must be one of"),
        ({"compression": "brotli"}, "compression"),
        ({"compression_level": 42}, "compression_level for gzip"),
        ({"external_id": "x"}, "external_id needs role_arn"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"bucket": ""}, "bucket must not be empty"),
    ],
)
def test_bad_config_names_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        load(**{"bucket": "logs", **values})


def test_prefix_may_hold_the_host() -> None:
    config = load(bucket="bkt", prefix="cluster-1/${host}", key_format="${tag}/${chunk_id}")
    assert config.template == "cluster-1/${host}/${tag}/${chunk_id}"


def test_zstd_missing_is_a_clear_config_error() -> None:
    code = (
        "import sys; sys.modules['zstandard'] = None\n"
        "import msgspec\n"
        "from outputs.s3 import S3Config\n"
        "try:\n"
        "    msgspec.convert({'type': 's3', 'bucket': 'bkt', 'compression': 'zstd'}, S3Config)\n"
        "except msgspec.ValidationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "needs the zstandard package" in out.stdout
    assert out.stdout.startswith('compression = "zstd"')


def test_config_imports_without_aiobotocore() -> None:
    code = (
        "import sys; sys.modules['aiobotocore'] = None; sys.modules['botocore'] = None\n"
        "import msgspec\n"
        "from outputs.s3 import S3Config, S3Output\n"
        "print(msgspec.convert({'type': 's3', 'bucket': 'bkt'}, S3Config).bucket)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "bkt"


def test_key_template_renders_placeholders_and_time() -> None:
    template = KeyTemplate(
        "k8s/${tag[0]}/${tag[1]}/${tag}/%Y-%m-%d/%H/${host}-${chunk_id}-${index}.ndjson${ext}",
        ext=".gz",
        host="node/1",
    )
    created = calendar.timegm((2024, 3, 9, 17, 45, 0))
    group = template.group("docker.nginx web", created)
    key = template.key(group, "1700000000000-000000000007", 12)
    assert key == (
        "k8s/docker/nginx_web/docker.nginx_web/2024-03-09/17/"
        "node_1-1700000000000-000000000007-000012.ndjson.gz"
    )
    # Same tag and hour -> same group, whatever the chunk; another hour -> another group.
    assert template.group("docker.nginx web", created + 60) == group
    assert template.group("docker.nginx web", created + 3600) != group
    assert template.static_prefix() == "k8s/"
    assert template.pattern().match(key)
    other = KeyTemplate(template.template, ext=".gz", host="node-2")
    assert not other.pattern().match(key)


def test_key_template_missing_tag_part_and_unsafe_values() -> None:
    template = KeyTemplate("${tag[3]}/${host}/${chunk_id}", ext="", host="..")
    key = template.key(template.group("a.b", 0.0), "x", 0)
    assert key == "_/__/x"


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_streamed_compression_round_trips(kind: str) -> None:
    pieces = [b'{"a":%d}\n' % i * 100 for i in range(50)]
    compressor = new_compressor(kind)
    out = b"".join(compressor.compress(p) for p in pieces) + compressor.finish()
    assert decompress(kind, out) == b"".join(pieces)
    assert decompress(kind, compress(kind, b"x" * 1000)) == b"x" * 1000
