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


def test_pool_exhaustion_raises_a_clear_error(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=2, dedicated_timeout=0.2) as c:
        waiting = [gevent.spawn(c.blpop, [f"q{i}"], 2) for i in range(2)]
        gevent.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError, match="all 2 dedicated connections") as info:
            c.blpop(["q9"], 1)
        assert isinstance(info.value, redis.ConnectionError)
        assert 0.15 < time.monotonic() - started < 1
        assert c.ping() is True  # the shared connection is untouched
        c.rpush("q0", "a")
        c.rpush("q1", "b")
        gevent.joinall(waiting, raise_error=True)
        assert c._dedicated.in_use == 0


def test_exhausted_pool_waits_fifo_by_default(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1) as c:
        got: List[Any] = []

        def take(i: int) -> None:
            got.append((i, c.blpop(["fifo"], 3)))

        takers = []
        for i in range(5):
            takers.append(gevent.spawn(take, i))
            gevent.sleep(0.01)
        for i in range(5):
            c.rpush("fifo", str(i))
            gevent.sleep(0.05)
        gevent.joinall(takers, raise_error=True)
        assert [(i, item[1]) for i, item in got] == [(i, str(i).encode()) for i in range(5)]
        assert len(c._dedicated._idle) == 1


def test_timed_out_waiter_passes_on_a_permit(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1) as c:
        holder = gevent.spawn(c.blpop, ["h"], 0.2)
        gevent.sleep(0.02)
        impatient = gevent.spawn(lambda: gevent.with_timeout(0.05, c.blpop, ["h"], 1))
        patient = gevent.spawn(c.blpop, ["p"], 0.1)
        gevent.joinall([holder, impatient, patient])
        assert isinstance(impatient.exception, gevent.Timeout)
        assert patient.successful() and patient.value is None
        assert c._dedicated.in_use == 0


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
    queued = gevent.spawn(c.blpop, ["q"], 0)
    gevent.sleep(0.05)
    c.close()
    gevent.joinall([waiting, queued])
    assert isinstance(waiting.exception, redis.ConnectionError)
    assert isinstance(queued.exception, redis.ConnectionError)
    with pytest.raises(redis.ConnectionError):
        c.blpop(["q"], 1)
