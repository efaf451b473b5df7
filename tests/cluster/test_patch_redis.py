"""``geredis.patch_redis()`` and libraries that build ``redis.RedisCluster``
themselves: limits' ``redis+cluster://`` storage, on a real cluster."""

from __future__ import annotations

import gevent
import pytest
import redis
import redis.cluster

import geredis

from .localcluster import LocalCluster

limits = pytest.importorskip("limits")
from limits import parse  # noqa: E402
from limits.storage import storage_from_string  # noqa: E402
from limits.strategies import MovingWindowRateLimiter  # noqa: E402


def test_patch_redis_rebinds_redis_cluster(cluster: LocalCluster, patched_redis: None) -> None:
    assert redis.RedisCluster is geredis.RedisCluster
    assert redis.cluster.RedisCluster is geredis.RedisCluster
    cluster.wait_ok()
    host, port = cluster.startup
    rc = redis.cluster.RedisCluster(host=host, port=port)
    try:
        assert isinstance(rc, geredis.RedisCluster)
        rc.set("patched:{a}", 1)
        assert rc.get("patched:{a}") == b"1"
    finally:
        rc.close()


def test_limits_cluster_storage_builds_geredis(cluster: LocalCluster, patched_redis: None) -> None:
    cluster.wait_ok()
    host, port = cluster.startup
    storage = storage_from_string(f"redis+cluster://{host}:{port}")
    assert isinstance(storage.storage, geredis.RedisCluster)
    limiter = MovingWindowRateLimiter(storage)
    limit = parse("50/minute")
    # 200 greenlets share the limit of each of 4 users: exactly 50 pass each.
    jobs = [gevent.spawn(limiter.hit, limit, f"user{i % 4}") for i in range(200)]
    gevent.joinall(jobs, raise_error=True)
    allowed = [job.value for job in jobs]
    for user in range(4):
        assert sum(allowed[user::4]) == 50
    assert not limiter.hit(limit, "user0")
    storage.reset()
    storage.storage.close()
