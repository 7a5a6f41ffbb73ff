"""`kubectl port-forward` for a container without a network: 127.0.0.1:PORT → its port.

The containers the tests run have no network at all (`--network none`: only loopback), as
closed as a pod can be; this machine lets tests talk to 127.0.0.1 only, so a bridge network
could not be reached anyway. Like the kubelet's port-forward, each connection is opened inside
the container's network namespace (a socket made by a thread that has entered it with
setns(2); the socket stays in that namespace) and bytes are copied both ways. Needs root.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def connect_inside(pid: int, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` in the network namespace of process `pid`."""
    made: dict[str, socket.socket | BaseException] = {}

    def enter_and_connect() -> None:
        try:
            namespace = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(namespace, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the container's network")
            finally:
                os.close(namespace)
            made["socket"] = socket.create_connection(("127.0.0.1", port), timeout=10)
        except BaseException as exc:  # handed to the caller's thread
            made["socket"] = exc

    thread = threading.Thread(target=enter_and_connect)  # the thread ends in that namespace
    thread.start()
    thread.join()
    result = made["socket"]
    if isinstance(result, BaseException):
        raise result
    result.settimeout(None)
    return result


@contextlib.contextmanager
def port_forward(pid: int, port: int) -> Iterator[int]:
    """Forward a free port on 127.0.0.1 to `port` inside `pid`'s network; yields the local port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so that the accepting thread sees `stop`
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=_bridge, args=(client, pid, port), daemon=True).start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()


def _bridge(client: socket.socket, pid: int, port: int) -> None:
    with client:
        try:
            upstream = connect_inside(pid, port)
        except OSError:
            return
        with upstream:
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
