"""Credentials never leave: the redaction helpers that logs, dead-letter reasons, metrics labels
and ``--check`` output go through."""

from __future__ import annotations

import pytest

from common.redact import MAX_QUOTED_BYTES, quote_body, redact_text, redact_url, split_credentials


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("POST http://elastic:hunter2@es:9200/_bulk failed", "hunter2"),
        ("https://AKIDUSER:pw%40x@minio.local/bucket", "pw%40x"),
        ("Authorization: Basic ZWxhc3RpYzpodW50ZXIy\r\nHost: es", "ZWxhc3RpYzpodW50ZXIy"),
        ("authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ('{"headers":{"Authorization":"ApiKey a2V5OnNlY3JldA=="}}', "a2V5OnNlY3JldA=="),
        ("{'X-Amz-Security-Token': 'FwoGZXIvYXdzEJr'}", "FwoGZXIvYXdzEJr"),
        ("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101&X-Amz-Signature=abc", "AKIAIOSFOD"),
        ("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101&X-Amz-Signature=abc123", "abc123"),
        ("Cookie: session=0123456789abcdef", "0123456789abcdef"),
        ("x-api-key: k-123456", "k-123456"),
        ("password=hunter2&user=elastic", "hunter2"),
        ('{"password": "hunter2"}', "hunter2"),
        ("<Error><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId></Error>", "AKIAEXAMPLE"),
        ("<StringToSign>AWS4-HMAC-SHA256\n2024</StringToSign>", "AWS4-HMAC-SHA256\n2024"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert "[redacted]" in redacted


def test_ordinary_errors_stay_readable() -> None:
    text = (
        "status 400 mapper_parsing_exception: failed to parse field [pid] of type [long] "
        '(caused by illegal_argument_exception: For input string: "abc")'
    )
    assert redact_text(text) == text
    assert redact_text("PutObject: ExpiredToken (HTTP 400): The provided token has expired") == (
        "PutObject: ExpiredToken (HTTP 400): The provided token has expired"
    )
    assert redact_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200"


def test_quoted_bodies_are_capped_and_say_how_much_was_cut() -> None:
    body = b"Authorization: Basic c2VjcmV0\n" + b"y" * 10_000
    quoted = quote_body(body)
    assert "c2VjcmV0" not in quoted
    assert len(quoted) < MAX_QUOTED_BYTES + 40
    assert quoted.endswith(f"... ({len(body) - MAX_QUOTED_BYTES} more)")
    assert quote_body(b"\xff\xfe bad utf-8") == "\ufffd\ufffd bad utf-8"


def test_credentials_are_split_out_of_a_url() -> None:
    assert split_credentials("http://us%40er:p%3Ass@host:9200/prefix") == (
        "http://host:9200/prefix",
        "us@er",
        "p:ss",
    )
    assert split_credentials("https://user@host") == ("https://host", "user", None)
    assert split_credentials("http://host:9200") == ("http://host:9200", None, None)
