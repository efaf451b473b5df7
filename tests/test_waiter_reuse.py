"""Waiter reuse (Connection.spare_waiters): only a Waiter whose caller got
its reply is reused; one whose caller gave up keeps its late reply and is
never handed to another caller."""

from __future__ import annotations

import gevent
import pytest
import redis

import geredis

from .conftest import RedisServer


def test_answered_waiters_are_reused_one_per_concurrent_caller(r: geredis.Redis) -> None:
    r.ping()
    spare = r._connection.spare_waiters
    first = spare[-1]
    assert r.get("nothing") is None
    assert spare == [first]  # the same Waiter served the next command

    def work(i: int) -> None:
        for j in range(5):
            r.set(f"reuse:{i}", j)
            assert r.get(f"reuse:{i}") == str(j).encode()

    gevent.joinall([gevent.spawn(work, i) for i in range(50)], raise_error=True)
    assert 1 <= len(spare) <= 50
    assert all(w.greenlet is None and not w.ready and w.value is None for w in spare)


@pytest.mark.parametrize("give_up", ["socket_timeout", "gevent.Timeout", "kill"])
def test_a_caller_that_gave_up_never_returns_its_waiter(
    redis_server: RedisServer, give_up: str
) -> None:
    timeout = 0.1 if give_up == "socket_timeout" else None
    with geredis.Redis(port=redis_server.port, socket_timeout=timeout) as c:
        c.set("mine", "M")
        conn = c._connection
        spare = conn.spare_waiters
        before = list(spare)
        if give_up == "kill":
            victim = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.3")
            gevent.sleep(0.05)
            victim.kill()
        else:
            with pytest.raises((redis.TimeoutError, gevent.Timeout)):
                with gevent.Timeout(None if timeout else 0.05):
                    c.execute_command("DEBUG", "SLEEP", "0.3")
        # The caller took the spare waiter and did not give it back.
        assert len(spare) == len(before) - 1
        abandoned = before[-1]
        assert abandoned not in spare
        # The late +OK lands in the abandoned Waiter, which stays out of use.
        with gevent.Timeout(10):
            while conn.pending:
                gevent.sleep(0.01)
        assert abandoned.ready and abandoned.value == b"OK"
        results = [gevent.spawn(c.get, "mine") for _ in range(3)]
        gevent.joinall(results, raise_error=True)
        assert [g.value for g in results] == [b"M"] * 3
        assert abandoned not in spare and conn.pending == 0
