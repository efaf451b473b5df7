"""Fixtures for the cluster tests: real 6-node clusters (3 primaries, 3
replicas) made by ``localcluster.LocalCluster``.

* ``cluster`` (session): one cluster for every test that leaves it as it
  found it (a test may move slots or fail over, as long as it puts things
  back or only relies on what it checked itself).
* ``own_cluster`` (per test): a cluster of its own for tests that break it
  (killed nodes, new addresses, reshards under load).
* ``rc``: a ``geredis.RedisCluster`` on the session cluster, every primary
  flushed first.
* ``tls_cluster`` (per module): a TLS-only cluster (clients, cluster bus and
  replication over TLS, client certificates required), and ``tls_kwargs``:
  the ``ssl_*`` arguments for it.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

import geredis

from ..conftest import Certs
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


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[LocalCluster]:
    cluster = LocalCluster(node_timeout=5000, tls=certs)
    try:
        cluster.start()
    except RuntimeError:  # the first node did not come up
        pytest.skip("this redis-server was built without TLS support")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def tls_kwargs(tls_cluster: LocalCluster) -> Dict[str, Any]:
    return tls_cluster.nodes[0].server.client_kwargs()
