"""Sentinel discovery and the clients it hands out, on a deployment at rest
(no failover here; see test_failover.py)."""

from __future__ import annotations

import gevent
import pytest
import redis
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

import geredis
from geredis.sentinel import Sentinel, SentinelResolver, connect, parse_sentinel_url
from geredis.sentinel.events import parse_event

from .topology import SERVICE, Topology, wait_for


def test_discover_master_and_replicas(topo: Topology, sentinel: Sentinel) -> None:
    primary = topo.primary_port()
    assert sentinel.discover_master(SERVICE) == ("127.0.0.1", primary)
    assert sentinel.discover_slaves(SERVICE) == [("127.0.0.1", p) for p in topo.replica_ports()]
    assert sentinel.discover_replicas(SERVICE) == sentinel.discover_slaves(SERVICE)
    with pytest.raises(MasterNotFoundError, match="No master found for 'nosuch'"):
        sentinel.discover_master("nosuch")
    assert sentinel.discover_slaves("nosuch") == []
    assert isinstance(MasterNotFoundError("x"), redis.ConnectionError)


def test_min_other_sentinels(topo: Topology) -> None:
    with Sentinel(topo.sentinel_addresses, min_other_sentinels=2, socket_timeout=2) as ok:
        assert ok.discover_master(SERVICE)[1] == topo.primary_port()
    with Sentinel(topo.sentinel_addresses, min_other_sentinels=3, socket_timeout=2) as strict:
        with pytest.raises(MasterNotFoundError):
            strict.discover_master(SERVICE)


def test_answering_sentinel_moves_to_the_front(topo: Topology) -> None:
    with Sentinel([("127.0.0.1", 1), *topo.sentinel_addresses[1:]], socket_timeout=2,
                  socket_connect_timeout=2) as manager:
        refused = manager.sentinels[0]
        assert manager.discover_master(SERVICE)[1] == topo.primary_port()
        assert manager.sentinels[0] is not refused  # port 1 refused: the next one answered
        assert manager.sentinels[1] is refused


def test_execute_command_on_sentinels(topo: Topology, sentinel: Sentinel) -> None:
    assert sentinel.execute_command("PING") is True
    replies = sentinel.execute_command("PING", return_responses=True)
    assert len(replies) == 3
    assert sentinel.sentinel_get_master_addr_by_name(SERVICE, return_responses=True) == [
        (b"127.0.0.1", topo.primary_port())
    ]
    masters = sentinel.sentinels[0].sentinel_masters()
    assert masters[SERVICE]["port"] == topo.primary_port()
    assert "127.0.0.1" in repr(sentinel)


def test_master_and_replica_clients(topo: Topology, sentinel: Sentinel) -> None:
    primary = sentinel.master_for(SERVICE, socket_timeout=2)
    replica = sentinel.slave_for(SERVICE, socket_timeout=2, decode_responses=True)
    try:
        assert isinstance(primary, geredis.Redis) and isinstance(replica, geredis.Redis)
        assert primary.set("disc:k", "v")
        topo.call(topo.primary_port(), "WAIT", 1, 5000)
        assert replica.get("disc:k") == "v"
        assert replica.execute_command("ROLE")[0] == "slave"
        with pytest.raises(redis.ReadOnlyError):
            replica.set("disc:k", "w")  # a replica refuses writes; the client stays put
        assert replica.get("disc:k") == "v"
        assert primary.execute_command("ROLE")[0] == b"master"
        assert "mymaster (sentinel primary)" in repr(primary)
        resolver = primary.settings.address_resolver
        assert isinstance(resolver, SentinelResolver)
        assert resolver.primary == ("127.0.0.1", topo.primary_port())
    finally:
        primary.close()
        replica.close()


def test_managed_client_is_a_full_client(topo: Topology, sentinel: Sentinel) -> None:
    r = sentinel.master_for(SERVICE, socket_timeout=2, decode_responses=True)
    try:
        with r.pipeline() as pipe:
            assert pipe.set("full:a", 1).incr("full:a").get("full:a").execute() == [True, 2, "2"]
        assert r.transaction(lambda p: p.multi() or p.incr("full:a"), "full:a") == [3]
        gevent.spawn_later(0.1, r.rpush, "full:jobs", "job")
        assert r.blpop(["full:jobs"], timeout=5) == ("full:jobs", "job")
        got = []
        with r.pubsub() as p:
            p.subscribe(**{"full:chan": got.append})
            assert r.publish("full:chan", "hi") == 1
            gevent.sleep(0.2)
        assert [m["data"] for m in got] == ["hi"]
        with r.client() as pinned:
            assert pinned.execute_command("ROLE")[0] == "master"
        with r.monitor() as m:
            r.get("full:a")
            # The sentinels' own commands (PUBLISH __sentinel__:hello, INFO)
            # show up in MONITOR too: look for ours among them.
            for seen in m.listen():
                if "full:a" in seen["command"]:
                    assert seen["command"].startswith("GET")
                    break
    finally:
        r.close()


