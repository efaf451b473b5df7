"""Blocking commands on dedicated connections: the shared connection keeps
flowing, an abandoned command loses nothing, the wait is bounded by the
command's own timeout, and the pool is bounded and fair."""

from __future__ import annotations

import time
from typing import Any, Callable, List

import gevent
import pytest
import redis

import geredis
from geredis.exceptions import PoolExhaustedError

from .conftest import RedisServer


def test_gets_flow_while_a_blpop_waits(r: geredis.Redis) -> None:
    r.set("k", "v")
    waiting = gevent.spawn(r.blpop, ["q"], 5)
    gevent.sleep(0.05)
    started = time.monotonic()
    readers = [gevent.spawn(r.get, "k") for _ in range(200)]
    gevent.joinall(readers, raise_error=True, timeout=2)
    assert all(g.value == b"v" for g in readers)
    assert time.monotonic() - started < 1
    assert not waiting.ready()  # still blocked, on its own connection
    r.rpush("q", "item")
    assert tuple(waiting.get(timeout=2)) == (b"q", b"item")
    assert r._dedicated.in_use == 0 and len(r._dedicated._idle) == 1


def test_killed_blpop_loses_nothing(r: geredis.Redis) -> None:
    waiting = gevent.spawn(r.blpop, ["q"], 0)
    gevent.sleep(0.05)
    assert r._dedicated.in_use == 1
    waiting.kill()
    assert r._dedicated.in_use == 0 and r._dedicated._idle == []  # aborted, not reused
    gevent.sleep(0.05)  # the server notices the closed connection
    r.rpush("q", "precious")
    gevent.sleep(0.05)
    assert r.lrange("q", 0, -1) == [b"precious"]


def test_gevent_timeout_around_blpop_aborts_its_connection(r: geredis.Redis) -> None:
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.1):
            r.brpop(["q"], 0)
    gevent.sleep(0.05)
    r.rpush("q", "kept")
    assert r.llen("q") == 1
    assert r.rpop("q") == b"kept"


def test_block_timeout_returns_none_not_timeout_error(redis_server: RedisServer) -> None:
    # socket_timeout is shorter than the block: the bound is block + socket_timeout.
    with geredis.Redis(port=redis_server.port, socket_timeout=0.2) as c:
        started = time.monotonic()
        assert c.blpop(["empty"], 1) is None
        assert 0.9 < time.monotonic() - started < 1.5
        assert c.xread({"nostream": "$"}, block=300) in (None, [], {})
        assert c._dedicated.in_use == 0 and len(c._dedicated._idle) == 1


def test_wait_bound_times_out_a_stuck_server(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, socket_timeout=0.2) as c:
        c.ping()
        asleep = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.6")  # the server naps
        gevent.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            c.blpop(["q"], 0.1)  # 0.1 s block + 0.2 s margin, then give up
        assert time.monotonic() - started < 0.5
        assert c._dedicated._idle == [] and c._dedicated.in_use == 0  # aborted
        asleep.join()
        gevent.sleep(0.3)
        c.rpush("q", "x")
        assert c.llen("q") == 1


COMMANDS: List[Any] = [
    ("brpop", lambda c: c.rpush("l", "x"), lambda c: c.brpop(["l"], 1), (b"l", b"x")),
    ("blmove", lambda c: c.rpush("l", "x"), lambda c: c.blmove("l", "m", 1), b"x"),
    ("brpoplpush", lambda c: c.rpush("l", "x"), lambda c: c.brpoplpush("l", "m", 1), b"x"),
    ("blmpop", lambda c: c.rpush("l", "x"), lambda c: c.blmpop(1, 1, "l", direction="LEFT"),
     [b"l", [b"x"]]),
    ("bzpopmin", lambda c: c.zadd("z", {"m": 1}), lambda c: c.bzpopmin(["z"], 1), (b"z", b"m", 1.0)),
    ("bzpopmax", lambda c: c.zadd("z", {"m": 1}), lambda c: c.bzpopmax(["z"], 1), (b"z", b"m", 1.0)),
    ("bzmpop", lambda c: c.zadd("z", {"m": 1}), lambda c: c.bzmpop(1, 1, ["z"], min=True),
     [b"z", [[b"m", 1.0]]]),
    ("wait", lambda c: None, lambda c: c.wait(0, 100), 0),
]


