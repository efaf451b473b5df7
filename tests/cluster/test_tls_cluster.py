"""``geredis.RedisCluster`` over TLS, on a real TLS-only cluster (``tls_cluster``:
6 nodes, no plaintext port anywhere, cluster bus and replication over TLS,
client certificates required): the addresses the cluster reports are its TLS
ports and are used with TLS; routing, keyless and multi-slot commands,
pipelines, MOVED and ASK, replica reads, sharded pub/sub, blocking commands;
a wrong CA fails promptly with a ``redis.ConnectionError``."""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List
from urllib.parse import urlencode

import gevent
import pytest
import redis
from redis.cluster import LoadBalancingStrategy
from redis.crc import key_slot

import geredis
from geredis.cluster.topology import parse_shards
from geredis import network
from geredis.network import TLSError

from ..conftest import Certs
from .localcluster import LocalCluster, Node, keys_in_slot, tag_for_slot

SLOT = 1000  # served by the first primary when the cluster is made


@pytest.fixture
def trc(tls_cluster: LocalCluster, tls_kwargs: Dict[str, Any]) -> Iterator[geredis.RedisCluster]:
    host, port = tls_cluster.startup
    client = geredis.RedisCluster(host=host, port=port, socket_timeout=10, **tls_kwargs)
    try:
        client.flushall()
        yield client
    finally:
        client.close()


def _is_tls(node_client: geredis.Redis) -> bool:
    conn = node_client._connection
    return conn is not None and hasattr(conn._sock, "_sslobj")


def _one_key_per_primary(cluster: LocalCluster) -> Dict[str, Node]:
    """A key in the first slot of each primary -> that primary."""
    return {f"k:{{{tag_for_slot(shard['slots'][0][0])}}}": cluster.owner(shard["slots"][0][0])
            for shard in cluster.shards() if shard["slots"]}  # fmt: skip


def test_the_reported_tls_ports_are_used_with_tls(trc: geredis.RedisCluster,
                                                  tls_cluster: LocalCluster) -> None:  # fmt: skip
    for shard in tls_cluster.shards():  # TLS only: CLUSTER SHARDS has no plaintext port
        assert all("tls-port" in n and "port" not in n for n in shard["nodes"])
    assert {n.name for n in trc.get_nodes()} == {n.name for n in tls_cluster.nodes}
    assert len(trc.get_primaries()) == 3 and len(trc.get_replicas()) == 3
    assert trc.ping(target_nodes=geredis.RedisCluster.ALL_NODES) is True  # replicas too
    context = network.ssl_context(trc.settings)
    for node in trc.get_nodes():
        assert node.redis_connection.settings.ssl is True
        assert _is_tls(node.redis_connection), node.name
        assert network.ssl_context(node.redis_connection.settings) is context  # built once
    trc._refresher._use_slots = True  # CLUSTER SLOTS, as from a server before 7.0
    trc.refresh()
    assert {n.name for n in trc.get_nodes()} == {n.name for n in tls_cluster.nodes}
    assert trc.ping(target_nodes=geredis.RedisCluster.ALL_NODES) is True


def test_parse_shards_takes_the_tls_port_over_tls() -> None:
    # A node with both ports (plaintext and TLS, ``tls-cluster yes``), one
    # with the TLS port only, one reporting no TLS port (``tls-cluster no``:
    # the server then names only its plaintext port, the one to use).
    reply = [[b"slots", [0, 16383], b"nodes", [
        [b"id", b"a", b"port", 7000, b"tls-port", 8000, b"endpoint", b"10.0.0.1",
         b"role", b"master", b"health", b"online"],
        [b"id", b"b", b"tls-port", 8001, b"ip", b"10.0.0.2", b"role", b"replica"],
        [b"id", b"c", b"port", 7002, b"endpoint", b"?", b"role", b"replica"],
    ]]]  # fmt: skip
    over_tls = [(n.host, n.port) for n in parse_shards(reply, "asked", tls=True)[0].nodes]
    assert over_tls == [("10.0.0.1", 8000), ("10.0.0.2", 8001), ("asked", 7002)]
    plain = [(n.host, n.port) for n in parse_shards(reply, "asked")[0].nodes]
    assert plain == [("10.0.0.1", 7000), ("asked", 7002)]  # b has no plaintext port


