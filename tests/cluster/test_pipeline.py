"""Multi-key work on a real cluster: commands split by slot, pipelines grouped
per node with redirections re-batched, transactions on one slot."""

from __future__ import annotations

from typing import Iterator, List

import gevent
import pytest
import redis
from redis.exceptions import CrossSlotTransactionError, RedisClusterException, ResponseError

import geredis

from .localcluster import LocalCluster, keys_in_slot

SLOT = 2000


@pytest.fixture
def home(cluster: LocalCluster) -> Iterator[None]:
    """SLOT goes back to its first owner after the test."""
    owner = cluster.owner(SLOT)
    yield
    if cluster.owner(SLOT) is not owner:
        cluster.migrate_slot(SLOT, owner)
    cluster.wait_ok()


def test_multi_key_commands_are_split_by_slot(rc: geredis.RedisCluster,
                                              cluster: LocalCluster) -> None:  # fmt: skip
    keys = [f"key:{i}" for i in range(300)]
    assert rc.mset_nonatomic({k: k.upper() for k in keys}) == [True] * len(
        {rc.keyslot(k) for k in keys})
    assert rc.mget_nonatomic(keys) == [k.upper().encode() for k in keys]
    assert rc.mget_nonatomic(keys[::-1] + ["missing"]) == [
        k.upper().encode() for k in keys[::-1]] + [None]
    assert rc.exists(*keys, "missing") == 300
    assert rc.touch(*keys[:10]) == 10
    assert rc.delete(*keys[:100]) == 100
    assert rc.unlink(*keys[100:200], "missing") == 100
    assert rc.exists(*keys) == 100
    # One slot stays one command.
    tagged = [f"{{t}}:{i}" for i in range(20)]
    rc.mset_nonatomic({k: 1 for k in tagged})
    before = cluster.command_calls("mget", primaries=True)
    assert rc.mget_nonatomic(tagged) == [b"1"] * 20
    assert cluster.command_calls("mget", primaries=True) == before + 1


def test_pipeline_across_nodes(rc: geredis.RedisCluster) -> None:
    with rc.pipeline() as pipe:
        assert isinstance(pipe, redis.cluster.ClusterPipeline)
        for i in range(50):
            pipe.set(f"p{i}", i).incr(f"n{i}")
        pipe.hset("h", mapping={"a": "1"}).hgetall("h")
        pipe.zadd("z", {"m": 1.5}).zrange("z", 0, -1, withscores=True)
        pipe.get("p7").type("p7")
        results = pipe.execute()
    assert results[:100] == [True, 1] * 50
    assert results[100:] == [1, {b"a": b"1"}, 1, [(b"m", 1.5)], b"7", b"string"]
    assert len(pipe) == 0


def test_pipeline_errors(rc: geredis.RedisCluster) -> None:
    rc.set("s", "x")
    pipe = rc.pipeline()
    pipe.set("a", 1).lpush("s", 1).get("a")
    with pytest.raises(ResponseError, match=r"Command # 2 \(LPUSH s 1\).*WRONGTYPE"):
        pipe.execute()
    pipe.set("a", 2).lpush("s", 1).get("a")
    a, err, got = pipe.execute(raise_on_error=False)
    assert a is True and isinstance(err, ResponseError) and got == b"2"
    pipe.set("x", 1).lmove("a", "b")  # keys in several slots
    with pytest.raises(RedisClusterException, match="same key slot"):
        pipe.execute()
    assert rc.exists("x") == 0  # refused before anything was sent
    with pytest.raises(RedisClusterException, match="blocked"):
        pipe.mget("a", "b")  # redis-py's rule for cluster pipelines
    with pytest.raises(RedisClusterException, match="transactional context"):
        pipe.multi()


def test_pipeline_redirections_are_rebatched(rc: geredis.RedisCluster, cluster: LocalCluster,
                                             home: None) -> None:  # fmt: skip
    moved = list(keys_in_slot(SLOT, 20))
    still = [f"other:{i}" for i in range(20)]
    rc.mset_nonatomic({k: "v" for k in moved + still})
    src = cluster.owner(SLOT)
    dst = next(n for n in cluster.primaries() if n is not src)
    cluster.migrate_slot(SLOT, dst)
    sets = cluster.command_calls("set", primaries=True)
    with rc.pipeline() as pipe:  # MOVED for the first 20, in the middle of the rest
        for k in moved + still:
            pipe.get(k)
            pipe.set(k, "w")
        assert pipe.execute() == [b"v", True] * 40
    assert rc.nodes_manager.slots_cache[SLOT][0].name == dst.name
    assert cluster.command_calls("set", primaries=True) - sets == 40  # each ran once
    assert rc.mget_nonatomic(moved + still) == [b"w"] * 40


def test_pipeline_with_ask_during_a_migration(rc: geredis.RedisCluster, cluster: LocalCluster,
                                              home: None) -> None:  # fmt: skip
    keys = list(keys_in_slot(SLOT, 10))
    rc.mset_nonatomic({k: k for k in keys})
    src = cluster.owner(SLOT)
    dst = next(n for n in cluster.primaries() if n is not src)
    cluster.begin_migration(SLOT, src, dst)
    cluster.migrate_keys(src, dst, keys[:5])
    with rc.pipeline() as pipe:
        for k in keys:
            pipe.get(k)
        assert pipe.execute() == [k.encode() for k in keys]
    cluster.migrate_keys(src, dst, keys[5:])
    cluster.end_migration(SLOT, src, dst)


