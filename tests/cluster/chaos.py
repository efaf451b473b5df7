"""The chaos suite's cluster mode: a thousand greenlets on one
``geredis.RedisCluster`` while slots migrate, replicas take over and primaries
are killed; then the chaos suite's invariants are checked.

    python -m tests.chaos --cluster --seconds 60 --greenlets 1000

How this works: :class:`ClusterChaos` is ``tests.chaos.Chaos`` (the same
workers, unique values per operation, random ``gevent.Timeout``s and kills,
the watchdog, the invariants) with a real 6-node cluster instead of a proxy
in front of one server. Half the workers put their keys on a few "hot" slots
(hash tags), which the fault loop migrates between primaries under load
(IMPORTING/MIGRATING, MIGRATE in small batches: MOVED, ASK and TRYAGAIN all
happen); the other half are spread over the key space. The faults, spread
over the run: live slot migrations, ``CLUSTER FAILOVER`` on a replica (no
acknowledged write may be lost), SIGKILL of a primary (its replica takes
over; the killed node comes back on *another port* as a replica), and cuts
of the client's node connections.

A killed primary may lose writes it acknowledged but had not yet sent to its
replica: Redis replicates asynchronously (``WAIT`` narrows that window).
Such losses, only for keys whose slots the killed node served, are counted
apart ("lost to async replication"), and reads that see them are "stale",
not wrong. Everything else is held to the single-server invariants.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Set

import gevent
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import geredis
from geredis.exceptions import ConnectionClosedError

from ..chaos import SLACK, Chaos, Worker
from ..conftest import free_port
from .localcluster import LocalCluster, blocking, tag_for_slot

SOCKET_TIMEOUT = 1.0
RETRIES = 5
KILLED = "lost to async replication (primary killed)"
STALE = "stale reads after a killed primary (async replication)"


class ClusterChaos(Chaos):
    """One chaos run against ``cluster``; ``migrations``, ``failovers`` and
    ``kills`` faults spread over ``seconds``, plus connection cuts."""

    def __init__(self, cluster: LocalCluster, seconds: float, greenlets: int, seed: int = 0,
                 migrations: int = 4, failovers: int = 1, kills: int = 1,
                 hot_slots: int = 6, faults: bool = True) -> None:  # fmt: skip
        self.cluster = cluster
        self.plan = ["migrate"] * migrations + ["failover"] * failovers + ["kill"] * kills
        self.killed_slots: Set[int] = set()
        self.slot_of: Dict[int, int] = {}
        super().__init__(None, seconds, greenlets, seed, restarts=0, faults=faults)  # type: ignore[arg-type]
        self.bound = 3 * SOCKET_TIMEOUT + RETRIES * 0.2
        self.hot = self.rng.sample(range(16384), hot_slots)
        for w in self.workers:
            # Even workers on the hot slots, every hot slot in turn (w.index % hot_slots
            # would give the even workers only the even-numbered hot slots).
            hot = w.index % 2 == 0
            slot = self.hot[(w.index // 2) % hot_slots] if hot else self.rng.randrange(16384)
            w.tag = tag_for_slot(slot)
            self.slot_of[w.index] = slot
        self.recovery: List[float] = []
        self.moved_nodes: Optional[tuple] = None  # (old port, new port) of a killed node

    def _client(self) -> geredis.RedisCluster:
        host, port = self.cluster.startup
        return geredis.RedisCluster(
            host=host, port=port, socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), RETRIES),
        )  # fmt: skip

    # -- the faults ------------------------------------------------------------------

    def _chaos(self, started: float) -> None:
        plan = list(self.plan)
        self.rng.shuffle(plan)
        until = started + self.seconds
        step = self.seconds / (len(plan) + 1)
        for k, fault in enumerate(plan):
            while time.monotonic() < started + step * (k + 1):
                self._cut()
                gevent.sleep(self.rng.uniform(0.2, 0.6))
            getattr(self, "_" + fault)()
            self.counts[f"fault: {fault}"] += 1
        while time.monotonic() < until:
            self._cut()
            gevent.sleep(self.rng.uniform(0.2, 0.6))

    def _cut(self) -> None:
        """Break one node connection of the client, as a network cut would."""
        if self.rng.random() < 0.5:
            return
        nodes = [n for n in self.client.get_nodes()
                 if n.redis_connection is not None and n.redis_connection._connection]  # fmt: skip
        if nodes:
            conn = self.rng.choice(nodes).redis_connection._connection
            conn.abort(ConnectionClosedError("chaos: connection cut"))
            self.counts["connection cuts"] += 1

    def _migrate(self) -> None:
        slot = self.rng.choice(self.hot)
        owner = blocking(self.cluster.owner, slot)
        dst = self.rng.choice([n for n in blocking(self.cluster.primaries) if n is not owner])
        moved = blocking(self.cluster.migrate_slot, slot, dst, lambda: time.sleep(0.01), 5)
        self.counts["keys migrated under load"] += moved
        blocking(self.cluster.wait_ok)

    def _failover(self) -> None:
        primary = self.rng.choice(blocking(self.cluster.primaries))
        replica = blocking(self.cluster.replicas_of, primary)[0]
        blocking(self.cluster.failover, replica)

    def _kill(self) -> None:
        cluster = self.cluster
        victim = self.rng.choice(blocking(cluster.primaries))
        for shard in blocking(cluster.shards):
            if any(n["id"] == victim.node_id for n in shard["nodes"]):
                for start, end in shard["slots"]:
                    self.killed_slots.update(range(start, end + 1))
        old_port = victim.port
        blocking(cluster.kill, victim)
        killed_at = time.monotonic()
        blocking(cluster.wait_ok)  # its replica took over
        ok_at = time.monotonic()
        self.counts["failover ms after a kill"] = int((ok_at - killed_at) * 1000)
        self._served_again(ok_at)
        old = self.client.get_node("127.0.0.1", old_port)
        blocking(cluster.restart, victim, free_port())  # back, on another port
        blocking(cluster.wait_ok)
        self.counts["nodes back on another port"] += 1
        self.moved_nodes = (old_port, victim.port)
        deadline = time.monotonic() + 10  # the client follows (periodic or asked refresh)
        while time.monotonic() < deadline:
            self.client.refresh()
            if self.client.get_node("127.0.0.1", victim.port) is not None:
                break
            gevent.sleep(0.1)
        follows = (self.client.get_node("127.0.0.1", victim.port) is not None
                   and self.client.get_node("127.0.0.1", old_port) is None
                   and (old is None or old.redis_connection._closed))  # fmt: skip
        self.counts["client follows the node's new address"] = int(follows)

    def _served_again(self, ok_at: float) -> None:
        """How long after cluster_state:ok commands to the killed slots work."""
        probe = f"{self.workers[0].run}:probe:{{{tag_for_slot(min(self.killed_slots))}}}"
        while time.monotonic() - ok_at < 30:
            try:
                self.client.set(probe, 1)
                break
            except redis.RedisError:
                gevent.sleep(0.02)
        self.recovery.append(time.monotonic() - ok_at)
        self.counts["served again ms after cluster ok"] = int(max(self.recovery) * 1000)

    # -- the run's ends ------------------------------------------------------------

    def _heal(self) -> None:
        blocking(self.cluster.wait_ok)

    def _final_fault(self) -> None:
        for node in self.client.get_nodes():  # every connection cut at once
            conn = node.redis_connection._connection if node.redis_connection else None
            if conn is not None:
                conn.abort(ConnectionClosedError("chaos: final cut"))

    def _shutdown(self) -> None:
        pass

    # -- allowances for a killed primary -----------------------------------------------

    def _check(self, w: Worker, op: int, kind: str, value: bytes, reply: Any) -> None:
        if self.slot_of[w.index] in self.killed_slots:
            if kind == "GET" and w.classify(reply) == "wrong" and (
                    reply is None or reply in w.history):  # fmt: skip
                self.counts[STALE] += 1
                w.acked_set, w.acked_set_op = reply, op  # what the server holds now
                self.counts["ops ok"] += 1
                return
            if kind == "INCR" and type(reply) is int and reply < w.acked_incrs + 1:
                self.counts[STALE] += 1
                w.acked_incrs, w.unknown_incrs = reply, 0
                self.counts["ops ok"] += 1
                return
        super()._check(w, op, kind, value, reply)

    def _verify(self) -> None:
        """Read every key with redis-py's cluster client."""
        host, port = self.cluster.startup
        with redis.cluster.RedisCluster(host=host, port=port, socket_timeout=10) as direct:
            strings = direct.mget_nonatomic([w.skey for w in self.workers])
            counters = direct.mget_nonatomic([w.nkey for w in self.workers])
        for w, value, counter in zip(self.workers, strings, counters):
            killed = self.slot_of[w.index] in self.killed_slots
            verdict = w.classify(value)
            if verdict == "wrong" and killed and (value is None or value in w.history):
                self.counts[KILLED] += 1
            elif verdict == "wrong":
                self.counts["LOST writes"] += 1
                self._note(f"{w.skey} = {value!r}, last acked {w.acked_set!r}")
            elif verdict == "stale":
                self.counts["stale final values (late network bytes)"] += 1
            n = int(counter or 0)
            if n < w.acked_incrs and killed:
                self.counts[KILLED] += 1
            elif not w.acked_incrs <= n <= w.acked_incrs + w.unknown_incrs:
                self.counts["LOST writes"] += 1
                self._note(f"{w.nkey} = {n}, acked {w.acked_incrs} + unknown {w.unknown_incrs}")
            self.counts["acknowledged INCRs"] += w.acked_incrs
        for name, n in getattr(self.client, "redirects", {}).items():
            self.counts[f"client: {name}"] = n


def run_cluster_chaos(seconds: float, greenlets: int, seed: int, kills: int = 1,
                      migrations: int = 6, failovers: int = 1) -> ClusterChaos:  # fmt: skip
    """A cluster of its own, one chaos run on it; returns the run."""
    with LocalCluster(node_timeout=1500) as cluster:
        chaos = ClusterChaos(cluster, seconds, greenlets, seed=seed, kills=kills,
                             migrations=migrations, failovers=failovers)  # fmt: skip
        chaos.run()
    return chaos


__all__ = ["ClusterChaos", "KILLED", "SLACK", "STALE", "run_cluster_chaos"]
