"""Client-side caching: the races that matter.

Exact interleavings (a scripted server on loopback, since a real one produces
them only by chance): an invalidation between a read's reply and its PTTL,
before its reply, a null one while it flies, and the invalidation of the
client's own write arriving after the write's reply. Then on real servers: a
write from another client landing while a read's reply is on its way, a cut
connection and a restarted server.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Tuple

import gevent
import pytest
import redis

import geredis
from geredis.cache import CacheConfig

from ..chaosproxy import ChaosProxy
from ..conftest import RedisServer
from ..fakeserver import FakeServer, Peer
from .conftest import make_cached, round_trip, settle

HELLO = b"%1\r\n+server\r\n+redis\r\n"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _invalidate(*keys: bytes) -> bytes:
    if not keys:
        return b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    return b">2\r\n$10\r\ninvalidate\r\n*%d\r\n%s" % (len(keys), b"".join(map(_bulk, keys)))


class Script:
    """A fake tracking server: answers the handshake, then hands each
    command to ``steps`` in turn (one function per expected command)."""

    def __init__(self, *steps: Callable[[Peer, List[bytes]], None]) -> None:
        self.steps = list(steps)
        self.seen: List[List[bytes]] = []

    def __call__(self, peer: Peer) -> None:
        assert peer.command()[0] == b"HELLO"
        peer.send(HELLO)
        assert peer.command()[:3] == [b"CLIENT", b"TRACKING", b"ON"]
        peer.send(b"+OK\r\n")
        for step in self.steps:
            command = peer.command()
            self.seen.append(command)
            step(peer, command)
        while True:  # then nothing: a command now would hang until the test ends
            self.seen.append(peer.command())


def send(*frames: bytes) -> Callable[[Peer, List[bytes]], None]:
    """A step that answers with ``frames``, in one write (one segment)."""
    def step(peer: Peer, command: List[bytes]) -> None:
        peer.send(b"".join(frames))
    return step


def _client(server: FakeServer, **extra: Any) -> geredis.Redis:
    return geredis.Redis(port=server.port, host="127.0.0.1", protocol=3, lib_name=None,
                         lib_version=None, retry=None, socket_timeout=5,
                         cache_config=CacheConfig(**extra))


def test_invalidation_between_reply_and_pttl_keeps_the_value_out() -> None:
    script = Script(
        send(_bulk(b"old"), _invalidate(b"k")), send(b":-1\r\n"),  # GET k, PTTL k
        send(_bulk(b"new")), send(b":-1\r\n"),
    )
    with FakeServer(script) as server, _client(server) as r:
        assert r.get("k") == b"old"  # read before the write: a good answer
        assert r.get("k") == b"new"  # but never cached
        assert [c[0] for c in script.seen] == [b"GET", b"PTTL", b"GET", b"PTTL"]
        assert r.get("k") == b"new"  # now it is
        assert r.cache.stats()["hits"] == 1


def test_invalidation_before_the_reply_lets_the_newer_value_in() -> None:
    # An invalidation parsed before a read's reply was sent by the server
    # before it ran the read (pushes travel in stream order): the reply
    # already holds the written value, so it may be cached.
    script = Script(send(_invalidate(b"k"), _bulk(b"v1"), b":-1\r\n"), send())
    with FakeServer(script) as server, _client(server) as r:
        assert r.get("k") == b"v1"
        assert r.get("k") == b"v1"
        assert len(script.seen) == 2 and r.cache.stats()["hits"] == 1


def test_null_invalidation_while_a_read_flies() -> None:
    script = Script(
        send(_bulk(b"v1"), _invalidate()), send(b":5000\r\n"),  # FLUSHDB after the GET ran
        send(_bulk(b"v2")), send(b":5000\r\n"),
    )
    with FakeServer(script) as server, _client(server) as r:
        assert r.get("k") == b"v1"
        assert r.get("k") == b"v2" and r.get("k") == b"v2"
        assert len(script.seen) == 4 and r.cache.stats()["flushes"] == 1


def test_own_write_is_never_followed_by_a_stale_hit() -> None:
    # Redis 7 sends the invalidation of a connection's own write after the
    # write's reply; here it also comes in a later segment, held until the
    # client sends its next command. A hit in between would be stale.
    script = Script(
        send(_bulk(b"old")), send(b":-1\r\n"),  # GET k, PTTL k
        send(b"+OK\r\n"),  # SET k new: the invalidation is held back
        send(_invalidate(b"k"), _bulk(b"new")), send(b":-1\r\n"),
    )
    with FakeServer(script) as server, _client(server) as r:
        assert r.get("k") == b"old" and r.get("k") == b"old"
        assert r.set("k", "new") is True
        assert r.get("k") == b"new"
        assert [c[0] for c in script.seen] == [b"GET", b"PTTL", b"SET", b"GET", b"PTTL"]


def test_own_write_queued_while_a_read_flies_keeps_the_read_out() -> None:
    # A read of k is on the wire when this client queues a write of k: the
    # read ran before the write, so its value must not be cached (the write's
    # invalidation is held back until the next command, as in the test above).
    script = Script(
        send(), send(),  # GET k, PTTL k: answered with the SET below
        send(_bulk(b"old"), b":-1\r\n", b"+OK\r\n"),  # SET k new
        send(_invalidate(b"k"), _bulk(b"new")), send(b":-1\r\n"),
    )
    with FakeServer(script) as server, _client(server) as r:
        reader = gevent.spawn(r.get, "k")
        settle(lambda: len(script.seen) == 2)  # the read is on the wire
        assert r.set("k", "new") is True
        assert reader.get(timeout=5) == b"old"
        assert r.get("k") == b"new"
        assert [c[0] for c in script.seen] == [b"GET", b"PTTL", b"SET", b"GET", b"PTTL"]


def test_optin_refused_caching_is_not_cached() -> None:
    script = Script(
        send(b"-ERR CLIENT CACHING can be called only after CLIENT TRACKING\r\n"),
        send(_bulk(b"v1")), send(b":-1\r\n"),
        send(b"+OK\r\n"), send(_bulk(b"v2")), send(b":-1\r\n"),
    )
    with FakeServer(script) as server, _client(server, mode="optin") as r:
        assert r.cached.get("k") == b"v1"
        assert r.cached.get("k") == b"v2"  # the first read was not tracked
        assert script.seen[0][:3] == [b"CLIENT", b"CACHING", b"YES"]


def _held_read(proxy: ChaosProxy, writer: geredis.Redis, r: geredis.Redis) -> gevent.Greenlet:
    """``r.get("k")`` in a greenlet, answered by the server (its PTTL too)
    but its replies held in the proxy until ``proxy.heal()``."""
    def pttls() -> int:
        return int(writer.info("commandstats").get("cmdstat_pttl", {}).get("calls", 0))

    round_trip(r)
    before = pttls()
    assert proxy.hold_replies() == 1  # the shared connection only
    reader = gevent.spawn(r.get, "k")
    settle(lambda: pttls() > before)
    return reader


@pytest.fixture
def proxied(redis_server: RedisServer, writer: geredis.Redis) -> Iterator[Tuple[ChaosProxy, geredis.Redis]]:
    """A caching client through a ChaosProxy; ``k`` holds ``old``."""
    writer.set("k", "old")
    with ChaosProxy(redis_server.port) as proxy, make_cached(RedisServer(proxy.port)) as r:
        yield proxy, r


def test_write_while_the_reply_is_on_its_way(proxied: Tuple[ChaosProxy, geredis.Redis],
                                             writer: geredis.Redis) -> None:
    # The read reaches the server and is answered, the reply is held on its
    # way back, another client writes (acknowledged), then the reply and the
    # invalidation arrive: the old value goes to the reader, never to later reads.
    proxy, r = proxied
    reader = _held_read(proxy, writer, r)
    assert writer.set("k", "new") is True
    proxy.heal()
    assert reader.get(timeout=10) == b"old"
    round_trip(r)
    assert r.get("k") == b"new" and r.get("k") == b"new"
    assert r.cache.stats()["invalidations"] == 1


def test_no_caller_joins_a_read_older_than_a_pipelines_write(
        proxied: Tuple[ChaosProxy, geredis.Redis], writer: geredis.Redis) -> None:
    # A read is on its way back (held) when this client's pipeline writes the
    # key on a dedicated connection: a read of the key after the pipeline
    # must not get that older value by joining the read in flight.
    proxy, r = proxied
    early = _held_read(proxy, writer, r)
    with r.pipeline(transaction=False, threshold=0) as pipe:  # a dedicated connection
        assert pipe.set("k", "new").execute() == [True]
    late = gevent.spawn(r.get, "k")
    gevent.sleep(0.05)
    proxy.heal()
    assert early.get(timeout=10) == b"old"
    assert late.get(timeout=10) == b"new"
    round_trip(r)
    assert r.get("k") == b"new"


def test_cut_connection_forgets_everything(redis_server: RedisServer,
                                          writer: geredis.Redis) -> None:
    writer.mset({f"k{i}": "old" for i in range(20)})
    with ChaosProxy(redis_server.port) as proxy, make_cached(
        RedisServer(proxy.port), retry=None) as r:
        for i in range(20):
            assert r.get(f"k{i}") == b"old"
        proxy.blackhole()  # the invalidations of the next writes are lost
        writer.mset({f"k{i}": "new" for i in range(20)})
        proxy.cut()
        proxy.heal()
        settle(lambda: len(r.cache) == 0)  # emptied when the reader saw the cut
        assert all(r.get(f"k{i}") == b"new" for i in range(20))


def test_server_restart_serves_nothing_from_before(own_server: RedisServer) -> None:
    with make_cached(own_server, retry=None, socket_timeout=2) as r:
        r.set("k", "before")
        assert r.get("k") == b"before" and r.get("k") == b"before"
        own_server.stop()
        own_server.start()  # same port, empty (no persistence)
        with geredis.Redis(port=own_server.port) as w:
            w.set("k", "after")
        try:
            r.ping()  # the round trip: on a new connection, or finding the old one gone
        except redis.ConnectionError:
            pass
        assert r.get("k") == b"after"
        stats: Dict[str, int] = r.cache.stats()
        assert stats["entries"] == 1 and stats["flushes"] >= 1
