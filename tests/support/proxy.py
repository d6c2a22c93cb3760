"""A TCP forwarder to a real service that a test can cut, restore, or make swallow replies.

Used to lose a connection (RabbitMQ's confirms, PostgreSQL's session) without stopping the
shared service. Every call returns at once: ``close()`` shuts the listener down, which wakes
the accepting thread (closing it alone does not, on Linux), so a test never waits on a join.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Proxy:
    """127.0.0.1:<port> -> ``target``.

    - ``hold`` set: what the service sends back is swallowed (the client never sees it).
    - ``cut()``: every open connection is dropped, and new ones refused until ``restore()``.
    - ``close()``: ``cut()``, then stop listening.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hold = threading.Event()
        self.up = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink, reply in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, reply), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, reply: bool) -> None:
        try:
            while data := source.recv(65536):
                if reply and self.hold.is_set():
                    continue  # swallowed
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
