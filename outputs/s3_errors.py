"""Sorting S3 failures into retryable and fatal, with a metrics kind and whether the object
may have been stored anyway (which decides if the journal must check before regrouping)."""

from __future__ import annotations

import msgspec

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
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccountProblem",
        "InvalidObjectState",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "KMS.AccessDeniedException",
    }
)


class Failure(msgspec.Struct, frozen=True):
    kind: str
    """Label of output_s3_errors_total: throttled, server, timeout, network, credentials,
    denied, no_bucket, client, unexpected."""
    retryable: bool
    reason: str
    maybe_stored: bool
    """False when S3 answered with an error or the connection never opened: the request did
    not write anything. True when the outcome is unknown (timeout, connection lost)."""
    unreachable: bool = False
    """The destination looks down (sets the output not ready)."""


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
        if code in THROTTLING_CODES or (status in (429, 503) and code in ("503", "Unknown")):
            return Failure("throttled", True, reason, False)
        if code == "NoSuchBucket":
            return Failure("no_bucket", False, reason, False, unreachable=True)
        if code in DENIED_CODES or status == 403:
            return Failure("denied", False, reason, False, unreachable=True)
        if status >= 500 or code in RETRYABLE_CODES or status in (408, 429):
            return Failure("server" if status >= 500 else "client", True, reason, False)
        return Failure("client", False, reason, False)
    if isinstance(error, be.ReadTimeoutError):
        return Failure("timeout", True, f"{operation} timed out: {error}", True, unreachable=True)
    if isinstance(error, be.EndpointConnectionError | be.ConnectTimeoutError):
        # The connection never opened: nothing was sent.
        return Failure("network", True, f"{operation}: {error}", False, unreachable=True)
    if isinstance(error, be.NoCredentialsError | be.CredentialRetrievalError):
        return Failure(
            "credentials", True, f"{operation}: {type(error).__name__}: {error}", False, True
        )
    if isinstance(error, be.PartialCredentialsError | be.NoRegionError | be.ParamValidationError):
        return Failure("client", False, f"{operation}: {error}", False)
    if isinstance(error, be.BotoCoreError | OSError | ConnectionError):
        return Failure("network", True, f"{operation}: {type(error).__name__}: {error}", True, True)
    try:
        import aiohttp

        if isinstance(error, aiohttp.ClientError):
            return Failure("network", True, f"{operation}: {type(error).__name__}: {error}", True)
    except ImportError:  # pragma: no cover - aiohttp comes with aiobotocore
        pass
    return Failure("unexpected", True, f"{operation}: {type(error).__name__}: {error}", True)
