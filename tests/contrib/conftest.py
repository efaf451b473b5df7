"""Fixtures for the integration tests: a private redis-server per test (so
its CLIENT LIST shows only what the test opened), a way to count the
connections the server sees, redis-py patched for the duration of a test, and
a barrier that keeps 200 "requests" in flight together."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import gevent
import pytest
from gevent.event import Event

import geredis.server
from geredis.compat import RedisPy

from ..conftest import RedisServer

#: How many concurrent greenlets each integration test runs.
CONCURRENCY = 200


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer().start()
    try:
        yield srv
    finally:
        geredis.server.close_all(timeout=2)
        srv.cleanup()


def client_connections(port: int) -> List[Dict[str, Any]]:
    """The server's clients, minus the connection asking."""
    admin = RedisPy(port=port, protocol=2, decode_responses=True)
    try:
        me = admin.client_id()
        return [c for c in admin.client_list() if int(c["id"]) != me]
    finally:
        admin.close()


def data_connections(port: int) -> List[Dict[str, Any]]:
    """Connections not parked in a blocking command or a subscription."""
    return [c for c in client_connections(port)
            if c["cmd"] not in ("blpop", "brpop", "blmove", "brpoplpush", "subscribe")
            and int(c.get("sub", 0)) == 0 and int(c.get("psub", 0)) == 0]


def in_flight_together(work: Callable[[int], Any], port: int,
                       n: int = CONCURRENCY) -> List[Dict[str, Any]]:
    """Run ``work(i)`` in ``n`` greenlets; each then parks until all are done,
    so whatever they hold (clients, framework objects) is alive together.
    Returns the server's data connections seen at that moment; raises what a
    greenlet raised."""
    done = Event()
    finished = [0]

    def run(i: int) -> None:
        work(i)
        finished[0] += 1
        done.wait()

    greenlets = [gevent.spawn(run, i) for i in range(n)]
    while finished[0] < n and not any(g.dead and not g.successful() for g in greenlets):
        gevent.sleep(0.01)
    seen = data_connections(port)
    done.set()
    gevent.joinall(greenlets, raise_error=True, timeout=30)
    return seen
