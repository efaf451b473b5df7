"""``geredis.patch_redis()`` and libraries that build ``redis.sentinel.Sentinel``
themselves: limits' ``redis+sentinel://`` storage, on a real deployment."""

from __future__ import annotations

import gevent
import pytest
import redis
import redis.sentinel

import geredis
import geredis.sentinel

from .topology import SERVICE, Topology

limits = pytest.importorskip("limits")
from limits import parse  # noqa: E402
from limits.storage import storage_from_string  # noqa: E402
from limits.strategies import FixedWindowRateLimiter  # noqa: E402


def test_limits_sentinel_storage_builds_geredis(topo: Topology, patched_redis: None) -> None:
    assert redis.sentinel.Sentinel is geredis.sentinel.Sentinel
    assert redis.Sentinel is geredis.sentinel.Sentinel
    locations = ",".join(f"{host}:{port}" for host, port in topo.sentinel_addresses)
    storage = storage_from_string(f"redis+sentinel://{locations}/{SERVICE}")
    assert isinstance(storage.sentinel, geredis.sentinel.Sentinel)
    assert isinstance(storage.storage, geredis.Redis)
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("30/minute")
    jobs = [gevent.spawn(limiter.hit, limit, "patched-user") for _ in range(100)]
    gevent.joinall(jobs, raise_error=True)
    assert sum(job.value for job in jobs) == 30
    storage.reset()
    storage.storage.close()
    storage.storage_slave.close()
    storage.sentinel.close()
