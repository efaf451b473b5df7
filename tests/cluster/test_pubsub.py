"""Pub/sub on a real cluster: channels on one node, shard channels at their
slot's primary, following a slot move and a failover."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import gevent
import pytest

import geredis

from .localcluster import LocalCluster, tag_for_slot


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not check():
        assert gevent.get_hub().loop.now() < deadline, "timed out"
        gevent.sleep(0.02)


@pytest.fixture
def got() -> Dict[str, List[Any]]:
    return {}


def handler(got: Dict[str, List[Any]]) -> Callable[[Dict[str, Any]], None]:
    def on_message(message: Dict[str, Any]) -> None:
        got.setdefault(message["channel"].decode(), []).append(message["data"])

    return on_message


def test_channels_and_shard_channels(rc: geredis.RedisCluster,
                                     got: Dict[str, List[Any]]) -> None:  # fmt: skip
    shard = [f"orders:{{{tag_for_slot(s)}}}" for s in (10, 6000, 12000)]  # three nodes
    with rc.pubsub() as p:
        p.subscribe(news=handler(got))
        p.psubscribe("feed.*")
        p.ssubscribe(**{name: handler(got) for name in shard})
        p.ssubscribe("plain-shard")
        assert len(p._shards) == 3 or len(p._shards) == 4
        assert set(p.shard_channels) == {c.encode() for c in shard} | {b"plain-shard"}
        rc.publish("news", "n1")  # counts the publishing node's subscribers only
        rc.publish("feed.a", "f1")
        for name in shard:
            assert rc.spublish(name, "s-" + name) == 1
        assert rc.spublish("plain-shard", "x") == 1
        _until(lambda: len(got) == 4)
        assert got["news"] == [b"n1"] and all(got[n] == [("s-" + n).encode()] for n in shard)
        messages = []
        _until(lambda: bool(messages.append(p.get_message(True, timeout=0.1)) or
                            len([m for m in messages if m]) == 2))  # fmt: skip
        data = sorted(m["data"] for m in messages if m)
        assert data == [b"f1", b"x"]
        p.sunsubscribe(shard[0])
        assert shard[0].encode() not in p.shard_channels
        assert rc.spublish(shard[0], "late") == 0
        p.sunsubscribe()
        assert not p.shard_channels and p._shards == {} or all(
            not s.subscribed for s in p._shards.values())


@pytest.fixture
def home(cluster: LocalCluster) -> Iterator[int]:
    slot = 3000
    owner = cluster.owner(slot)
    yield slot
    if cluster.owner(slot) is not owner:
        cluster.migrate_slot(slot, owner)
    cluster.wait_ok()


def test_shard_channel_follows_its_slot(rc: geredis.RedisCluster, cluster: LocalCluster,
                                        got: Dict[str, List[Any]], home: int) -> None:  # fmt: skip
    channel = f"orders:{{{tag_for_slot(home)}}}"
    notices: List[Any] = []
    with rc.pubsub(on_reconnect=notices.append) as p:
        p.ssubscribe(**{channel: handler(got)})
        assert rc.spublish(channel, "before") == 1
        _until(lambda: got.get(channel) == [b"before"])
        src = cluster.owner(home)
        dst = next(n for n in cluster.primaries() if n is not src)
        cluster.migrate_slot(home, dst)  # the server ends the subscription there
        _until(lambda: bool(notices))  # moved: a reconnect-like notice
        assert list(p._shards) == [f"127.0.0.1:{dst.port}"]
        assert rc.spublish(channel, "after") == 1  # MOVED, then the new owner
        _until(lambda: got[channel] == [b"before", b"after"])
        # A failover: the replica of the new owner takes over.
        cluster.failover(cluster.replicas_of(dst)[0])
        rc.refresh()
        new = cluster.owner(home)
        _until(lambda: list(p._shards) == [f"127.0.0.1:{new.port}"])
        _until(lambda: rc.spublish(channel, "failed-over") == 1)
        _until(lambda: got[channel][-1] == b"failed-over")
        assert p.subscribed and channel.encode() in p.shard_channels