def test_keyed_keyless_and_multi_slot_commands(trc: geredis.RedisCluster,
                                               tls_cluster: LocalCluster) -> None:  # fmt: skip
    owners = _one_key_per_primary(tls_cluster)
    assert len({owner.name for owner in owners.values()}) == 3
    for key, owner in owners.items():
        assert trc.set(key, key) is True
        assert trc.get_node_from_key(key).name == owner.name
        with owner.client() as direct:  # it is where the slot map says
            assert direct.get(key) == key.encode()
    keys = [f"m{i}" for i in range(30)]
    assert all(trc.mset_nonatomic({k: k.upper() for k in keys}))
    assert len({trc.keyslot(k) for k in keys}) > 3
    assert trc.mget_nonatomic(keys + ["missing"]) == [k.upper().encode() for k in keys] + [None]
    every = sorted(k.encode() for k in keys + list(owners))
    assert trc.dbsize(target_nodes=geredis.RedisCluster.PRIMARIES) == len(every)  # summed
    assert sorted(trc.keys(target_nodes=geredis.RedisCluster.PRIMARIES)) == every  # merged
    assert sorted(trc.scan_iter(match="m*")) == sorted(k.encode() for k in keys)
    assert trc.delete(*keys) == len(keys)  # split by slot


def test_pipeline_across_nodes(trc: geredis.RedisCluster, tls_cluster: LocalCluster) -> None:
    owners = list(_one_key_per_primary(tls_cluster))
    with trc.pipeline() as p:
        for key in owners:
            p.set(key, 1).incr(key).get(key)
        assert p.execute() == [True, 2, b"2"] * len(owners)
    tagged = [f"{{cart}}:{i}" for i in range(3)]
    with trc.pipeline(transaction=True) as p:  # MULTI/EXEC on the slot's node
        p.set(tagged[0], "a").rpush(tagged[1], "x").get(tagged[0])
        assert p.execute() == [True, 1, b"a"]


def test_url_with_tls_options(tls_cluster: LocalCluster, certs: Certs) -> None:
    host, port = tls_cluster.startup
    query = urlencode(dict(ssl_ca_certs=certs["ca.crt"], ssl_certfile=certs["client.crt"],
                           ssl_keyfile=certs["client.key"]))  # fmt: skip
    with geredis.RedisCluster.from_url(f"rediss://{host}:{port}?{query}", protocol=2,
                                       decode_responses=True) as rc:  # fmt: skip
        assert rc.settings.ssl is True
        owners = list(_one_key_per_primary(tls_cluster))
        for key in owners:
            assert rc.set(key, "v") is True
        assert rc.mget_nonatomic(owners) == ["v"] * len(owners)
        assert all(_is_tls(n.redis_connection) for n in rc.get_primaries())


def test_moved_and_ask_during_a_slot_migration(trc: geredis.RedisCluster,
                                               tls_cluster: LocalCluster) -> None:  # fmt: skip
    keys = list(keys_in_slot(SLOT, 4))
    for k in keys:
        trc.set(k, k)
    src = tls_cluster.owner(SLOT)
    dst = next(n for n in tls_cluster.primaries() if n is not src)
    try:
        tls_cluster.begin_migration(SLOT, src, dst)
        tls_cluster.migrate_keys(src, dst, keys[:2])  # MIGRATE between nodes, over TLS
        assert trc.get(keys[0]) == keys[0].encode()  # ASK: ASKING + GET at the importing node
        assert trc.redirects["AskError"] >= 1
        tls_cluster.migrate_keys(src, dst, keys[2:])
        tls_cluster.end_migration(SLOT, src, dst)
        assert trc.get(keys[3]) == keys[3].encode()  # MOVED, to the TLS port it names
        assert trc.redirects["MovedError"] >= 1
        assert trc.nodes_manager.slots_cache[SLOT][0].name == dst.name
        assert _is_tls(trc.nodes_manager.slots_cache[SLOT][0].redis_connection)
    finally:
        if tls_cluster.owner(SLOT) is not src:
            tls_cluster.migrate_slot(SLOT, src)
        tls_cluster.wait_ok()


