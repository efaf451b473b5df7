"""Failovers under load, with real sentinels: ``SENTINEL FAILOVER`` and a
primary killed with SIGKILL.

Each worker greenlet writes values unique to one operation to a key of its
own and reads them back, so a reply handed to the wrong caller shows. After
the client has moved, workers write keys of a second phase: none of them may
reach the old primary (which stays a primary, unaware, for seconds after a
manual failover, and comes back as one after the kill), and every
acknowledged one must be on the new primary.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Dict, List

import gevent
import pytest
import redis

import geredis
from geredis.sentinel import Sentinel
from geredis.sentinel.events import PROMOTING

from .topology import SERVICE, Topology, wait_for

_tags = itertools.count()

#: What the client may raise while the primary moves.
MOVING = (redis.ConnectionError, redis.TimeoutError)


class Load:
    """``count`` workers on one client; see the module comment."""

    def __init__(self, client: geredis.Redis, count: int, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.phase = "pre"
        self.stop = False
        self.ok = 0
        self.errors: Dict[str, int] = {}
        self.wrong: List[Any] = []
        self.slowest = 0.0
        self.acked_post: List[str] = []
        self.tag = f"t{next(_tags)}"  # keys of earlier tests may have replicated anywhere
        self.greenlets = [gevent.spawn(self._work, i) for i in range(count)]

    def _op(self, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return self.client.execute_command(*args)
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)

    def _work(self, worker: int) -> None:
        n = 0
        while not self.stop:
            n += 1
            phase = self.phase
            key, value = f"{self.tag}:{phase}:{worker}", f"{worker}:{n}"
            try:
                self._op("SET", key, value)
                if phase == "post":
                    self.acked_post.append(key)
                got = self._op("GET", key)
                if got is not None and not got.startswith(f"{worker}:"):
                    self.wrong.append((key, value, got))
                self.ok += 1
            except MOVING as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                gevent.sleep(0.01)

    def finish(self) -> None:
        self.stop = True
        # Every caller returns within its bound: nobody stays stuck.
        gevent.joinall(self.greenlets, timeout=self.timeout * 10, raise_error=True)
        assert all(g.dead for g in self.greenlets), "workers stuck after the failover"


def moved(client: geredis.Redis, old: int) -> bool:
    resolver = client.settings.address_resolver
    return resolver.primary is not None and resolver.primary[1] != old


def check_post_phase(topo: Topology, load: Load, old: int, new: int) -> None:
    assert load.acked_post, "no write succeeded after the failover"
    assert topo.call(old, "KEYS", f"{load.tag}:post:*") == [], "a write reached the old primary"
    on_new = set(topo.call(new, "KEYS", f"{load.tag}:post:*"))
    assert set(load.acked_post) <= on_new
    assert not load.wrong, f"replies to the wrong caller: {load.wrong[:5]}"
    assert load.slowest < load.timeout * 12


@pytest.mark.timeout(180)
def test_sentinel_failover_under_load(topo: Topology, sentinel: Sentinel) -> None:
    client = sentinel.master_for(SERVICE, socket_timeout=3, decode_responses=True)
    replica = sentinel.slave_for(SERVICE, socket_timeout=3, decode_responses=True)
    messages: List[str] = []
    reconnects: List[Any] = []
    pubsub = client.pubsub(on_reconnect=reconnects.append)
    try:
        pubsub.subscribe(**{"news": lambda m: messages.append(m["data"])})
        load = Load(client, 1000, timeout=3)
        wait_for(lambda: load.ok > 2000, 30, "the load to run")
        popped: List[Any] = []
        blocked = gevent.spawn(lambda: popped.append(client.blpop(["jobs"], timeout=0)))
        gevent.sleep(0.1)
        old = topo.failover()
        wait_for(lambda: moved(client, old), 30, "the client to move")
        load.phase = "post"
        new = topo.wait_primary_change(old)
        assert client.settings.address_resolver.primary == ("127.0.0.1", new)
        assert client.stats().failovers == 1
        # The client followed the promotion itself, then the switch.
        assert sentinel.events.seen.get(PROMOTING) and sentinel.events.seen.get("+switch-master")
        wait_for(lambda: len(load.acked_post) > 1000, 30, "writes on the new primary")
        load.finish()
        check_post_phase(topo, load, old, new)
        # Pub/sub resubscribed on the new primary; a message published there arrives.
        wait_for(lambda: reconnects, 20, "the subscriber to resubscribe")
        wait_for(lambda: client.publish("news", "after") >= 1, 20, "the subscriber on the new primary")
        wait_for(lambda: "after" in messages, 20, "a message after the failover")
        # The blocked BLPOP was on the old primary: it failed (ConnectionError)
        # rather than waiting there; a new one gets what is pushed on the new primary.
        blocked.join(10)
        assert blocked.dead and isinstance(blocked.exception, redis.ConnectionError)
        gevent.spawn_later(0.2, client.rpush, "jobs", "j1")
        assert client.blpop(["jobs"], timeout=10) == ("jobs", "j1")
        value = replica.get(f"{load.tag}:post:0")  # the replica client reads on after the failover
        assert value is None or value.startswith("0:")
    finally:
        pubsub.close()
        client.close()
        replica.close()
    topo.demote(old, new)  # what the sentinels do ten seconds later


@pytest.mark.timeout(180)
def test_killed_primary_under_load(topo: Topology, sentinel: Sentinel) -> None:
    # One sentinel down as well: the two others still agree on a failover.
    topo.sentinels[2].stop()
    client = sentinel.master_for(SERVICE, socket_timeout=3, decode_responses=True)
    try:
        load = Load(client, 200, timeout=3)
        wait_for(lambda: load.ok > 1000, 30, "the load to run")
        old = topo.primary_port()
        killed_at = time.monotonic()
        topo.kill(old)
        wait_for(lambda: moved(client, old), 40, "the client to move")
        load.phase = "post"
        new = topo.wait_primary_change(old)
        wait_for(lambda: len(load.acked_post) > 500, 30, "writes on the new primary")
        recovered = time.monotonic() - killed_at
        # The old primary comes back with its stale configuration: a primary
        # with no replica. The client must not go back to it.
        topo.restart(old)
        assert topo.role(old) == "master"
        load.acked_post.clear()
        wait_for(lambda: len(load.acked_post) > 500, 30, "more writes")
        load.finish()
        check_post_phase(topo, load, old, new)
        assert load.errors, "the kill went unnoticed?"
        assert recovered < 40
    finally:
        client.close()
    topo.demote(old, new)


@pytest.mark.timeout(180)
def test_hung_primary_under_load(topo: Topology, sentinel: Sentinel) -> None:
    # A primary that stops answering (SIGSTOP: its kernel still accepts
    # connections and bytes) holds every command and every connect in flight;
    # the failover releases them at once, long before their socket_timeout.
    client = sentinel.master_for(SERVICE, socket_timeout=20, socket_connect_timeout=20,
                                 decode_responses=True)
    old = topo.primary_port()
    try:
        load = Load(client, 200, timeout=20)
        wait_for(lambda: load.ok > 1000, 30, "the load to run")
        topo.pause(old)
        wait_for(lambda: moved(client, old), 40, "the client to move")
        load.phase = "post"
        new = topo.wait_primary_change(old)
        wait_for(lambda: len(load.acked_post) > 500, 30, "writes on the new primary")
        # Back from its pause, the old primary is a stale primary again.
        topo.resume(old)
        wait_for(lambda: topo.role(old) == "master", 10, "the old primary to answer")
        load.acked_post.clear()
        wait_for(lambda: len(load.acked_post) > 500, 30, "more writes")
        load.finish()
        check_post_phase(topo, load, old, new)
        assert load.slowest < 20  # released by the failover, not by their timeout
    finally:
        client.close()
        if old in topo.paused:
            topo.resume(old)
    topo.demote(old, new)
