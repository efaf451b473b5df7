"""Routing on a real cluster: every key family lands on its slot's node,
hash tags keep keys together, keyless commands go where redis-py sends them
and their replies are merged the way redis-py merges them."""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import gevent
import pytest
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

import geredis

from .localcluster import LocalCluster

# (key, write, read, expected read) for each key family.
FAMILIES: List[Tuple[str, Callable[[Any, str], Any], Callable[[Any, str], Any], Any]] = [
    ("str", lambda r, k: r.set(k, "v"), lambda r, k: r.get(k), b"v"),
    ("cnt", lambda r, k: r.incrby(k, 5), lambda r, k: r.get(k), b"5"),
    ("hash", lambda r, k: r.hset(k, mapping={"f": "v"}), lambda r, k: r.hget(k, "f"), b"v"),
    ("list", lambda r, k: r.rpush(k, "a", "b"), lambda r, k: r.lrange(k, 0, -1), [b"a", b"b"]),
    ("set", lambda r, k: r.sadd(k, "m"), lambda r, k: r.smembers(k), {b"m"}),
    ("zset", lambda r, k: r.zadd(k, {"m": 2}), lambda r, k: r.zscore(k, "m"), 2.0),
    ("hll", lambda r, k: r.pfadd(k, "a", "b"), lambda r, k: r.pfcount(k), 2),
    ("bits", lambda r, k: r.setbit(k, 7, 1), lambda r, k: r.getbit(k, 7), 1),
    ("geo", lambda r, k: r.geoadd(k, (13.36, 38.11, "p")), lambda r, k: r.geohash(k, "p")[0][:4],
     "sqc8"),
    ("stream", lambda r, k: r.xadd(k, {"f": "v"}, id="1-1"), lambda r, k: r.xlen(k), 1),
    ("ttl", lambda r, k: r.set(k, "v", ex=100), lambda r, k: 0 < r.ttl(k) <= 100, True),
    ("json-ish", lambda r, k: r.append(k, "ab"), lambda r, k: r.strlen(k), 2),
]


@pytest.mark.parametrize("family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_key_family_lands_on_its_slots_node(
    rc: geredis.RedisCluster, cluster: LocalCluster, family: Any
) -> None:
    name, write, read, expected = family
    for i in range(6):  # keys spread over the nodes
        key = f"{name}:{i}"
        write(rc, key)
        assert read(rc, key) == expected
        owner = cluster.owner(key_slot(key.encode()))
        with owner.client() as direct:  # the key is where the slot map says
            assert direct.exists(key) == 1


def test_hash_tags_keep_keys_together(rc: geredis.RedisCluster, cluster: LocalCluster) -> None:
    keys = [f"{{user:42}}:{field}" for field in ("name", "mail", "cart", "seen")]
    assert len({rc.keyslot(k) for k in keys}) == 1
    assert rc.mset({k: k for k in keys}) is True  # one slot: one command
    assert rc.mget(keys) == [k.encode() for k in keys]
    assert rc.rename(keys[0], "{user:42}:renamed") is True
    assert rc.sunionstore("{user:42}:u", ["{user:42}:s1"]) == 0
    owner = cluster.owner(rc.keyslot(keys[0]))
    with owner.client() as direct:
        assert direct.exists(*keys[1:], "{user:42}:renamed") == 4


def test_cross_slot_commands_are_refused_before_sending(rc: geredis.RedisCluster) -> None:
    for call in (lambda: rc.mget("a", "b"), lambda: rc.rename("a", "b"),
                 lambda: rc.sunionstore("x", ["a", "b"])):  # fmt: skip
        with pytest.raises(RedisClusterException, match="same key slot"):
            call()
    with pytest.raises(RedisClusterException, match="Missing key"):
        rc.execute_command("ECHO", "x")  # keyless, no flag: redis-py's rule


def test_keyless_commands_and_merged_replies(rc: geredis.RedisCluster,
                                             cluster: LocalCluster) -> None:  # fmt: skip
    keys = [f"key{i}" for i in range(50)]
    for k in keys:
        rc.set(k, 1)
    assert rc.ping() is True  # default node
    assert rc.ping(target_nodes=geredis.RedisCluster.ALL_NODES) is True
    assert rc.dbsize(target_nodes=geredis.RedisCluster.PRIMARIES) == 50  # summed
    assert sorted(rc.keys(target_nodes=geredis.RedisCluster.PRIMARIES)) == sorted(
        k.encode() for k in keys)  # merged lists
    assert sorted(rc.scan_iter(match="key*", count=7)) == sorted(k.encode() for k in keys)
    info = rc.info(target_nodes=geredis.RedisCluster.ALL_NODES)
    assert set(info) == {n.name for n in rc.get_nodes()}  # one dict per node
    assert rc.info()["cluster_enabled"] == 1  # default node: one dict
    sha = rc.script_load("return 1")  # every primary, one answer
    assert rc.script_exists(sha) == [True]
    assert rc.evalsha(sha, 0) == 1
    assert rc.eval("return KEYS[1]", 1, "key7") == b"key7"
    node = rc.get_primaries()[1]
    assert rc.dbsize(target_nodes=node) == sum(
        1 for k in keys if rc.get_node_from_key(k) is node)
    assert rc.time(target_nodes=geredis.RedisCluster.RANDOM)[0] > 0
    assert rc.cluster_info()["cluster_state"] == "ok"
    assert rc.cluster_keyslot("key7") == rc.keyslot("key7")
    assert rc.cluster_countkeysinslot(rc.keyslot("key7")) == 1
    assert len(rc.cluster_shards()) == 3
    assert rc.flushall() is not None
    assert rc.dbsize(target_nodes=geredis.RedisCluster.PRIMARIES) == 0


def test_pubsub_numbers_and_publish(rc: geredis.RedisCluster) -> None:
    assert rc.publish("news", "x") == 0  # routed by the channel's slot
    assert rc.pubsub_numpat() == 0
    assert rc.pubsub_channels() == []
    assert rc.spublish("orders", "x") == 0


def test_response_shapes_follow_the_protocol(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    with geredis.RedisCluster(host=host, port=port, decode_responses=True) as r:
        r.zadd("z", {"a": 1, "b": 2})
        assert r.zrange("z", 0, -1, withscores=True) == [("a", 1.0), ("b", 2.0)]
        r.hset("h", mapping={"x": "1"})
        assert r.hgetall("h") == {"x": "1"}
        assert r.dump("z") is not None  # NEVER_DECODE: bytes even when decoding
        assert isinstance(r.dump("z"), bytes)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            r.get("z")


def test_many_greenlets_share_one_connection_per_node(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    with geredis.RedisCluster(host=host, port=port, client_name="fanout") as rc:
        def work(i: int) -> None:
            assert rc.set(f"g{i}", i) is True
            assert rc.get(f"g{i}") == str(i).encode()
            assert rc.incr(f"c{i % 7}") >= 1

        rc.delete(*[f"c{i}" for i in range(7)])
        gevent.joinall([gevent.spawn(work, i) for i in range(2000)], raise_error=True)
        assert sum(int(rc.get(f"c{i}")) for i in range(7)) == 2000
        for node in rc.get_primaries():
            conn = node.redis_connection._connection
            assert conn is not None and conn.pending == 0
        per_node = rc.client_list(target_nodes=geredis.RedisCluster.PRIMARIES)
        for clients in per_node.values():  # one connection per node carried it all
            assert sum(1 for c in clients if c.get("name") == "fanout") == 1
