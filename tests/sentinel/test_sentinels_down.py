"""When every sentinel is down: clients already connected keep working, new
ones get a clear error, a demoted primary (READONLY) is left at once, and
everything recovers when the sentinels return."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import MasterNotFoundError

from geredis.sentinel import Sentinel

from .topology import SERVICE, Topology, wait_for


@pytest.mark.timeout(120)
def test_all_sentinels_down(topo: Topology, sentinel: Sentinel) -> None:
    client = sentinel.master_for(SERVICE, socket_timeout=2, retry=None, decode_responses=True)
    piper = sentinel.master_for(SERVICE, socket_timeout=2, retry=None)
    other = Sentinel(topo.sentinel_addresses, socket_timeout=2, socket_connect_timeout=2)
    fresh = other.master_for(SERVICE, socket_timeout=2, retry=None)
    primary = topo.primary_port()
    (replica,) = topo.replica_ports()
    try:
        assert client.set("down:k", "1")
        assert piper.ping()
        wait_for(lambda: sentinel.events.subscribed == 3, 10, "subscriptions to the sentinels")
        for process in topo.sentinels:
            process.stop()
        # Connected clients keep working, reconnecting included: they know
        # where the primary is.
        assert client.incr("down:k") == 2
        topo.call(primary, "CLIENT", "KILL", "TYPE", "normal")
        wait_for(lambda: client.incr("down:n"), 10, "the client to reconnect")
        assert piper.ping()
        # A client that never connected cannot learn where to go.
        with pytest.raises(MasterNotFoundError, match="No master found for 'mymaster'") as info:
            fresh.get("down:k")
        assert str(info.value).count("Error") >= 3  # one reason per sentinel
        # An operator swaps the roles by hand while the sentinels are away: the
        # client's next write gets READONLY, is not applied, and the client
        # leaves the demoted node instead of writing there again.
        topo.call(replica, "REPLICAOF", "NO", "ONE")
        topo.call(primary, "REPLICAOF", "127.0.0.1", str(replica))
        with pytest.raises(redis.ConnectionError, match="READONLY"):
            client.set("down:w", "x")
        assert client.settings.address_resolver.primary is None
        with pytest.raises(redis.ConnectionError, match="READONLY"):
            piper.pipeline().get("down:k").set("down:w", "x").execute()
        with pytest.raises(redis.ConnectionError):
            client.set("down:w", "x")  # asks the sentinels again: none answers
        assert topo.call(primary, "EXISTS", "down:w") == 0
        assert topo.call(replica, "EXISTS", "down:w") == 0
        # Back as it was; the sentinels return; both clients work again.
        topo.call(primary, "REPLICAOF", "NO", "ONE")
        topo.call(replica, "REPLICAOF", "127.0.0.1", str(primary))
        for process in topo.sentinels:
            process.start()
        wait_for(lambda: client.set("down:w", "y"), 30, "the client to find the primary")
        wait_for(lambda: fresh.set("down:f", "y"), 30, "the new client to find the primary")
        assert topo.call(primary, "GET", "down:w") == "y"
        wait_for(lambda: sentinel.events.subscribed == 3 and reconnected(sentinel), 30,
                 "the event subscriptions to come back")
    finally:
        client.close()
        fresh.close()
        piper.close()
        other.close()


def reconnected(sentinel: Sentinel) -> bool:
    return all(p.reconnects for p in sentinel.events._pubsubs)
