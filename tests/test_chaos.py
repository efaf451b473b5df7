"""The chaos suite: the fault-injecting proxy on its own, then a short chaos
run (see ``tests/chaos.py``; run it longer with ``python -m tests.chaos``).

How this works: the proxy tests check each fault against a real server
through a geredis client: what the caller sees, and that the client works
again once the fault is healed. The chaos test runs a few hundred greenlets
for ~10 s with every fault, kills, timeouts and one server restart, and
fails on any broken invariant, printing the counts either way.
"""

from __future__ import annotations

import time
from typing import Iterator

import gevent
import pytest
import redis

import geredis
from geredis.settings import ConnectionSettings

from .chaos import run_once
from .chaosproxy import ChaosProxy
from .conftest import RedisServer

HAS_HEALTH_CHECK = "health_check_interval" in ConnectionSettings.__dataclass_fields__


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ChaosProxy]:
    p = ChaosProxy(redis_server.port)
    yield p
    p.stop()


@pytest.fixture
def c(proxy: ChaosProxy) -> Iterator[geredis.Redis]:
    client = geredis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=0.3, retry=None)
    yield client
    client.close(timeout=0.5)


def _raises(c: geredis.Redis, error: type, within: float = 1.0) -> None:
    started = time.monotonic()
    with pytest.raises(error):
        c.get("k")
    assert time.monotonic() - started < within


def test_latency_blackhole_and_heal(proxy: ChaosProxy, c: geredis.Redis) -> None:
    assert c.set("k", "v") is True
    proxy.set_latency(0.05)
    started = time.monotonic()
    assert c.get("k") == b"v"
    assert time.monotonic() - started >= 0.1  # both directions
    proxy.blackhole()
    _raises(c, redis.TimeoutError)
    proxy.heal()
    assert c.get("k") == b"v"  # same connection: the held bytes flowed on
    assert len(proxy.links) == 1


def test_cut_mid_reply_and_refuse(proxy: ChaosProxy, c: geredis.Redis) -> None:
    assert c.set("big", "x" * 100_000) is True
    assert proxy.cut(after=50) == 1
    with pytest.raises(redis.ConnectionError):
        c.get("big")  # the reply is cut after 50 bytes
    assert proxy.cuts == 1
    proxy.refuse()
    _raises(c, redis.ConnectionError)
    assert proxy.refused >= 1
    proxy.heal()
    assert c.get("big") == b"x" * 100_000


@pytest.mark.skipif(not HAS_HEALTH_CHECK, reason="geredis has no health_check_interval yet")
def test_stranded_connection_is_replaced_by_the_health_check(proxy: ChaosProxy) -> None:
    with geredis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=0.3, retry=None,
                       health_check_interval=0.2) as c:  # fmt: skip
        assert c.ping() is True
        assert proxy.strand() == 1  # a peer that vanished without a reset
        _raises(c, redis.TimeoutError)
        deadline = time.monotonic() + 3
        while True:
            try:
                assert c.ping() is True
                break
            except (redis.TimeoutError, redis.ConnectionError):
                assert time.monotonic() < deadline, "never replaced the dead connection"
                gevent.sleep(0.05)


@pytest.mark.timeout(90)
def test_chaos_run() -> None:
    chaos = run_once(seconds=10, greenlets=300, seed=12345)
    print(chaos.report())
    assert not any(chaos.violations.values()), chaos.report()
    assert chaos.counts["server restarts"] == 1
    assert chaos.counts["ops ok"] > 1000
