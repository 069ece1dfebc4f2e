"""A minimal RELP client over a plain socket, for tests that speak the protocol by hand
(the agent's RELP server is also tested against rsyslog's omrelp)."""

from __future__ import annotations

import socket

OFFERS = b"relp_version=0\nrelp_software=test-client\ncommands=syslog"


def command(txnr: int, name: str, data: bytes = b"") -> bytes:
    if not data:
        return b"%d %s 0\n" % (txnr, name.encode())
    return b"%d %s %d %s\n" % (txnr, name.encode(), len(data), data)


class Client:
    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: the window is agreed then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes, bytes]:
        """One ``TXNR rsp DATALEN DATA`` frame."""
        while True:
            parts = self.buffer.split(b" ", 3)
            if len(parts) >= 3:
                txnr, name = parts[0], parts[1]
                size_text = parts[2].split(b"\n", 1)[0]
                if size_text.isdigit() and (len(parts) == 4 or b"\n" in parts[2]):
                    size = int(size_text)
                    start = len(txnr) + len(name) + len(size_text) + 3
                    if size == 0 and b"\n" in self.buffer:
                        self.buffer = self.buffer[self.buffer.index(b"\n") + 1 :]
                        return int(txnr), name, b""
                    if len(self.buffer) >= start + size + 1:
                        data = self.buffer[start : start + size]
                        assert self.buffer[start + size : start + size + 1] == b"\n"
                        self.buffer = self.buffer[start + size + 1 :]
                        return int(txnr), name, data
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            return not self.buffer and not self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return not self.buffer
        finally:
            self.sock.settimeout(20)

    def open(self) -> bytes:
        self.send(command(1, "open", OFFERS))
        txnr, name, data = self.read_frame()
        assert (txnr, name) == (1, b"rsp")
        return data

    def close(self) -> None:
        self.sock.close()
