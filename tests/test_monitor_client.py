"""``r.monitor()`` and ``r.client()``: one dedicated connection each, counted
against the pool, closed (never pooled) when done; state commands refused on
the shared connection point to them."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import gevent
import pytest
import redis

import geredis
from geredis import SharedConnectionError, State
from geredis.exceptions import PoolExhaustedError
from geredis.monitor import Monitor, PinnedRedis

from .conftest import RedisServer


def _wait_for(monitor: Monitor, prefix: str) -> Dict[str, Any]:
    while True:
        command = monitor.next_command()
        if command["command"].startswith(prefix):
            return command  # type: ignore[no-any-return]


def test_monitor_yields_commands_like_redis_py(r: geredis.Redis) -> None:
    with r.monitor() as m:
        assert isinstance(m, redis.client.Monitor)
        assert r._dedicated.in_use == 1
        writer = gevent.spawn_later(0.05, r.set, "mon", 'say "hi"')
        command = _wait_for(m, "SET mon")
        assert command["command"] == 'SET mon say "hi"'
        assert command["db"] == 0 and command["client_type"] == "tcp"
        assert command["client_address"] == "127.0.0.1" and command["client_port"].isdigit()
        assert abs(command["time"] - time.time()) < 60
        writer.join()
        gevent.spawn_later(0.05, r.eval, "return redis.call('GET', KEYS[1])", 1, "mon")
        seen: List[Dict[str, Any]] = []
        for command in m.listen():
            seen.append(command)
            if command["client_type"] == "lua":
                break
        assert seen[-1]["command"].upper() == "GET MON"
    assert r._dedicated.in_use == 0 and r._dedicated._idle == []  # closed, not pooled
    assert r.ping() is True


def test_monitor_read_timeout_keeps_the_monitor(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, socket_timeout=0.1) as c:
        with c.monitor() as m:
            with pytest.raises(redis.TimeoutError):
                m.next_command()
            gevent.spawn_later(0.02, c.set, "after", 1)
            assert _wait_for(m, "SET after")["command"] == "SET after 1"


def test_monitor_left_open_is_closed_by_client_close(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    m = c.monitor().__enter__()
    listener = gevent.spawn(m.next_command)
    gevent.sleep(0.05)
    c.close()
    listener.join()
    assert isinstance(listener.exception, redis.ConnectionError)


def test_monitor_refused_on_the_shared_connection(r: geredis.Redis) -> None:
    with pytest.raises(SharedConnectionError, match=r"r\.monitor\(\)"):
        r.execute_command("MONITOR")


def test_pinned_client_keeps_connection_state(r: geredis.Redis) -> None:
    with r.client() as c:
        assert isinstance(c, PinnedRedis) and isinstance(c, geredis.Redis)
        assert r._dedicated.in_use == 1
        first_id = c.client_id()
        assert c.select(3) is True
        c.set("in-3", "x")
        assert c.client_id() == first_id
        assert c.client_info()["db"] == 3
        assert r.exists("in-3") == 0  # the shared client stays on db 0
        c.client_setname("pinned")
        assert c.client_getname() == "pinned"
        assert r.client_getname() is None
        # Raw WATCH / MULTI / EXEC work on a connection of one's own.
        assert c.execute_command("WATCH", "in-3") is True
        assert c.execute_command("MULTI") in (b"OK", "OK", True)
        assert c.execute_command("INCR", "counter") in (b"QUEUED", "QUEUED")
        assert c.execute_command("EXEC") == [1]
        assert c.futures.get("in-3").get(timeout=1) == b"x"
        assert "PinnedRedis" in repr(c) and "db=3" in repr(c)
    assert r._dedicated.in_use == 0 and r._dedicated._idle == []
    with pytest.raises(redis.ConnectionError):
        c.ping()


def test_pinned_client_reopens_on_the_same_db(r: geredis.Redis) -> None:
    with r.client() as c:
        c.select(4)
        c.client_setname("again")
        c._connection.abort()  # the connection breaks
        assert c.client_info()["db"] == 4
        assert c.client_getname() == "again"


def test_pinned_client_refusals_and_pipeline(r: geredis.Redis) -> None:
    with r.client() as c:
        for call in (lambda: c.client_reply("OFF"), lambda: c.execute_command("HELLO", 2),
                     lambda: c.execute_command("RESET"), lambda: c.execute_command("SUBSCRIBE", "x")):
            with pytest.raises(SharedConnectionError):
                call()
        c.select(5)
        pipe = c.pipeline()
        pipe.set("p", 1).incr("p")
        assert pipe.execute() == [True, 2]
        assert c.get("p") == b"2" and r.get("p") is None
        assert c.transaction(lambda p: p.incr("p")) == [3]
        assert c.blpop(["q"], 0.05) is None
        with pytest.raises(redis.RedisError, match="SELECT"):
            c.pipeline().select(1).execute()


def test_client_and_monitor_count_against_the_pool(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_dedicated=1, dedicated_timeout=0) as c:
        pinned = c.client()
        with pytest.raises(PoolExhaustedError, match="max_dedicated"):
            c.monitor()
        with pytest.raises(PoolExhaustedError):
            c.blpop(["q"], 1)
        pinned.close()
        with c.monitor():
            pass
        assert c.blpop(["q"], 0.01) is None


def test_refusal_messages_name_the_working_apis(r: geredis.Redis) -> None:
    messages = {}
    for args in (("SELECT", 1), ("MULTI",), ("WATCH", "k"), ("RESET",), ("QUIT",), ("HELLO", 3)):
        with pytest.raises(SharedConnectionError) as info:
            r.execute_command(*args)
        messages[args[0]] = str(info.value)
    assert "Redis(db=" in messages["SELECT"] or "db=" in messages["SELECT"]
    assert "r.client()" in messages["SELECT"]
    assert "r.pipeline()" in messages["MULTI"] and "r.transaction()" in messages["WATCH"]
    assert "close()" in messages["QUIT"] and "close()" in messages["RESET"]
    assert "protocol=" in messages["HELLO"]
    with pytest.raises(SharedConnectionError, match="CLIENT REPLY"):
        r.client_reply("SKIP")
    assert r._connection.state is State.OPEN and r.ping() is True


def test_forgotten_pinned_client_gives_its_permit_back(redis_server: RedisServer) -> None:
    import gc

    with geredis.Redis(port=redis_server.port, max_dedicated=1, dedicated_timeout=0) as c:
        pinned = c.client()
        pinned.ping()
        del pinned
        gc.collect()
        gevent.sleep(0)
        assert c._dedicated.in_use == 0
        with c.client() as again:
            assert again.ping() is True
