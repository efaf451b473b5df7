"""geredis.RedisCluster's redis-py API: construction, nodes, keyslots, and
what cannot apply (clear errors), on a real cluster."""

from __future__ import annotations

import time

import pytest
import redis
from redis.cluster import ClusterNode, LoadBalancingStrategy
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

import geredis

from ..conftest import _live_greenlets
from .localcluster import LocalCluster


def test_is_a_redis_py_cluster_client(rc: geredis.RedisCluster) -> None:
    assert isinstance(rc, redis.RedisCluster)
    assert isinstance(rc, redis.cluster.RedisCluster)
    assert geredis.RedisCluster is geredis.cluster.RedisCluster
    assert rc.set("k", "v") is True
    assert rc.get("k") == b"v"
    assert "OPEN" in repr(rc) and "nodes=6" in repr(rc)


def test_constructor_forms(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    others = [ClusterNode("127.0.0.1", n.port) for n in cluster.nodes]
    with geredis.RedisCluster(startup_nodes=others) as a:
        assert a.ping() is True
    with geredis.RedisCluster.from_url(f"redis://{host}:{port}/0", decode_responses=True) as b:
        b.set("u", "é")
        assert b.get("u") == "é"
    with geredis.RedisCluster(host="localhost", port=port, protocol=2) as c:
        assert c.hset("h", mapping={"a": 1}) == 1
        assert c.hgetall("h") == {b"a": b"1"}
        assert c.get_connection_kwargs()["protocol"] == 2


def test_what_cannot_apply_is_refused(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    with pytest.raises(RedisClusterException, match="db"):
        geredis.RedisCluster(host=host, port=port, db=1)
    with pytest.raises(RedisClusterException, match="db"):
        geredis.RedisCluster.from_url(f"redis://{host}:{port}/3")
    with pytest.raises(RedisClusterException, match="Unix"):
        geredis.RedisCluster.from_url("unix:///tmp/redis.sock")
    with pytest.raises(RedisClusterException, match="at least one node"):
        geredis.RedisCluster()
    with pytest.raises(ValueError, match="caching"):
        geredis.RedisCluster(host=host, port=port, cache_config=object())
    with pytest.raises(ValueError, match="single_connection_client"):
        geredis.RedisCluster(host=host, port=port, single_connection_client=True)
    with pytest.raises(TypeError, match="no_such_argument"):
        geredis.RedisCluster(host=host, port=port, no_such_argument=1)


def test_unreachable_startup_nodes(cluster: LocalCluster) -> None:
    from tests.conftest import free_port

    with pytest.raises(RedisClusterException, match="cannot be connected"):
        geredis.RedisCluster(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)


def test_not_a_cluster(redis_server: "object") -> None:
    port = redis_server.port  # type: ignore[attr-defined]
    with pytest.raises(RedisClusterException, match="cluster"):
        geredis.RedisCluster(host="127.0.0.1", port=port)


def test_nodes_and_slots(rc: geredis.RedisCluster, cluster: LocalCluster) -> None:
    primaries = {n.name for n in cluster.primaries()}
    assert {n.name for n in rc.get_primaries()} == primaries
    assert len(rc.get_replicas()) == 3
    assert len(rc.get_nodes()) == 6
    assert all(n.server_type == "replica" for n in rc.get_replicas())
    for node in rc.get_nodes():
        assert rc.get_node(node.host, node.port) is node
        assert rc.get_node(node_name=node.name) is node
        assert isinstance(node.redis_connection, geredis.Redis)
    assert rc.get_default_node().name in primaries
    assert rc.keyslot("foo") == key_slot(b"foo") == 12182
    assert rc.keyslot("{user1}:a") == rc.keyslot("{user1}:b") == key_slot(b"user1")
    assert rc.get_node_from_key("foo").name == cluster.owner(12182).name
    assert len(rc.nodes_manager.slots_cache) == 16384
    assert rc.get_node_from_key("foo", replica=True).name in {
        n.name for n in cluster.replicas_of(cluster.owner(12182))}
    # A node's own client, as redis-py's node.redis_connection.
    node = rc.get_node_from_key("foo")
    assert node.redis_connection.set("foo", 1) is True
    assert rc.get("foo") == b"1"


def test_load_balancing_reads_from_replicas(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    with geredis.RedisCluster(host=host, port=port,
                              load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN) as lb:
        lb.set("lb", "x")
        replica = lb.get_node_from_key("lb", replica=True)
        with replica.redis_connection.client() as pinned:  # READONLY was sent
            assert pinned.execute_command("GET", "lb") in (b"x", None)
        seen = set()
        for _ in range(20):
            assert lb.get("lb") in (b"x", None)  # a replica may lag by a moment
            seen.update(n.name for n in lb.get_nodes()
                        if n.redis_connection._connection is not None)  # fmt: skip
        assert replica.name in seen


def test_monitor_and_a_pinned_client_on_one_node(rc: geredis.RedisCluster) -> None:
    node = rc.get_node_from_key("mon")
    with rc.monitor(target_node=node) as monitor:
        rc.set("mon", "1")
        while True:
            command = monitor.next_command()
            if command["command"].startswith("SET"):
                assert command["command"] == "SET mon 1"
                break
    with node.redis_connection.client() as pinned:  # connection state of its own
        assert pinned.client_setname("pinned") is True
        assert pinned.client_getname() in ("pinned", b"pinned")
        assert pinned.get("mon") == b"1"
    assert node.redis_connection._dedicated.in_use == 0


def test_wait_for_a_replica_on_the_keys_node(rc: geredis.RedisCluster) -> None:
    rc.set("order:42", "paid")
    node = rc.get_node_from_key("order:42")
    assert rc.wait(1, 2000, target_nodes=node) == 1  # the replica has it


def test_acl_users(cluster: LocalCluster) -> None:
    live = [n for n in cluster.nodes if n.alive]
    for node in live:
        node.call("ACL", "SETUSER", "app", "on", ">app-secret", "~*", "&*", "+@all")
    try:
        host, port = cluster.startup
        with geredis.RedisCluster(host=host, port=port, username="app",
                                  password="app-secret") as r:  # fmt: skip
            assert r.set("acl", 1) is True
            assert r.acl_whoami() == "app"  # redis-py decodes it
        url = f"redis://app:app-secret@{host}:{port}"
        with geredis.RedisCluster.from_url(url) as r:
            assert r.get("acl") == b"1"
        with pytest.raises(RedisClusterException, match="AuthenticationError"):
            geredis.RedisCluster(host=host, port=port, username="app", password="wrong")
    finally:
        for node in live:
            node.call("ACL", "DELUSER", "app")


def test_lock_and_keyspace_notifications(rc: geredis.RedisCluster) -> None:
    import gevent

    lock = rc.lock("resource", timeout=5)
    assert lock.acquire(blocking=False)
    waiter = gevent.spawn(lambda: rc.lock("resource", timeout=5).acquire(blocking_timeout=2))
    gevent.sleep(0.2)
    lock.release()
    assert waiter.get(timeout=5) is True
    rc.config_set("notify-keyspace-events", "KEA", target_nodes=geredis.RedisCluster.ALL_NODES)
    try:
        with rc.keyspace_notifications() as notes:
            notes.subscribe_keyspace("watched:*")
            for i in range(3):
                rc.set(f"watched:{i}", i)
            seen = []
            for _ in range(50):
                message = notes.get_message(timeout=0.1)
                if message is not None:
                    seen.append(message)
                if len(seen) >= 3:
                    break
            assert len(seen) == 3
    finally:
        rc.config_set("notify-keyspace-events", "", target_nodes=geredis.RedisCluster.ALL_NODES)


def test_address_remap_reaches_nodes_through_proxies(cluster: LocalCluster) -> None:
    from tests.chaosproxy import ChaosProxy

    proxies = {n.port: ChaosProxy(n.port) for n in cluster.nodes if n.alive}
    remapped = []

    def remap(address: tuple) -> tuple:
        remapped.append(address)
        return "127.0.0.1", proxies[address[1]].port

    try:
        node = cluster.primaries()[0]
        with geredis.RedisCluster(host="127.0.0.1", port=proxies[node.port].port,
                                  address_remap=remap) as r:  # fmt: skip
            for i in range(30):
                r.set(f"remap{i}", i)
            assert r.mget_nonatomic([f"remap{i}" for i in range(30)])[29] == b"29"
            assert remapped  # every node of the map went through it
            assert {n.port for n in r.get_nodes()} <= {p.port for p in proxies.values()}
            assert sum(p.accepted for p in proxies.values()) >= 3
    finally:
        for proxy in proxies.values():
            proxy.stop()


def test_a_client_dropped_without_close_is_collected(cluster: LocalCluster) -> None:
    import gc
    import weakref

    import gevent

    host, port = cluster.startup
    before = set(map(id, _live_greenlets()))
    client = geredis.RedisCluster(host=host, port=port, cluster_refresh_interval=0.05)
    client.set("dropped", 1)
    gevent.sleep(0.2)  # periodic refreshes ran
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None  # nothing (the periodic refresh) keeps it alive
    # Its greenlets end on their own (a refresh under way finishes first, which
    # takes longer on a loaded machine); the fixture then checks sockets too.
    deadline = time.monotonic() + 10
    while [g for g in _live_greenlets() if id(g) not in before]:
        assert time.monotonic() < deadline, "the dropped client's greenlets did not end"
        gevent.sleep(0.05)