def test_one_discovery_for_many_connections(topo: Topology, sentinel: Sentinel) -> None:
    first = sentinel.master_for(SERVICE, socket_timeout=2)
    r = sentinel.master_for(SERVICE, socket_timeout=2)
    try:
        first.ping()  # starts the event watcher, whose subscriptions check the primary
        wait_for(lambda: sentinel.events.subscribed == 3, 10, "subscriptions to the sentinels")
        # Ten blocking commands open ten dedicated connections at once: they
        # share one discovery.
        jobs = [gevent.spawn(r.blpop, [f"one:{i}"], 0.2) for i in range(10)]
        gevent.joinall(jobs, raise_error=True)
        assert r.settings.address_resolver.discoveries == 1
    finally:
        first.close()
        r.close()


def test_replica_client_falls_back_to_the_primary(topo: Topology, sentinel: Sentinel) -> None:
    (replica,) = topo.replica_ports()
    primary = topo.primary_port()
    topo.kill(replica)
    try:
        wait_for(lambda: sentinel.discover_slaves(SERVICE) == [], 20, "the replica to be down")
        r = sentinel.slave_for(SERVICE, socket_timeout=2)
        try:
            assert r.execute_command("ROLE")[0] == b"master"  # no replica: the primary
        finally:
            r.close()
    finally:
        topo.restart(replica, "--replicaof", "127.0.0.1", str(primary))
    r = sentinel.slave_for("nosuch", socket_timeout=2, retry=None)
    try:
        with pytest.raises(SlaveNotFoundError, match="No slave found for 'nosuch'"):
            r.get("k")
    finally:
        r.close()


def test_arguments_that_do_not_apply(topo: Topology, sentinel: Sentinel) -> None:
    with pytest.raises(ValueError, match="connection_pool_class"):
        sentinel.master_for(SERVICE, connection_pool_class=object)
    with pytest.raises(ValueError, match="host="):
        sentinel.master_for(SERVICE, host="10.0.0.1")
    with pytest.raises(TypeError, match="redis_class"):
        sentinel.master_for(SERVICE, redis_class=redis.Redis)
    r = sentinel.master_for(SERVICE, check_connection=True)
    r.close()


def test_connect_from_url(topo: Topology) -> None:
    hosts = ",".join(f"127.0.0.1:{port}" for _, port in topo.sentinel_addresses)
    manager, r = connect(f"redis+sentinel://{hosts}/{SERVICE}/2?socket_timeout=2"
                         "&decode_responses=true")
    try:
        assert r.set("url:k", "v") and r.get("url:k") == "v"
        assert r.settings.db == 2
    finally:
        r.close()
        manager.close()


def test_parse_sentinel_url() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://user:pw@h1:26380,h2/svc/3?socket_timeout=0.5"
        "&sentinel_password=spw&client_type=slave&min_other_sentinels=1"
    )
    assert parsed["sentinels"] == [("h1", 26380), ("h2", 26379)]
    assert parsed["service_name"] == "svc" and parsed["is_master"] is False
    assert parsed["connection_kwargs"] == {
        "db": 3, "socket_timeout": 0.5, "username": "user", "password": "pw"
    }
    assert parsed["sentinel_kwargs"] == {"socket_timeout": 0.5, "password": "spw"}
    assert parsed["min_other_sentinels"] == 1
    assert parse_sentinel_url("rediss+sentinel://h/s")["connection_kwargs"] == {"ssl": True}
    for bad in ("redis://h/s", "redis+sentinel://h", "redis+sentinel://h:x/s",
                "redis+sentinel://h/s?nosuch=1", "redis+sentinel://h/s?client_type=x"):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_parse_event() -> None:
    assert parse_event("+switch-master", "mymaster 127.0.0.1 6380 127.0.0.1 6381") == {
        "service": "mymaster", "old": ("127.0.0.1", 6380), "new": ("127.0.0.1", 6381)
    }
    assert parse_event("+sdown", "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6380") == {
        "kind": "slave", "service": "mymaster", "address": ("127.0.0.1", 6381),
        "master": ("127.0.0.1", 6380),
    }
    assert parse_event("+sdown", "master mymaster 127.0.0.1 6380") == {
        "kind": "master", "service": "mymaster", "address": ("127.0.0.1", 6380)
    }
    assert parse_event("+switch-master", "garbage") is None
