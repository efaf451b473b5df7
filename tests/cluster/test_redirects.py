"""Following the cluster as it changes: MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
one shared refresh for a storm, the safe-retry rule, nodes that leave."""

from __future__ import annotations

import gc
from typing import Iterator, List

import gevent
import pytest
import redis
from redis.exceptions import ClusterError, SlotNotCoveredError

import geredis
from geredis.exceptions import ConnectionClosedError

from .localcluster import LocalCluster, Node, keys_in_slot

SLOT = 1000  # served by the first primary when the cluster is made


@pytest.fixture
def slot_keys(cluster: LocalCluster) -> Iterator[List[str]]:
    """Ten keys of SLOT; SLOT goes back to its first owner afterwards."""
    home = cluster.owner(SLOT)
    yield list(keys_in_slot(SLOT, 10))
    if cluster.owner(SLOT) is not home:
        cluster.migrate_slot(SLOT, home)
    cluster.wait_ok()


def _other_primary(cluster: LocalCluster, node: Node) -> Node:
    return next(n for n in cluster.primaries() if n is not node)


def test_moved_is_followed_and_patches_the_map(rc: geredis.RedisCluster, cluster: LocalCluster,
                                               slot_keys: List[str]) -> None:  # fmt: skip
    for k in slot_keys:
        rc.set(k, k)
    src = cluster.owner(SLOT)
    dst = _other_primary(cluster, src)
    assert cluster.migrate_slot(SLOT, dst) == 10
    assert rc.get_node_from_key(slot_keys[0]).name == src.name  # the client's map is stale
    requests = rc._refresher.requests
    assert rc.get(slot_keys[0]) == slot_keys[0].encode()  # MOVED, then the new owner
    assert rc.nodes_manager.slots_cache[SLOT][0].name == dst.name  # patched at once
    assert rc._refresher.requests == requests + 1  # and a refresh asked for
    assert rc.set(slot_keys[1], "new") is True
    with dst.client() as direct:
        assert direct.get(slot_keys[1]) == b"new"


def test_a_moved_storm_causes_one_refresh(rc: geredis.RedisCluster, cluster: LocalCluster,
                                          slot_keys: List[str]) -> None:  # fmt: skip
    for k in slot_keys:
        rc.set(k, 0)
    dst = _other_primary(cluster, cluster.owner(SLOT))
    cluster.migrate_slot(SLOT, dst)
    rounds = rc.refreshes
    shards_calls = cluster.command_calls("cluster|shards")

    def incr(i: int) -> int:
        return int(rc.incr(slot_keys[i % 10]))

    greenlets = [gevent.spawn(incr, i) for i in range(1000)]
    gevent.joinall(greenlets, raise_error=True)
    cluster.wait_for(lambda: rc._refresher._greenlet is None, 30, "the refresh to end")
    assert rc.refreshes == rounds + 1
    assert cluster.command_calls("cluster|shards") - shards_calls == 1
    assert sum(int(rc.get(k)) for k in slot_keys) == 1000  # each INCR ran once


def test_ask_during_a_migration(rc: geredis.RedisCluster, cluster: LocalCluster,
                                slot_keys: List[str]) -> None:  # fmt: skip
    for k in slot_keys:
        rc.set(k, "v-" + k)
    src = cluster.owner(SLOT)
    dst = _other_primary(cluster, src)
    cluster.begin_migration(SLOT, src, dst)
    try:
        cluster.migrate_keys(src, dst, slot_keys[:5])
        for k in slot_keys:  # moved keys: ASK, ASKING + GET on dst; others: src
            assert rc.get(k) == ("v-" + k).encode()
        assert rc.set("{%s}:new" % slot_keys[0].split("{")[1].split("}")[0], 1) is True
        assert rc.nodes_manager.slots_cache[SLOT][0].name == src.name  # ASK patches nothing
        # Many greenlets: ASK pairs interleaved with other callers' commands.
        results = [gevent.spawn(rc.get, k) for k in slot_keys * 30]
        gevent.joinall(results, raise_error=True)
        assert [g.value for g in results] == [("v-" + k).encode() for k in slot_keys * 30]
        # Multi-key commands on keys split between both nodes: TRYAGAIN,
        # retried until the migration ends.
        ender = gevent.spawn_later(0.3, lambda: (
            cluster.migrate_keys(src, dst, slot_keys[5:] + [
                k for k in src.call("CLUSTER", "GETKEYSINSLOT", SLOT, 100)
                if k.decode() not in slot_keys]),
            cluster.end_migration(SLOT, src, dst)))  # fmt: skip
        assert rc.mget(slot_keys) == [("v-" + k).encode() for k in slot_keys]
        ender.get()
    finally:
        if cluster.owner(SLOT) is src:
            for node in (src, dst):
                node.call("CLUSTER", "SETSLOT", SLOT, "STABLE")
            cluster.migrate_slot(SLOT, dst)


