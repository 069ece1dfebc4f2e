"""What a valid config would still hit when it runs on this machine, checked before it does:
``--check`` reports it, and the agent checks it at start so that it fails as a config error
(exit 2) rather than half-started.

* ``data_dir`` must be a directory this user can write (or create);
* every address an input or the HTTP server listens on must be free, every UNIX socket path
  free to take;
* a ``kubernetes`` filter must find its API server: ``kube_url``, a readable ``kubeconfig``, or
  the ``KUBERNETES_SERVICE_HOST`` a pod gets.

Nothing is left behind: a probe file is removed, probe sockets are closed without listening.
Not for a reload: the running agent holds its own addresses.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from agent.http import split_host_port
from agent.inputs.syslog import parse_listen


def preflight(config: Any, source: str) -> list[str]:
    """Problems as "file: key.path: what is wrong", one per item; empty when all is well."""
    problems: list[str] = []
    where = _data_dir_problem(config.agent.data_dir)
    if where:
        problems.append(f"{source}: agent.data_dir: {config.agent.data_dir}: {where}")
    for position, item in enumerate(config.inputs):
        mode = getattr(item, "mode", None)
        listen = getattr(item, "listen", None)
        path = getattr(item, "path", None)
        if listen and mode in ("udp", "tcp", "relp"):
            host, port = parse_listen(listen)
            kind = socket.SOCK_DGRAM if mode == "udp" else socket.SOCK_STREAM
            taken = _address_problem(host, port, kind)
            if taken:
                problems.append(
                    f"{source}: inputs[{position}].listen: input {item.name} cannot listen on "
                    f"{listen} ({mode}): {taken}"
                )
        elif path and mode in ("unix_dgram", "unix_stream"):
            kind = socket.SOCK_DGRAM if mode == "unix_dgram" else socket.SOCK_STREAM
            taken = _socket_path_problem(path, kind)
            if taken:
                problems.append(
                    f"{source}: inputs[{position}].path: input {item.name} cannot listen on "
                    f"{path}: {taken}"
                )
    if config.agent.http_listen:
        host, port = split_host_port(config.agent.http_listen)
        taken = _address_problem(host, port, socket.SOCK_STREAM)
        if taken:
            problems.append(
                f"{source}: agent.http_listen: the HTTP server cannot listen on "
                f"{config.agent.http_listen}: {taken}"
            )
    for position, item in enumerate(config.filters):
        if item.__struct_config__.tag != "kubernetes":
            continue
        if item.kubeconfig:
            if not os.access(item.kubeconfig, os.R_OK):
                problems.append(
                    f"{source}: filters[{position}].kubeconfig: filter {item.name}: "
                    f"{item.kubeconfig} is not a readable file"
                )
        elif not item.kube_url and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            problems.append(
                f"{source}: filters[{position}].kube_url: filter {item.name}: kube_url is empty "
                "and KUBERNETES_SERVICE_HOST is not set (the agent is not running in a pod): set "
                "kube_url, or kubeconfig to run outside a cluster"
            )
    return problems


def _data_dir_problem(data_dir: str) -> str | None:
    path = Path(data_dir)
    if path.exists():
        if not path.is_dir():
            return "exists and is not a directory"
        try:
            handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        except OSError as exc:
            return f"not writable by this user (uid {os.getuid()}): {exc.strerror}"
        os.close(handle)
        os.unlink(probe)
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"does not exist and cannot be created: {parent} is not writable by this user "
            f"(uid {os.getuid()})"
        )
    return None


def _address_problem(host: str, port: int, kind: socket.SocketKind) -> str | None:
    """Bind as the input will (stream sockets with SO_REUSEADDR, as asyncio's servers), then
    close without listening."""
    if port == 0:
        return None
    if kind == socket.SOCK_DGRAM:  # the UDP input binds one socket, the family from the host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        addresses: list[Any] = [(family, kind, 0, "", (host, port))]
    else:
        try:
            addresses = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
        except OSError as exc:
            return f"cannot resolve {host!r}: {exc}"
    for family, type_, proto, _, address in addresses:
        with socket.socket(family, type_, proto) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "the address is already in use (another process listens there)"
                return exc.strerror or str(exc)
    return None


def _socket_path_problem(path: str, kind: socket.SocketKind) -> str | None:
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        parent = Path(path).parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return f"{parent} is not a directory this user (uid {os.getuid()}) can write"
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISSOCK(status.st_mode):
        return "the path exists and is not a socket"
    with socket.socket(socket.AF_UNIX, kind) as probe:
        try:
            probe.connect(path)
        except OSError:
            return None  # stale: the input replaces it
    return "another process listens on this socket"
