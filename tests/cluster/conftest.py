"""Fixtures for the cluster tests: real 6-node clusters (3 primaries, 3
replicas) made by ``localcluster.LocalCluster``.

* ``cluster`` (session): one cluster for every test that leaves it as it
  found it (a test may move slots or fail over, as long as it puts things
  back or only relies on what it checked itself).
* ``own_cluster`` (per test): a cluster of its own for tests that break it
  (killed nodes, new addresses, reshards under load).
* ``rc``: a ``geredis.RedisCluster`` on the session cluster, every primary
  flushed first.
"""

from __future__ import annotations

from typing import Iterator

import pytest

import geredis

from .localcluster import LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(node_timeout=5000) as c:
        yield c


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(node_timeout=1500) as c:
        yield c


@pytest.fixture
def rc(cluster: LocalCluster) -> Iterator[geredis.RedisCluster]:
    cluster.wait_ok()
    host, port = cluster.startup
    client = geredis.RedisCluster(host=host, port=port)
    try:
        client.flushall()
        yield client
    finally:
        client.close()
