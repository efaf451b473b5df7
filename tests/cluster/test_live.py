"""The cluster changing under a thousand greenlets: live slot migrations,
a manual failover, a killed primary that comes back on another port
(``tests/cluster/chaos.py``), each on a cluster of its own."""

from __future__ import annotations

import pytest

from .chaos import KILLED, ClusterChaos
from .localcluster import LocalCluster


def _check(chaos: ClusterChaos) -> None:
    print(chaos.report())
    assert not any(chaos.violations.values()), chaos.report()
    assert chaos.counts["ops ok"] > 2000, chaos.report()
    assert chaos.counts["NOT RECOVERED after healing"] == 0


@pytest.mark.timeout(180)
def test_live_migrations_and_a_manual_failover_under_load(own_cluster: LocalCluster) -> None:
    chaos = ClusterChaos(own_cluster, seconds=8, greenlets=1000, seed=8, migrations=5,
                         failovers=1, kills=0)  # fmt: skip
    chaos.run()
    _check(chaos)
    assert chaos.counts["fault: migrate"] == 5
    assert chaos.counts["keys migrated under load"] > 0
    assert chaos.counts["client: MovedError"] > 0
    assert chaos.counts[KILLED] == 0  # a manual failover loses nothing


@pytest.mark.timeout(180)
def test_a_killed_primary_under_load(own_cluster: LocalCluster) -> None:
    chaos = ClusterChaos(own_cluster, seconds=8, greenlets=1000, seed=9, migrations=1,
                         failovers=0, kills=1)  # fmt: skip
    chaos.run()
    _check(chaos)
    assert chaos.counts["fault: kill"] == 1
    # The client served the killed node's slots again on its own, within a
    # few seconds of the cluster saying it is ok.
    assert chaos.counts["served again ms after cluster ok"] < 5000, chaos.report()
    # The killed node came back on another port: the client follows.
    assert chaos.counts["nodes back on another port"] == 1
    assert chaos.counts["client follows the node's new address"] == 1, chaos.report()
