"""A fault-injecting TCP proxy on loopback, between a client and a real
redis-server, steered at runtime.

How this works: a gevent ``StreamServer`` on 127.0.0.1 accepts each client
connection, opens one to the upstream server and runs two pump greenlets (one
per direction) that ``recv`` a chunk and ``sendall`` it on. Before forwarding
a chunk a pump applies the proxy's current faults:

* ``latency``: sleep that long per chunk (each direction stays in order);
* ``blackhole()``: every connection, old and new, forwards nothing either way
  (pumps hold their chunk and wait; the kernel buffers then fill, as in a
  network partition); ``heal()`` lets the held bytes through;
* ``strand()``: the connections open *now* go silent for good, as when the
  peer's host vanished without a reset (a half-open TCP connection); new
  connections work. Only the client's own dead-peer detection ends those;
* ``cut(after=n)``: each open connection forwards ``n`` more bytes from the
  server, then both of its sockets are closed: a reply cut in the middle;
* ``refuse()``: new connections are closed as soon as they are accepted;
* ``hold_replies()``: on the connections open *now*, the client's bytes
  reach the server and the server's wait in the proxy (a reply delayed on
  its way back) until ``heal()``; new connections are not held.

``heal()`` clears latency, blackhole and refusal (stranded connections stay
stranded). ``stop()`` closes every socket and ends every greenlet.
"""

from __future__ import annotations

import random
from typing import Any, List, Optional, Set

import gevent
from gevent import socket
from gevent.event import Event
from gevent.server import StreamServer

__all__ = ["ChaosProxy"]

CHUNK = 65536


class _Link:
    """One proxied connection: the client's socket, the server's, two pumps."""

    def __init__(self, proxy: "ChaosProxy", client: Any) -> None:
        self.proxy = proxy
        self.client = client
        self.server: Any = None
        self.closed = False
        #: Bytes still forwarded server->client before the link is cut.
        self.cut_after: Optional[int] = None
        #: Set while this link may forward; cleared for good by strand().
        self.alive = Event()
        self.alive.set()
        #: Server bytes wait while True (hold_replies).
        self.held = False
        self.pumps: List[gevent.Greenlet] = []

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()
        self.proxy.links.discard(self)

    def pump(self, src: Any, dst: Any, from_server: bool) -> None:
        proxy = self.proxy
        try:
            while not self.closed:
                data = src.recv(CHUNK)
                if not data:
                    break
                while not self.closed and not (proxy.flowing.is_set() and self.alive.is_set()
                                               and not (from_server and self.held)):
                    gevent.sleep(0.01)  # held: blackholed or stranded
                if self.closed:
                    break
                if proxy.latency:
                    gevent.sleep(proxy.latency)
                if from_server and self.cut_after is not None:
                    data = data[: self.cut_after]
                    self.cut_after -= len(data)
                    if data:
                        dst.sendall(data)
                    if self.cut_after <= 0:
                        proxy.cuts += 1
                        break
                    continue
                dst.sendall(data)
                proxy.forwarded += len(data)
        except OSError:
            pass
        finally:
            self.close()


class ChaosProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.links: Set[_Link] = set()
        self.latency = 0.0
        self.refusing = False
        #: Set while traffic flows; cleared by blackhole().
        self.flowing = Event()
        self.flowing.set()
        # Counters, for reports.
        self.accepted = self.refused = self.cuts = self.stranded = self.forwarded = 0
        self._handlers: Set[gevent.Greenlet] = set()
        self._server = StreamServer(("127.0.0.1", 0), self._handle)
        self._server.start()
        self.port: int = self._server.server_port

    def __repr__(self) -> str:
        return (
            f"<ChaosProxy :{self.port} -> :{self.upstream[1]} links={len(self.links)}"
            f" latency={self.latency} flowing={self.flowing.is_set()}"
            f" refusing={self.refusing}>"
        )

    # -- faults ------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, both directions, by ``seconds``."""
        self.latency = seconds

    def blackhole(self) -> None:
        """Forward nothing, on any connection, until ``heal()``."""
        self.flowing.clear()

    def strand(self) -> int:
        """Silence the open connections for good (never closed, never
        forwarding); new ones work. Returns how many were stranded."""
        links = list(self.links)
        for link in links:
            link.alive.clear()
        self.stranded += len(links)
        return len(links)

    def cut(self, after: int = 0) -> int:
        """Close each open connection after ``after`` more server bytes
        (0: now). Returns how many connections will be cut."""
        links = list(self.links)
        for link in links:
            if after <= 0:
                self.cuts += 1
                link.close()
            else:
                link.cut_after = after
        return len(links)

    def cut_randomly(self, rng: random.Random, most: int = 200) -> int:
        """``cut`` after a random number of bytes: usually mid-reply."""
        return self.cut(rng.randint(0, most))

    def hold_replies(self) -> int:
        """On the open connections, forward the client's bytes and hold the
        server's until ``heal()``. Returns how many are held."""
        links = list(self.links)
        for link in links:
            link.held = True
        return len(links)

    def refuse(self) -> None:
        """Close new connections as soon as they are accepted."""
        self.refusing = True

    def heal(self) -> None:
        """No latency, traffic flows, connections are accepted again."""
        self.latency = 0.0
        self.refusing = False
        self.flowing.set()
        for link in self.links:
            link.held = False

    # -- plumbing ------------------------------------------------------------

    def _handle(self, client: Any, address: Any) -> None:
        # The StreamServer runs this in a greenlet per accepted connection.
        current = gevent.getcurrent()
        self._handlers.add(current)
        link = _Link(self, client)
        try:
            if self.refusing:
                self.refused += 1
                return
            self.accepted += 1
            try:
                link.server = socket.create_connection(self.upstream, timeout=2)
                link.server.settimeout(None)
            except OSError:
                return
            self.links.add(link)
            link.pumps = [
                gevent.spawn(link.pump, client, link.server, False),
                gevent.spawn(link.pump, link.server, client, True),
            ]
            try:
                gevent.joinall(link.pumps)
            finally:
                gevent.killall(link.pumps)
        finally:
            link.close()
            self._handlers.discard(current)

    def stop(self) -> None:
        """Stop listening, close every connection, end every greenlet."""
        self._server.stop(timeout=0)
        self.flowing.set()
        for link in list(self.links):
            link.close()
        gevent.killall(list(self._handlers))  # each kills its pumps

    def __enter__(self) -> "ChaosProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
