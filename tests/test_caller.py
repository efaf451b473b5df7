"""The hand-off between answered callers (geredis/caller.py): the callers one
read answers are resumed in FIFO order, each switching straight to the next
when it waits again; everything else still goes through the hub. A scripted
server sends each round's replies in one write, so they arrive in one read."""

from __future__ import annotations

from typing import Any, List, Tuple

import gevent
import greenlet
import pytest
import redis
from gevent.hub import Waiter

import geredis
from geredis.caller import Caller, Handoff
from geredis.connection import Connection
from geredis.slots import FutureSlot

from .fakeserver import FakeServer, Peer

GET = b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n"


def rounds_of(n: int, delay: float = 0.0):  # type: ignore[no-untyped-def]
    """A script answering every ``n`` commands at once (reply i of a round is
    ``r<round>-<i>``), after ``delay`` seconds."""

    def script(peer: Peer) -> None:
        round_ = 0
        while True:
            for _ in range(n):
                peer.command()
            gevent.sleep(delay)
            replies = [f"r{round_}-{i}".encode() for i in range(n)]
            peer.send(b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in replies))
            round_ += 1

    return script


def _connection(server: FakeServer) -> Connection:
    return Connection(geredis.Redis(**server.client_kwargs()).settings)


def test_callers_of_one_read_hand_off_to_each_other_in_fifo_order() -> None:
    n = 30
    got: List[Tuple[int, bytes]] = []
    switches = {"direct": 0, "hub": 0}
    hub = gevent.get_hub()

    callers: List[Any] = []

    def trace(event: str, args: Any) -> None:  # switches from or to the callers
        if event == "switch" and (args[0] in callers or args[1] in callers):
            switches["hub" if hub in args else "direct"] += 1

    with FakeServer(rounds_of(n)) as server:
        conn = _connection(server)

        def caller(i: int) -> None:
            for _ in range(3):
                slot = conn.caller()
                conn.submit(GET, slot)
                got.append((i, slot.get()))
                conn.spare_waiters.append(slot)

        greenlets = [gevent.spawn(caller, i) for i in range(n)]
        callers.extend(greenlets)
        old = greenlet.settrace(trace)
        try:
            gevent.joinall(greenlets, timeout=10, raise_error=True)
        finally:
            greenlet.settrace(old)
        conn.close()
    # Every round's replies went to the callers in the order they queued.
    assert got == [(i, f"r{k}-{i}".encode()) for k in range(3) for i in range(n)]
    # In the rounds where the callers wait again, each answered caller
    # switched straight to the next one (through the hub: none of that).
    assert switches["direct"] >= 2 * (n - 1), switches


def test_a_caller_that_waits_on_something_else_leaves_the_rest_to_the_hub() -> None:
    n = 10
    got: List[Tuple[int, bytes]] = []
    with FakeServer(rounds_of(n)) as server:
        conn = _connection(server)

        def caller(i: int) -> None:
            slot = conn.caller()
            conn.submit(GET, slot)
            got.append((i, slot.get()))
            if i % 3 == 0:
                gevent.sleep(0.01)  # not a geredis wait: back to the hub
            got.append((i, b"done"))

        gevent.joinall([gevent.spawn(caller, i) for i in range(n)], timeout=10,
                       raise_error=True)  # fmt: skip
        conn.close()
    replies = [entry for entry in got if entry[1] != b"done"]
    assert replies == [(i, f"r0-{i}".encode()) for i in range(n)]
    assert sorted(i for i, value in got if value == b"done") == list(range(n))


def test_a_caller_that_gave_up_before_the_read_gets_nothing_of_it() -> None:
    n = 6
    got: List[Any] = [None] * n
    with FakeServer(rounds_of(n, delay=0.3)) as server:
        conn = _connection(server)
        slots = [conn.caller() for _ in range(n)]

        def caller(i: int) -> None:
            try:
                with gevent.Timeout(0.05 if i == 2 else 10):
                    got[i] = slots[i].get()
            except gevent.Timeout:
                got[i] = "gave up"

        greenlets = [gevent.spawn(caller, i) for i in range(n)]
        gevent.sleep(0)
        for slot in slots:
            conn.submit(GET, slot)
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        conn.close()
    assert got == [b"r0-0", b"r0-1", "gave up", b"r0-3", b"r0-4", b"r0-5"]
    # The late reply stayed in the abandoned slot, never handed to another caller.
    assert slots[2].ready and slots[2].value == b"r0-2" and slots[2].greenlet is None


def test_other_slot_kinds_in_the_same_read_are_resolved_by_the_hub() -> None:
    got: List[Any] = []
    with FakeServer(rounds_of(5)) as server:
        conn = _connection(server)
        future = FutureSlot()
        waiter = Waiter()
        callers = [conn.caller(), conn.caller(), conn.caller()]

        def wait(slot: Any, name: str) -> None:
            got.append((name, slot.get()))

        greenlets = [gevent.spawn(wait, callers[0], "c0"), gevent.spawn(wait, waiter, "w"),
                     gevent.spawn(wait, callers[1], "c1"), gevent.spawn(wait, callers[2], "c2")]  # fmt: skip
        gevent.sleep(0)
        for slot in (callers[0], waiter, callers[1], future, callers[2]):
            conn.submit(GET, slot)
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        assert future.get(timeout=10) == b"r0-3"
        conn.close()
    assert got == [("c0", b"r0-0"), ("w", b"r0-1"), ("c1", b"r0-2"), ("c2", b"r0-4")]


def test_get_in_the_hub_is_refused_as_any_blocking_call() -> None:
    hub = gevent.get_hub()
    caller = Caller(Handoff(hub))
    outcome: List[Any] = []

    def in_hub() -> None:
        try:
            caller.get()
        except BaseException as exc:  # noqa: B902
            outcome.append(type(exc))

    hub.loop.run_callback(in_hub)
    gevent.sleep(0.01)
    assert outcome and issubclass(outcome[0], gevent.exceptions.BlockingSwitchOutError)


@pytest.mark.parametrize("reply", [b"v", redis.ResponseError("ERR x")])
def test_a_reply_given_before_get_is_returned_at_once(reply: Any) -> None:
    caller = Caller(Handoff(gevent.get_hub()))
    caller.switch(reply)  # no greenlet parked: kept (a cache flight already parsed)
    assert caller.get() is reply
    assert not caller.ready and caller.value is None


def test_an_error_given_before_get_is_raised_at_once() -> None:
    caller = Caller(Handoff(gevent.get_hub()))
    caller.throw(redis.TimeoutError("late"))
    with pytest.raises(redis.TimeoutError, match="late"):
        caller.get()
    assert not caller.ready and caller.error is None

