"""Types every component shares (durations, sizes, the metrics protocol, tag selection,
redaction). A leaf: it imports nothing from ``agent``, ``parsers`` or ``outputs``."""
