"""The ``http`` output: POSTs batches of records as NDJSON (or a JSON array) to any HTTP
endpoint, gzip optional, as fluent-bit's ``http`` output does."""

from outputs.http.config import HttpConfig
from outputs.http.output import HttpOutput

__all__ = ["HttpConfig", "HttpOutput"]
