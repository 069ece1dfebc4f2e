"""The S3 output: ``config`` (the struct and S3's limits), ``output`` (the running output),
``body`` (compressing a write), ``calls`` (S3 calls under deadlines), ``errors`` (sorting
failures), ``keys`` (object keys), ``journal`` (which chunks went into which object)."""

from outputs.s3.config import S3Config
from outputs.s3.output import S3Output

__all__ = ["S3Config", "S3Output"]
