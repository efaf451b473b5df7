"""Fixtures for the Sentinel tests: one real deployment (a primary, a replica,
three sentinels with quorum 2, ``down-after-milliseconds`` 1000 and
``failover-timeout`` 2000; INFO every second and hello messages every half
second, instead of 10 s and 2 s) for the whole package, on free loopback ports,
killed at the end. Every test starts from a healthy deployment
(``topo`` waits for it), so a test that failed over leaves no trouble
behind: whichever node is the primary now, the next test uses it.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from geredis.sentinel import Sentinel

from .topology import Topology


@pytest.fixture(scope="package")
def deployment() -> Iterator[Topology]:
    topology = Topology(replicas=1, sentinels=3, quorum=2, down_after_ms=1000,
                        failover_timeout_ms=2000,
                        sentinel_debug=("info-period", "1000", "publish-period", "500")).start()
    yield topology
    topology.cleanup()


@pytest.fixture
def topo(deployment: Topology) -> Iterator[Topology]:
    for port in list(deployment.paused):  # a test failed before resuming it
        deployment.resume(port)
    for sentinel in deployment.sentinels:
        if sentinel.process is None:
            sentinel.start()
    for port, server in deployment.servers.items():
        if server.process is None:  # a test killed it and failed before restoring it
            deployment.restart(port, "--replicaof", "127.0.0.1", str(deployment.primary_port()))
    deployment.wait_ready()
    yield deployment


@pytest.fixture
def sentinel(topo: Topology) -> Iterator[Sentinel]:
    manager = Sentinel(topo.sentinel_addresses, socket_timeout=2, socket_connect_timeout=2)
    yield manager
    manager.close()
