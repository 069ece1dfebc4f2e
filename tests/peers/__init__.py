"""Real peers that tests start and stop themselves (rsyslogd), and the in-process harness that
runs an input on its own event loop thread so tests can drive real senders synchronously."""
