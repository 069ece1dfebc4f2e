"""The TLS client context of an output that talks HTTPS: the CA bundle to trust, an optional
client certificate, and whether the server's certificate and name are checked. Errors are
``ValueError`` naming the key, as config errors are."""

from __future__ import annotations

import ssl


def client_context(
    ca_file: str | None,
    verify: bool,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """A context trusting ``ca_file`` (unset: the system's CAs), presenting ``cert_file``."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {ca_file!r}: {exc}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cert_file/key_file: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
