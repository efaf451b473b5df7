"""The shared read side (geredis/receiver.py): reading in the hub, the frame
handler hooks later work builds on (ReaderSlot, on_push order), counters."""

from __future__ import annotations

from typing import Any, List

import gevent
import greenlet
import pytest
import redis
from gevent.hub import Waiter

import geredis
from geredis.connection import Connection, State
from geredis.protocol import PUSH_TYPES
from geredis.slots import ReaderSlot

from .conftest import RedisServer
from .fakeserver import FakeServer, Peer


def test_plain_socket_is_read_in_the_hub_without_a_reader_greenlet(r: geredis.Redis) -> None:
    r.ping()
    receiver = r._connection._receiver
    assert receiver.in_hub and receiver.greenlet is None
    before = receiver.bytes_in, receiver.reads
    r.set("k", "v")
    assert receiver.bytes_in == before[0] + len(b"+OK\r\n") and receiver.reads == before[1] + 1


def test_a_lone_round_trip_is_two_greenlet_switches(r: geredis.Redis) -> None:
    r.ping()
    hub = gevent.get_hub()
    switches: List[Any] = []

    def trace(event: str, args: Any) -> None:
        if event in ("switch", "throw"):
            switches.append((args[0], args[1]))

    def lone_get() -> None:
        me = gevent.getcurrent()
        old = greenlet.settrace(trace)
        try:
            r.get("k")
        finally:
            greenlet.settrace(old)
        assert switches == [(me, hub), (hub, me)]  # no reader greenlet in between

    gevent.spawn(lone_get).get(timeout=10)


class Recorder(ReaderSlot):
    """A slot that records when its reply is parsed (the cache's hook)."""

    __slots__ = ("log",)

    def __init__(self, target: Any, log: List[Any]) -> None:
        super().__init__(target)
        self.log = log

    def parsed(self, reply: Any) -> Any:
        self.log.append(("parsed", reply))
        return reply + b"!"


def test_reader_slot_runs_in_stream_order_with_pushes_before_callers_wake() -> None:
    def script(peer: Peer) -> None:
        peer.command()
        peer.command()
        # Both replies and a push in between, in one write: one read.
        peer.send(b"$1\r\na\r\n>2\r\n$10\r\ninvalidate\r\n$1\r\nk\r\n$1\r\nb\r\n")
        peer.command()  # then nothing: the client closes

    log: List[Any] = []
    with FakeServer(script) as server:
        settings = geredis.Redis(**server.client_kwargs()).settings
        conn = Connection(settings)
        conn.on_push = lambda frame: log.append(("push", type(frame) in PUSH_TYPES, frame[1]))
        first, second = Waiter(), Waiter()

        def wait(waiter: Waiter, name: str) -> None:
            log.append((name, waiter.get()))

        waiting = [gevent.spawn(wait, first, "first"), gevent.spawn(wait, second, "second")]
        gevent.sleep(0)  # both wait before the replies can come
        conn.submit(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", Recorder(first, log))
        conn.submit(b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", Recorder(second, log))
        gevent.joinall(waiting, timeout=10, raise_error=True)
        conn.abort()
        conn.close()
    assert log == [
        ("parsed", b"a"),
        ("push", True, b"k"),
        ("parsed", b"b"),
        ("first", b"a!"),
        ("second", b"b!"),
    ]


def test_reader_slot_that_raises_fails_its_caller_only(r: geredis.Redis) -> None:
    class Broken(ReaderSlot):
        __slots__ = ()

        def parsed(self, reply: Any) -> Any:
            raise ValueError("cache full")

    r.ping()
    conn = r._connection
    waiter = Waiter()
    conn.submit(r._packer.pack(("PING",)), Broken(waiter))
    reply = waiter.get()
    assert isinstance(reply, ValueError)
    assert r.get("k") is None and conn.state is State.OPEN and conn._special == 0


def test_a_flood_of_replies_does_not_starve_timers(redis_server: RedisServer) -> None:
    ticks: List[float] = []
    with geredis.Redis(port=redis_server.port) as c:
        c.set("big", b"x" * (4 << 20))
        loop = gevent.get_hub().loop

        def ticker() -> None:
            for _ in range(20):
                ticks.append(loop.now())
                gevent.sleep(0.001)

        t = gevent.spawn(ticker)
        gevent.sleep(0)
        values = [c.get("big") for _ in range(5)]  # 20 MiB through 64 KiB reads
        during = len(ticks)
        t.join(timeout=10)
    assert all(len(v) == 4 << 20 for v in values)
    assert during >= 2, "the timer never ran while the replies were read"


@pytest.mark.parametrize("slot", ["Waiter", "Caller"])
def test_a_caller_woken_by_the_reader_may_abort_the_connection(slot: str) -> None:
    # With Callers the abort comes in the middle of their hand-off (caller.py).
    def script(peer: Peer) -> None:
        peer.command()
        peer.command()
        peer.command()
        peer.send(b"$1\r\na\r\n$1\r\nb\r\n")  # two replies in one read, the third never
        peer.command()

    got: List[Any] = []
    with FakeServer(script) as server:
        conn = Connection(geredis.Redis(**server.client_kwargs()).settings)
        waiters = [Waiter() if slot == "Waiter" else conn.caller() for _ in range(3)]

        def first() -> None:
            got.append(waiters[0].get())
            conn.abort()  # in the middle of the reader's pass over this read

        def other(i: int) -> None:
            try:
                got.append(waiters[i].get())
            except redis.ConnectionError as exc:
                got.append(type(exc))

        greenlets = [gevent.spawn(first), gevent.spawn(other, 1), gevent.spawn(other, 2)]
        gevent.sleep(0)
        for waiter in waiters:
            conn.submit(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", waiter)
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        conn.close()
    # The second reply was read with the first: it is delivered; the third fails.
    assert got[:2] == [b"a", b"b"] and issubclass(got[2], redis.ConnectionError)
    assert conn.state is State.CLOSED
