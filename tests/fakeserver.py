"""A scripted fake Redis server on loopback, for what a real server cannot do:
garbage bytes, half replies, stalls, replies nobody asked for.

Each accepted connection runs ``script(peer)`` in its own greenlet, where
``peer`` reads whole RESP commands and writes raw bytes. Clients talking to it
should skip the handshake (``protocol=2, lib_name=None, lib_version=None``).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import gevent
from gevent.server import StreamServer


class Peer:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n + 2 :]
        return out

    def command(self) -> List[bytes]:
        """Read one command (a RESP array of bulk strings)."""
        header = self._line()
        assert header[:1] == b"*", header
        return [self._exact(int(self._line()[1:])) for _ in range(int(header[1:]))]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class FakeServer:
    def __init__(self, script: Callable[[Peer], None]) -> None:
        self.script = script
        self.peers: List[Peer] = []
        self.handlers: List[Any] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port: int = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        peer = Peer(sock)
        self.peers.append(peer)
        self.handlers.append(gevent.getcurrent())
        try:
            self.script(peer)
        except (EOFError, OSError):
            pass
        finally:
            sock.close()

    def client_kwargs(self, **extra: Any) -> dict:  # type: ignore[type-arg]
        kwargs = dict(
            port=self.port, host="127.0.0.1", protocol=2, lib_name=None, lib_version=None, retry=None
        )
        kwargs.update(extra)
        return kwargs

    def stop(self) -> None:
        self.server.stop(timeout=0)
        gevent.killall(self.handlers)
        for peer in self.peers:
            peer.close()

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: Optional[BaseException]) -> None:
        self.stop()


def echo_ok_forever(peer: Peer) -> None:
    """Answer every command with +OK."""
    while True:
        peer.command()
        peer.send(b"+OK\r\n")
