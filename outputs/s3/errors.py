"""Sorting S3 failures into retryable and fatal, with a metrics kind and whether the object
may have been stored anyway (which decides if the journal must check before regrouping)."""

from __future__ import annotations

import msgspec

from common.redact import quote_body
from outputs.base import BlockedError, FatalError, OutputError, RetryableError

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "KMS.ThrottlingException",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "ExpiredTokenException",
        "TokenRefreshRequired",
        "InternalError",
        "OperationAborted",
        "ServiceUnavailable",
        "KMS.KMSInternalException",
    }
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidObjectState",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "InvalidSecurity",
        "ExpiredToken",
        "ExpiredTokenException",
        "TokenRefreshRequired",
    }
)


class Failure(msgspec.Struct, frozen=True):
    kind: str
    """Label of output_s3_errors_total: throttled, server, timeout, network, credentials,
    denied, kms, no_bucket, client, unexpected."""
    retryable: bool
    reason: str
    maybe_stored: bool
    """False when S3 answered with an error or the connection never opened: the request did
    not write anything. True when the outcome is unknown (timeout, connection lost)."""
    unreachable: bool = False
    """The destination looks down (sets the output not ready)."""
    cause: str = ""
    """Set when the failure is not about the data (``outputs.base.BLOCKED_CAUSES``: no_bucket,
    denied, credentials, kms): the agent keeps the records and retries for as long as it takes
    (the bucket may be created a minute later, IAM propagates slowly)."""


def classify(error: BaseException, operation: str) -> Failure:
    from botocore import exceptions as be

    if isinstance(error, TimeoutError):
        return Failure(
            "timeout", True, f"{operation} timed out (request_timeout)", True, unreachable=True
        )
    if isinstance(error, be.ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "Unknown"))
        message = str(info.get("Message", "")) or str(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if operation == "HeadBucket" and status == 404:
            code, message = "NoSuchBucket", "the bucket does not exist"
        reason = f"{operation}: {code} (HTTP {status}): {message}"
        reason = quote_body(reason)
        if code in THROTTLING_CODES or (status in (429, 503) and code in ("503", "Unknown")):
            return Failure("throttled", True, reason, False)
        if code == "NoSuchBucket":
            return Failure("no_bucket", True, reason, False, unreachable=True, cause="no_bucket")
        if code.startswith("KMS") and "Internal" not in code:
            return Failure("kms", True, reason, False, unreachable=True, cause="kms")
        if code in CREDENTIAL_CODES:
            return Failure("credentials", True, reason, False, True, cause="credentials")
        if code in DENIED_CODES or status == 403:
            if "kms" in message.lower():
                return Failure("kms", True, reason, False, unreachable=True, cause="kms")
            return Failure("denied", True, reason, False, unreachable=True, cause="denied")
        if status >= 500 or code in RETRYABLE_CODES or status in (408, 429):
            return Failure("server" if status >= 500 else "client", True, reason, False)
        return Failure("client", False, reason, False)
    if isinstance(error, be.ReadTimeoutError):
        return Failure("timeout", True, quote_body(f"{operation} timed out: {error}"), True, True)
    if isinstance(error, be.EndpointConnectionError | be.ConnectTimeoutError):
        # The connection never opened: nothing was sent.
        return Failure("network", True, quote_body(f"{operation}: {error}"), False, True)
    if isinstance(
        error, be.NoCredentialsError | be.CredentialRetrievalError | be.PartialCredentialsError
    ):
        text = quote_body(f"{operation}: {type(error).__name__}: {error}")
        return Failure("credentials", True, text, False, True, cause="credentials")
    if isinstance(error, be.NoRegionError | be.ParamValidationError):
        return Failure("client", False, quote_body(f"{operation}: {error}"), False)
    if isinstance(error, be.BotoCoreError | OSError | ConnectionError):
        text = quote_body(f"{operation}: {type(error).__name__}: {error}")
        return Failure("network", True, text, True, True)
    try:
        import aiohttp

        if isinstance(error, aiohttp.ClientError):
            text = quote_body(f"{operation}: {type(error).__name__}: {error}")
            return Failure("network", True, text, True)
    except ImportError:  # pragma: no cover - aiohttp comes with aiobotocore
        pass
    text = quote_body(f"{operation}: {type(error).__name__}: {error}")
    return Failure("unexpected", True, text, True)


class S3Failure(Exception):
    """A failed S3 call, classified; ``output_error`` turns it into what ``send`` raises."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure

    def output_error(self, bucket: str, key: str = "") -> OutputError:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        message = f"{where}: {self.failure.reason}"
        if self.failure.cause:
            return BlockedError(message, self.failure.cause)
        return RetryableError(message) if self.failure.retryable else FatalError(message)
