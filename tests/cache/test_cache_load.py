"""Client-side caching under load: 1,000 greenlets read hot keys while
writers change them, and every read is checked against what was
acknowledged before the last round trip (see ``tests/chaoscache.py``);
then the chaos run's caching mode, with every fault."""

from __future__ import annotations

import random
import time
from typing import List

import gevent
import pytest

import geredis

from ..chaos import run_once
from ..chaoscache import CacheInvariant
from ..conftest import RedisServer
from .conftest import PARSERS, make_cached


@pytest.mark.timeout(60)
@pytest.mark.parametrize("parser", PARSERS)
def test_thousand_greenlets_never_read_stale(redis_server: RedisServer, parser: str,
                                             clients: List[geredis.Redis]) -> None:
    cached = make_cached(redis_server, parser=parser)
    writer = geredis.Redis(port=redis_server.port)
    clients += [cached, writer]
    check = CacheInvariant(cached, f"load{parser}", keys=200)
    rng = random.Random(7)
    until = time.monotonic() + 3.0

    def work() -> None:
        while time.monotonic() < until:
            check.op(rng, writer)
            if rng.random() < 0.3:
                gevent.sleep(0)

    tracker = gevent.spawn(check.track)
    gevent.joinall([gevent.spawn(work) for _ in range(1000)], raise_error=True)
    check.stopping = True
    tracker.join(timeout=5)
    counts = check.report()
    print(counts, cached.cache.stats())
    assert counts.get("STALE hot reads", 0) == 0, check.examples
    assert counts["hot reads ok"] > 5000 and counts["hot writes acked"] > 200
    assert counts["hot hits"] > counts["hot reads ok"] // 4  # the cache did serve
    assert counts["round trips"] > 10


@pytest.mark.timeout(90)
def test_chaos_run_with_caching() -> None:
    chaos = run_once(seconds=6, greenlets=200, seed=4242, cache=True)
    print(chaos.report())
    assert not any(chaos.violations.values()), chaos.report()
    assert chaos.counts["server restarts"] == 1
    assert chaos.counts["hot reads ok"] > 500 and chaos.counts["hot hits"] > 50
