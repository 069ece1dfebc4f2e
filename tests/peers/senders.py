"""Senders that run in a thread against a real agent: numbered lines over TCP (as a plain syslog
sender: what it wrote before a reset is gone), over RELP (as omrelp: a window of commands, each
answered only once committed; unanswered ones are resent on the next session) and over UDP.

Each counts what it did (``sessions`` is the number of connections it had to open: 1 when the
agent never closed one on it)."""

from __future__ import annotations

import socket
import threading
import time

from tests.numbered import numbered_datagram, numbered_line

OFFERS = b"relp_version=0\nrelp_software=test-sender\ncommands=syslog"


class _Sender(threading.Thread):
    def __init__(self, port: int, rate: int, batch: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rate = rate
        self.batch = batch
        self.stopping = threading.Event()
        self.sent = 0
        """Numbers 0 .. sent-1 were handed to the agent."""
        self.sessions = 0
        self.errors: list[BaseException] = []

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test
            self.errors.append(error)

    def _run(self) -> None:
        raise NotImplementedError

    def _pace(self, started: float) -> None:
        ahead = self.sent / self.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=20)
                self.sessions += 1
                return conn
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class TcpSender(_Sender):
    """Newline-framed numbered lines; on a reset it reconnects and goes on with the next
    number, as rsyslog's omfwd does: whatever the agent had not read is lost."""

    def __init__(self, port: int, rate: int = 2000, batch: int = 50, app: str = "tcp") -> None:
        super().__init__(port, rate, batch)
        self.app = app
        self.resets = 0

    def _run(self) -> None:
        conn = self._connect()
        started = time.monotonic()
        while not self.stopping.is_set():
            data = b"".join(
                numbered_line(n, self.app) for n in range(self.sent, self.sent + self.batch)
            )
            try:
                conn.sendall(data)
            except OSError:
                self.resets += 1
                conn.close()
                conn = self._connect()
            self.sent += self.batch  # handed over (or lost with the connection)
            self._pace(started)
        conn.close()


class UdpSender(_Sender):
    def __init__(self, port: int, rate: int = 500, batch: int = 10) -> None:
        super().__init__(port, rate, batch)

    def _run(self) -> None:
        started = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stopping.is_set():
                for n in range(self.sent, self.sent + self.batch):
                    sock.sendto(numbered_datagram(n), ("127.0.0.1", self.port))
                self.sent += self.batch
                self._pace(started)


class RelpSender(_Sender):
    """``batch`` commands in flight, then their answers; a session that ends (serverclose,
    reset) is reopened and every unanswered command sent again."""

    def __init__(self, port: int, rate: int = 1000, batch: int = 100, app: str = "relp") -> None:
        super().__init__(port, rate, batch)
        self.app = app
        self.serverclose = 0
        self.answered = 0
        self._txnr = 0
        self._buffer = b""

    def _run(self) -> None:
        conn = self._open()
        started = time.monotonic()
        while not self.stopping.is_set():
            numbers = list(range(self.sent, self.sent + self.batch))
            while True:
                try:
                    self._exchange(conn, numbers)
                    break
                except (OSError, EOFError):
                    conn.close()
                    conn = self._open()
            self.sent += self.batch
            self.answered += len(numbers)
            self._pace(started)
        try:
            self._command(conn, b"close", b"")
            self._answers(conn, 1)
        except (OSError, EOFError):
            pass
        conn.close()

    def _open(self) -> socket.socket:
        conn = self._connect()
        self._buffer = b""
        self._txnr = 0
        self._command(conn, b"open", OFFERS)
        self._answers(conn, 1)
        return conn

    def _command(self, conn: socket.socket, name: bytes, data: bytes) -> None:
        self._txnr += 1
        conn.sendall(b"%d %s %d %s\n" % (self._txnr, name, len(data), data))

    def _exchange(self, conn: socket.socket, numbers: list[int]) -> None:
        frames = []
        for n in numbers:
            self._txnr += 1
            line = numbered_line(n, self.app).rstrip(b"\n")
            frames.append(b"%d syslog %d %s\n" % (self._txnr, len(line), line))
        conn.sendall(b"".join(frames))
        self._answers(conn, len(numbers))

    def _answers(self, conn: socket.socket, count: int) -> None:
        """Read ``count`` answers; EOFError if the session ends first."""
        while count:
            head, sep, _ = self._buffer.partition(b"\n")
            parts = head.split(b" ", 3)
            if sep and len(parts) >= 3 and parts[2].isdigit():
                size = int(parts[2])
                start = len(parts[0]) + len(parts[1]) + len(parts[2]) + 3
                if size == 0 or len(self._buffer) >= start + size + 1:
                    end = start + size + 1 if size else len(head) + 1
                    self._buffer = self._buffer[end:]
                    if parts[1] == b"serverclose":
                        self.serverclose += 1
                        raise EOFError("serverclose")
                    if parts[1] == b"rsp":
                        if not (len(parts) == 4 and parts[3].startswith(b"200")) and size:
                            raise AssertionError(f"RELP answer {head!r}")
                        count -= 1
                    continue
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