def test_reads_from_replicas(trc: geredis.RedisCluster, tls_cluster: LocalCluster,
                             tls_kwargs: Dict[str, Any]) -> None:  # fmt: skip
    key = f"r:{{{tag_for_slot(SLOT)}}}"
    trc.set(key, "x")
    assert trc.wait(1, 5000, target_nodes=trc.get_node_from_key(key)) == 1  # replicated (TLS)
    replica = tls_cluster.replicas_of(tls_cluster.owner(SLOT))[0]

    def gets() -> int:
        stats = replica.call("INFO", "commandstats")
        return int(stats.get("cmdstat_get", {}).get("calls", 0))

    host, port = tls_cluster.startup
    before = gets()
    with geredis.RedisCluster(host=host, port=port, socket_timeout=10, **tls_kwargs,
                              load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS) as lb:
        for _ in range(5):
            assert lb.get(key) == b"x"  # READONLY was sent on the replica's TLS connection
    assert gets() - before == 5
    with geredis.RedisCluster(host=host, port=port, socket_timeout=10, **tls_kwargs,
                              read_from_replicas=True) as rr:  # fmt: skip
        assert [rr.get(key) for _ in range(4)] == [b"x"] * 4


def test_sharded_pubsub(trc: geredis.RedisCluster, tls_cluster: LocalCluster) -> None:
    channels = [f"orders:{{{tag}}}" for tag in (tag_for_slot(s) for s in (10, 6000, 12000))]
    assert len({tls_cluster.owner(key_slot(c.encode())).name for c in channels}) == 3
    got: List[Any] = []
    with trc.pubsub() as p:
        p.ssubscribe(**{c: got.append for c in channels})
        for c in channels:
            assert trc.spublish(c, "hi " + c) == 1
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert sorted(m["data"] for m in got) == sorted(f"hi {c}".encode() for c in channels)
        p.sunsubscribe()


def test_blocking_command_on_a_dedicated_connection(trc: geredis.RedisCluster) -> None:
    waiting = gevent.spawn(trc.blpop, ["jobs"], 10)
    gevent.sleep(0.1)
    assert trc.rpush("jobs", "j1") == 1
    assert list(waiting.get(timeout=10)) == [b"jobs", b"j1"]
    # Back in the pool (TLS as every connection here: the nodes have no plaintext port).
    assert trc.get_node_from_key("jobs").redis_connection._dedicated.in_use == 0


def test_wrong_ca_fails_promptly_with_a_connection_error(tls_cluster: LocalCluster,
                                                         certs: Certs) -> None:  # fmt: skip
    host, port = tls_cluster.startup
    wrong = dict(ssl=True, ssl_ca_certs=certs["other-ca.crt"], ssl_certfile=certs["client.crt"],
                 ssl_keyfile=certs["client.key"])  # fmt: skip
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="certificate") as info:
        geredis.RedisCluster(host=host, port=port, socket_timeout=5, **wrong)
    assert isinstance(info.value, redis.RedisClusterException)  # what redis-py raises
    assert isinstance(info.value.__cause__, TLSError)
    query = urlencode(dict(ssl_ca_certs=certs["other-ca.crt"]))
    with pytest.raises(redis.ConnectionError, match="certificate"):
        geredis.RedisCluster.from_url(f"rediss://{host}:{port}?{query}")
    with pytest.raises(redis.ConnectionError, match="cannot set up TLS"):  # unreadable key file
        geredis.RedisCluster(host=host, port=port, **dict(wrong, ssl_keyfile="/nonexistent.key"))
    with pytest.raises(redis.ConnectionError):  # plaintext to a TLS port: no hang either
        geredis.RedisCluster(host=host, port=port, socket_connect_timeout=2, socket_timeout=2)
    assert time.monotonic() - started < 10  # generous: the machine is shared