def test_redirections_are_capped(cluster: LocalCluster, slot_keys: List[str]) -> None:
    host, port = cluster.startup
    with geredis.RedisCluster(host=host, port=port, max_redirections=0) as r:
        r.set(slot_keys[0], 1)
        cluster.migrate_slot(SLOT, _other_primary(cluster, cluster.owner(SLOT)))
        with pytest.raises(ClusterError, match="TTL exhausted"):
            r.get(slot_keys[0])
        assert r.get(slot_keys[0]) == b"1"  # the map was patched meanwhile


def test_only_commands_safe_to_repeat_are_retried(rc: geredis.RedisCluster,
                                                  cluster: LocalCluster) -> None:  # fmt: skip
    rc.set("counter", 0)
    node = rc.get_node_from_key("counter")
    cluster.node(node.port).call("CLIENT", "PAUSE", 500, "ALL")  # the node stalls
    incr = gevent.spawn(rc.incr, "counter")
    get = gevent.spawn(rc.get, "counter")
    gevent.sleep(0.1)  # both sent, no reply yet: now the connection breaks
    node.redis_connection._connection.abort(ConnectionClosedError("the network cut it"))
    with pytest.raises(redis.ConnectionError):
        incr.get()  # it may have run: it is never sent twice
    assert get.get() in (b"0", b"1")  # a read is sent again on a new connection
    assert rc.get("counter") in (b"0", b"1")  # the INCR ran at most once


def test_nodes_that_leave_are_closed_and_refreshes_do_not_grow(
    own_cluster: LocalCluster,
) -> None:
    host, port = own_cluster.startup
    with geredis.RedisCluster(host=host, port=port) as r:
        for i in range(100):
            r.set(f"k{i}", i)
        for _ in range(200):  # thousands of refreshes would show a leak too
            r.refresh()
        greenlets = sum(1 for g in gc.get_objects() if isinstance(g, gevent.Greenlet)
                        and not g.dead)  # fmt: skip
        for _ in range(200):
            r.refresh()
        assert sum(1 for g in gc.get_objects() if isinstance(g, gevent.Greenlet)
                   and not g.dead) <= greenlets  # fmt: skip
        # A replica leaves the cluster.
        replica = own_cluster.replicas_of(own_cluster.primaries()[0])[0]
        gone = r.get_node(port=replica.port, host="127.0.0.1")
        assert gone is not None
        gone.redis_connection.ping()  # its shared connection is open
        for node in own_cluster.nodes:
            if node is not replica:
                node.call("CLUSTER", "FORGET", replica.node_id)
        own_cluster.kill(replica)
        own_cluster.nodes.remove(replica)
        own_cluster.wait_ok()
        r.refresh()
        assert r.get_node(port=replica.port, host="127.0.0.1") is None
        own_cluster.wait_for(lambda: gone.redis_connection._closed, 10, "node closed")
        assert r.get("k7") == b"7"


def test_clusterdown_is_retried_within_the_callers_time(rc: geredis.RedisCluster,
                                                       cluster: LocalCluster) -> None:  # fmt: skip
    key = next(keys_in_slot(SLOT, 1))
    rc.set(key, "kept")
    owner = cluster.owner(SLOT)
    for node in cluster.nodes:  # nobody serves SLOT: the cluster goes down
        node.call("CLUSTER", "DELSLOTS", SLOT)
    try:
        cluster.wait_for(lambda: "cluster_state:fail" in owner.call("CLUSTER", "INFO").decode(),
                         10, "cluster_state:fail")  # fmt: skip
        with pytest.raises((redis.exceptions.ClusterDownError, SlotNotCoveredError)):
            with geredis.RedisCluster(host="127.0.0.1", port=owner.port, socket_timeout=0.3,
                                      require_full_coverage=False) as impatient:  # fmt: skip
                impatient.get(key)  # out of time while still down: the error
        healer = gevent.spawn_later(0.5, gevent.get_hub().threadpool.apply,
                                    owner.call, ("CLUSTER", "ADDSLOTS", SLOT))  # fmt: skip
        assert rc.get(key) == b"kept"  # retried with backoff until served again
        healer.get()
    finally:
        if "cluster_state:ok" not in owner.call("CLUSTER", "INFO").decode():
            owner.call("CLUSTER", "ADDSLOTS", SLOT)
        cluster.wait_ok()