@pytest.mark.parametrize("name,setup,run,expected", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_each_blocking_command_runs(r: geredis.Redis, redis_server: RedisServer, name: str,
                                    setup: Callable[[Any], Any], run: Callable[[Any], Any],
                                    expected: Any) -> None:
    ref = redis.Redis(port=redis_server.port)
    try:
        setup(r)
        mine = run(r)
        r.flushdb()
        setup(ref)
        theirs = run(ref)
    finally:
        ref.close()
    assert mine == theirs
    assert r._dedicated.in_use == 0


def test_xread_and_xreadgroup_block(r: geredis.Redis) -> None:
    r.xgroup_create("s", "g", id="$", mkstream=True)
    reader = gevent.spawn(r.xread, {"s": "$"}, block=2000)
    group = gevent.spawn(r.xreadgroup, "g", "c1", {"s": ">"}, block=2000)
    gevent.sleep(0.1)
    assert r.get("x") is None  # the shared connection is free meanwhile
    r.xadd("s", {"f": "v"})
    assert reader.get(timeout=2)[0][0] == b"s"
    assert group.get(timeout=2)[0][0] == b"s"
    # A stream key named "block" is not a BLOCK option: stays on the shared connection.
    r.xadd("block", {"f": "v"})
    assert len(r.xread({"block": 0})[0][1]) == 1


def test_pool_exhaustion_fails_a_blocking_command_at_once(redis_server: RedisServer) -> None:
    # Waiting for a dedicated connection could deadlock (the holders may wait
    # for what this caller would push), so a blocking command never waits.
    with geredis.Redis(port=redis_server.port, max_dedicated=2) as c:
        waiting = [gevent.spawn(c.blpop, [f"q{i}"], 2) for i in range(2)]
        gevent.sleep(0.05)
        with pytest.raises(PoolExhaustedError, match="all 2 dedicated connections") as info:
            c.blpop(["q9"], 1)
        assert isinstance(info.value, redis.ConnectionError)
        assert "max_dedicated" in str(info.value) and "deadlock" in str(info.value)
        assert c.ping() is True  # the shared connection is untouched
        c.rpush("q0", "a")
        c.rpush("q1", "b")
        gevent.joinall(waiting, raise_error=True)
        assert c._dedicated.in_use == 0


def test_pool_exhaustion_makes_a_transaction_wait_at_most_dedicated_timeout(
    redis_server: RedisServer,
) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1, dedicated_timeout=0.2) as c:
        holder = gevent.spawn(c.blpop, ["q"], 2)
        gevent.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError, match="none was released within 0.2s"):
            c.transaction(lambda pipe: None, "k")
        assert 0.15 < time.monotonic() - started < 1.5
        c.rpush("q", "x")
        holder.get(timeout=2)
        assert c._dedicated.in_use == 0


def test_exhausted_pool_serves_transactions_fifo(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1) as c:
        order: List[int] = []
        pinned = c.client()  # takes the only dedicated connection

        def take(i: int) -> None:
            c.transaction(lambda pipe: order.append(i), f"k{i}")

        takers = []
        for i in range(5):
            takers.append(gevent.spawn(take, i))
            gevent.sleep(0.01)
        assert order == []  # all queued behind the pinned client
        pinned.close()
        gevent.joinall(takers, raise_error=True, timeout=5)
        assert order == list(range(5))
        assert c._dedicated.in_use == 0


def test_timed_out_waiter_passes_on_a_permit(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1) as c:
        pinned = c.client()
        impatient = gevent.spawn(
            lambda: gevent.with_timeout(0.05, c.transaction, lambda pipe: None, "a")
        )
        patient = gevent.spawn(c.transaction, lambda pipe: "done", "b", value_from_callable=True)
        gevent.sleep(0.1)
        pinned.close()
        gevent.joinall([impatient, patient], timeout=5)
        assert isinstance(impatient.exception, gevent.Timeout)
        assert patient.successful() and patient.value == "done"
        assert c._dedicated.in_use == 0


def test_producer_consumer_with_a_thousand_waiters_on_one_client(r: geredis.Redis) -> None:
    # A job consumer looping on BRPOP and 1,000 callers waiting on BLPOP for
    # their own results, all on one client: nobody starves.
    done = []

    def consumer() -> None:
        while len(done) < 1000:
            job = r.brpop(["jobs"], 5)
            assert job is not None, "the consumer starved"
            r.rpush(f"result:{job[1].decode()}", b"ok:" + job[1])
            done.append(job[1])

    def caller(i: int) -> bytes:
        r.lpush("jobs", str(i))
        reply = r.blpop([f"result:{i}"], 30)
        assert reply is not None
        return reply[1]  # type: ignore[no-any-return]

    worker = gevent.spawn(consumer)
    callers = [gevent.spawn(caller, i) for i in range(1000)]
    gevent.joinall(callers + [worker], raise_error=True, timeout=60)
    assert [g.value for g in callers] == [b"ok:%d" % i for i in range(1000)]
    assert r._dedicated.in_use == 0


def test_client_name_reaches_dedicated_connections(r: geredis.Redis) -> None:
    r.blpop(["q"], 0.01)  # an idle dedicated connection now exists, unnamed
    r.client_setname("named")
    waiting = gevent.spawn(r.blpop, ["q"], 2)
    gevent.sleep(0.1)
    names = [c["name"] for c in r.client_list() if c["cmd"] == "blpop"]
    assert names == ["named"]
    r.rpush("q", "x")
    waiting.get(timeout=2)


def test_close_fails_waiting_blocking_commands(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port, max_dedicated=1)
    waiting = gevent.spawn(c.blpop, ["q"], 0)
    gevent.sleep(0.05)
    c.close()
    gevent.joinall([waiting])
    assert isinstance(waiting.exception, redis.ConnectionError)
    assert c.blpop(["q"], 0.1) is None  # a new dedicated connection, as redis-py
    c.close(final=True)
    with pytest.raises(redis.ConnectionError):
        c.blpop(["q"], 1)
