"""geredis returns what redis.Redis returns: the same calls, from each command
family, run through both clients against one server, compared value by value.

Each scenario runs its calls on a fresh key space (``{p}`` is replaced by a
per-client prefix) so the two clients never see each other's keys.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import pytest
import redis

import geredis

from .conftest import RedisServer

Call = Callable[[Any, str], Any]

SCENARIOS: Dict[str, List[Call]] = {
    "strings": [
        lambda c, p: c.set(f"{p}s", "v", ex=100),
        lambda c, p: c.get(f"{p}s"),
        lambda c, p: c.set(f"{p}s", "w", get=True),
        lambda c, p: c.set(f"{p}ok", "OK"),  # SET's reply shapes (geredis answers OK first)
        lambda c, p: c.set(f"{p}ok", "x", get=True),  # the old value "OK", not True
        lambda c, p: c.set(f"{p}ok", "y", nx=True),
        lambda c, p: c.set(f"{p}missing", "y", xx=True),
        lambda c, p: c.set(f"{p}missing", "y", get=True),
        lambda c, p: c.execute_command("SET", f"{p}raw", "z"),
        lambda c, p: c.getrange(f"{p}s", 0, 0),
        lambda c, p: c.append(f"{p}s", "x"),
        lambda c, p: c.incrbyfloat(f"{p}f", 1.5),
        lambda c, p: c.incr(f"{p}i", 7),
        lambda c, p: c.decr(f"{p}i"),
        lambda c, p: c.mset({f"{p}a": 1, f"{p}b": 2}),
        lambda c, p: c.mget(f"{p}a", f"{p}b", f"{p}none"),
        lambda c, p: c.setnx(f"{p}a", 3),
        lambda c, p: c.strlen(f"{p}s"),
        lambda c, p: c.getdel(f"{p}a"),
        lambda c, p: c.ttl(f"{p}s") > 0,
        lambda c, p: c.exists(f"{p}s", f"{p}b", f"{p}zz"),
        lambda c, p: c.type(f"{p}s"),
        lambda c, p: c.setbit(f"{p}bits", 7, 1),
        lambda c, p: c.bitcount(f"{p}bits"),
    ],
    "hashes": [
        lambda c, p: c.hset(f"{p}h", mapping={"a": 1, "b": "two", "c": 3.5}),
        lambda c, p: c.hget(f"{p}h", "a"),
        lambda c, p: c.hgetall(f"{p}h"),
        lambda c, p: c.hmget(f"{p}h", ["a", "zz"]),
        lambda c, p: c.hincrby(f"{p}h", "a", 2),
        lambda c, p: c.hincrbyfloat(f"{p}h", "c", 0.25),
        lambda c, p: sorted(c.hkeys(f"{p}h")),
        lambda c, p: c.hlen(f"{p}h"),
        lambda c, p: c.hexists(f"{p}h", "b"),
        lambda c, p: c.hdel(f"{p}h", "b", "zz"),
        lambda c, p: sorted(c.hscan_iter(f"{p}h")),
    ],
    "lists": [
        lambda c, p: c.rpush(f"{p}l", 1, 2, 3, "four"),
        lambda c, p: c.lpush(f"{p}l", 0),
        lambda c, p: c.lrange(f"{p}l", 0, -1),
        lambda c, p: c.lindex(f"{p}l", 2),
        lambda c, p: c.lpop(f"{p}l"),
        lambda c, p: c.rpop(f"{p}l", 2),
        lambda c, p: c.llen(f"{p}l"),
        lambda c, p: c.lpos(f"{p}l", 2),
        lambda c, p: c.lmove(f"{p}l", f"{p}l2", "LEFT", "RIGHT"),
        lambda c, p: c.lrange(f"{p}l2", 0, -1),
        lambda c, p: c.lpop(f"{p}empty"),
    ],
    "sets": [
        lambda c, p: c.sadd(f"{p}s1", "a", "b", "c"),
        lambda c, p: c.sadd(f"{p}s2", "b", "c", "d"),
        lambda c, p: c.smembers(f"{p}s1"),
        lambda c, p: c.sinter(f"{p}s1", f"{p}s2"),
        lambda c, p: c.sunion(f"{p}s1", f"{p}s2"),
        lambda c, p: c.sismember(f"{p}s1", "a"),
        lambda c, p: c.smismember(f"{p}s1", ["a", "z"]),
        lambda c, p: c.scard(f"{p}s2"),
        lambda c, p: c.srem(f"{p}s1", "a"),
        lambda c, p: sorted(c.sscan_iter(f"{p}s2")),
    ],
    "sorted sets": [
        lambda c, p: c.zadd(f"{p}z", {"a": 1, "b": 2.5, "c": -3}),
        lambda c, p: c.zrange(f"{p}z", 0, -1),
        lambda c, p: c.zrange(f"{p}z", 0, -1, withscores=True),
        lambda c, p: c.zrevrange(f"{p}z", 0, 1, withscores=True),
        lambda c, p: c.zrangebyscore(f"{p}z", 0, 10, withscores=True),
        lambda c, p: c.zscore(f"{p}z", "b"),
        lambda c, p: c.zincrby(f"{p}z", 1, "a"),
        lambda c, p: c.zrank(f"{p}z", "a"),
        lambda c, p: c.zcard(f"{p}z"),
        lambda c, p: c.zpopmin(f"{p}z"),
        lambda c, p: c.zmscore(f"{p}z", ["a", "zz"]),
        lambda c, p: sorted(c.zscan_iter(f"{p}z")),
    ],
    "streams": [
        lambda c, p: c.xadd(f"{p}x", {"f": "v"}, id="1-0"),
        lambda c, p: c.xadd(f"{p}x", {"f": "w", "g": 1}, id="2-0"),
        lambda c, p: c.xlen(f"{p}x"),
        lambda c, p: c.xrange(f"{p}x"),
        lambda c, p: c.xrevrange(f"{p}x", count=1),
        lambda c, p: c.xread({f"{p}x": "0-0"}, count=5),
        lambda c, p: c.xgroup_create(f"{p}x", "g", id="0"),
        lambda c, p: c.xreadgroup("g", "consumer", {f"{p}x": ">"}),
        lambda c, p: c.xpending(f"{p}x", "g"),
        lambda c, p: c.xack(f"{p}x", "g", "1-0"),
        lambda c, p: c.xinfo_groups(f"{p}x")[0]["name"],
        lambda c, p: c.xtrim(f"{p}x", maxlen=1),
    ],
    "keys and scan": [
        lambda c, p: c.mset({f"{p}k{i}": i for i in range(30)}),
        lambda c, p: sorted(c.scan_iter(match=f"{p}k*", count=7)),
        lambda c, p: sorted(c.keys(f"{p}k1*")),
        lambda c, p: c.expire(f"{p}k1", 100),
        lambda c, p: c.persist(f"{p}k1"),
        lambda c, p: c.rename(f"{p}k2", f"{p}renamed"),
        lambda c, p: c.delete(f"{p}k3", f"{p}k4", f"{p}none"),
        lambda c, p: c.object("encoding", f"{p}k5"),
        lambda c, p: c.copy(f"{p}k6", f"{p}copied"),
    ],
    "server": [
        lambda c, p: sorted(c.info("server").keys()) == sorted(c.info("server").keys()),
        lambda c, p: c.info("keyspace") is not None,
        lambda c, p: c.config_get("maxmemory*").keys(),
        lambda c, p: c.config_set("slowlog-max-len", 128),
        lambda c, p: c.echo("hello"),
        lambda c, p: c.ping(),
        lambda c, p: isinstance(c.time()[0], int),
        lambda c, p: type(c.dbsize()),
        lambda c, p: type(c.memory_usage(f"{p}none")),
        lambda c, p: c.command_count() > 100,
    ],
    "scripts": [
        lambda c, p: c.eval("return {KEYS[1], ARGV[1], 3}", 1, f"{p}key", "arg"),
        lambda c, p: c.script_load("return redis.call('GET', KEYS[1])"),
        lambda c, p: c.set(f"{p}sk", "val"),
        lambda c, p: c.evalsha(
            c.script_load("return redis.call('GET', KEYS[1])"), 1, f"{p}sk"
        ),
        lambda c, p: c.script_exists("0" * 40),
        lambda c, p: c.register_script("return ARGV[1]")(args=["via Script"]),
        lambda c, p: c.eval("return redis.status_reply('FINE')", 0),
        lambda c, p: c.eval("return 3.99", 0),
    ],
    "geo and hyperloglog": [
        lambda c, p: c.geoadd(f"{p}g", (13.361389, 38.115556, "Palermo")),
        lambda c, p: c.geoadd(f"{p}g", (15.087269, 37.502669, "Catania")),
        lambda c, p: round(c.geodist(f"{p}g", "Palermo", "Catania", unit="km"), 3),
        lambda c, p: c.pfadd(f"{p}hll", "a", "b", "c"),
        lambda c, p: c.pfcount(f"{p}hll"),
    ],
}


@pytest.fixture(scope="module")
def clients(redis_server: RedisServer) -> Iterator[Dict[str, Any]]:
    made: Dict[str, Any] = {}
    for protocol in (2, 3):
        for decode in (False, True):
            kw = dict(port=redis_server.port, protocol=protocol, decode_responses=decode)
            made[f"geredis-{protocol}-{decode}"] = geredis.Redis(**kw)
            made[f"redis-py-{protocol}-{decode}"] = redis.Redis(**kw)
    for c in made.values():
        c.ping()  # connect now, so per-test leak checks see these as existing
    yield made
    for c in made.values():
        c.close()


def _run(client: Any, prefix: str, calls: List[Call]) -> List[Any]:
    out: List[Any] = []
    for call in calls:
        try:
            result = call(client, prefix)
        except redis.RedisError as exc:
            result = ("error", type(exc).__name__, str(exc))
        out.append(result)
    return out


def _strip_prefix(value: Any, prefix: str) -> Any:
    if isinstance(value, bytes):
        return value.replace(prefix.encode(), b"{p}")
    if isinstance(value, str):
        return value.replace(prefix, "{p}")
    if isinstance(value, (list, tuple)):
        return type(value)(_strip_prefix(v, prefix) for v in value)
    if isinstance(value, (set, frozenset)):
        return {_strip_prefix(v, prefix) for v in value}
    if isinstance(value, dict):
        return {_strip_prefix(k, prefix): _strip_prefix(v, prefix) for k, v in value.items()}
    return value


@pytest.mark.parametrize("family", sorted(SCENARIOS))
@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [False, True])
def test_same_results_as_redis_py(
    clients: Dict[str, Any], family: str, protocol: int, decode: bool
) -> None:
    calls = SCENARIOS[family]
    tag = f"{family.replace(' ', '_')}:{protocol}:{decode}:"
    ours = _run(clients[f"geredis-{protocol}-{decode}"], "g:" + tag, calls)
    theirs = _run(clients[f"redis-py-{protocol}-{decode}"], "r:" + tag, calls)
    assert _strip_prefix(ours, "g:" + tag) == _strip_prefix(theirs, "r:" + tag)