def test_big_pipelines_run_on_dedicated_connections(cluster: LocalCluster) -> None:
    host, port = cluster.startup
    with geredis.RedisCluster(host=host, port=port, pipeline_threshold=100) as r:
        with r.pipeline() as pipe:
            for i in range(3000):
                pipe.set(f"big{i}", i)
            assert pipe.execute() == [True] * 3000
        for node in r.get_primaries():
            pool = node.redis_connection._dedicated
            assert pool.in_use == 0 and len(pool._idle) == 1  # used, given back
        assert r.mget_nonatomic([f"big{i}" for i in range(3000)])[2999] == b"2999"


def test_transactions_on_one_slot(rc: geredis.RedisCluster, home: None,
                                  cluster: LocalCluster) -> None:  # fmt: skip
    keys = list(keys_in_slot(SLOT, 3))
    with rc.pipeline(transaction=True) as pipe:
        pipe.set(keys[0], 1).incr(keys[0]).rpush(keys[1], "a").lrange(keys[1], 0, -1)
        assert pipe.execute() == [True, 2, 1, [b"a"]]
    with rc.pipeline(transaction=True) as pipe:
        pipe.set("a", 1).set("b", 1)
        with pytest.raises(CrossSlotTransactionError):
            pipe.execute()
    with rc.pipeline(transaction=True) as pipe:
        pipe.set(keys[0], "x").incr(keys[0])  # queued, then EXEC reports the error
        with pytest.raises(ResponseError):
            pipe.execute()
    # The slot moves: the transaction (refused while queueing, nothing ran)
    # is sent to the new owner.
    cluster.migrate_slot(SLOT, next(n for n in cluster.primaries()
                                    if n is not cluster.owner(SLOT)))  # fmt: skip
    with rc.pipeline(transaction=True) as pipe:
        pipe.incr(keys[2]).incr(keys[2])
        assert pipe.execute() == [1, 2]
    assert rc.get(keys[2]) == b"2"


def test_watch_transactions_under_contention(rc: geredis.RedisCluster) -> None:
    rc.set("{acct}:balance", 0)

    def deposit(pipe: geredis.cluster.pipeline.ClusterPipeline) -> None:
        balance = int(pipe.get("{acct}:balance"))
        gevent.sleep(0)  # let others interleave: WATCH must catch them
        pipe.multi()
        pipe.set("{acct}:balance", balance + 1)
        pipe.rpush("{acct}:log", "+1")

    workers = [gevent.spawn(rc.transaction, deposit, "{acct}:balance") for _ in range(30)]
    gevent.joinall(workers, raise_error=True)
    assert rc.get("{acct}:balance") == b"30"
    assert rc.llen("{acct}:log") == 30
    for node in rc.get_primaries():
        assert node.redis_connection._dedicated.in_use == 0  # leases given back


def test_blocking_commands_use_a_dedicated_connection(rc: geredis.RedisCluster) -> None:
    popper = gevent.spawn(rc.blpop, ["jobs"], 5)
    gevent.sleep(0.1)
    for i in range(100):  # the shared connections keep flowing meanwhile
        assert rc.set(f"k{i}", i) is True
    assert rc.rpush("jobs", "work") == 1
    assert popper.get(timeout=5) == (b"jobs", b"work") or popper.value == [b"jobs", b"work"]
    assert rc.blpop(["nothing"], 0.2) is None
    # A caller that gives up closes its connection: the BLPOP cannot pop an
    # item into nowhere afterwards.
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.2):
            rc.blpop(["later"], 0)
    rc.rpush("later", "kept")
    gevent.sleep(0.2)
    assert rc.lrange("later", 0, -1) == [b"kept"]


def test_split_commands_follow_redirections(rc: geredis.RedisCluster, cluster: LocalCluster,
                                            home: None) -> None:  # fmt: skip
    moved = list(keys_in_slot(SLOT, 5))
    others = [f"o:{i}" for i in range(30)]
    rc.mset_nonatomic({k: k for k in moved + others})
    src = cluster.owner(SLOT)
    dst = next(n for n in cluster.primaries() if n is not src)
    cluster.migrate_slot(SLOT, dst)  # the client's map is stale for SLOT
    assert rc.mget_nonatomic(others + moved) == [k.encode() for k in others + moved]
    cluster.migrate_slot(SLOT, src)
    assert rc.delete(*moved, *others[:3]) == 8  # a write: MOVED, nothing ran, sent again
    rc.mset_nonatomic({k: "v" for k in moved})
    cluster.begin_migration(SLOT, src, dst)  # ASK for keys already moved
    cluster.migrate_keys(src, dst, moved[:2])
    assert rc.mget_nonatomic(moved[:2] + others[3:5]) == [b"v"] * 2 + [
        k.encode() for k in others[3:5]]  # ASK (all the slot's keys asked for moved)
    # Keys of one slot split between both nodes: TRYAGAIN until the end.
    ender = gevent.spawn_later(0.3, lambda: (cluster.migrate_keys(src, dst, moved[2:]),
                                             cluster.end_migration(SLOT, src, dst)))
    assert rc.mget_nonatomic(moved + others[3:5]) == [b"v"] * 5 + [k.encode() for k in others[3:5]]
    ender.get()


def test_pipelines_with_commands_that_cannot_share(rc: geredis.RedisCluster) -> None:
    rc.rpush("q", "a")
    with rc.pipeline() as pipe:  # a blocking command: its node's batch on a dedicated connection
        pipe.blpop(["q"], 1).set("after", 1)
        popped, done = pipe.execute()
        assert list(popped) == [b"q", b"a"] and done is True
    for node in rc.get_primaries():
        assert node.redis_connection._dedicated.in_use == 0
    with rc.pipeline() as pipe:
        pipe.execute_command("SUBSCRIBE", "ch")
        with pytest.raises(geredis.SharedConnectionError):
            pipe.execute()
