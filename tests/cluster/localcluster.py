"""Real Redis Clusters for the tests: redis-server processes on free loopback
ports, joined with ``redis-cli --cluster create``.

How this works: :class:`LocalCluster` starts ``size`` servers (each a
``tests.conftest.RedisServer`` with cluster mode on, its own directory for
``nodes.conf``, and a bus port picked with ``free_port()`` too, since
``port + 10000`` may be taken or out of range), runs ``redis-cli --cluster
create ... --cluster-replicas 1 --cluster-yes``, and then waits until every
live node says ``cluster_state:ok``, every node agrees on who owns every slot,
and every replica is online. The admin helpers (slot migration, failover,
kill, restart on another port) talk to the nodes with plain ``redis.Redis``
clients opened and closed per call; their blocking calls run in gevent's
thread pool (:func:`blocking`) when the test has greenlets running.

Nothing here is a fake: every wait polls the real servers, with generous
deadlines (the machine is shared).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import gevent
import redis

from ..conftest import Certs, RedisServer, free_port

T = TypeVar("T")

REDIS_CLI = "redis-cli"


def blocking(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in gevent's thread pool: the loop keeps running."""
    return gevent.get_hub().threadpool.apply(func, args)  # type: ignore[no-any-return]


@dataclasses.dataclass
class Node:
    """One cluster node process."""

    server: RedisServer
    bus_port: int
    node_id: str = ""

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def alive(self) -> bool:
        return self.server.process is not None

    def client(self, **kwargs: Any) -> "redis.Redis":
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10,
                           **self.server.client_kwargs(), **kwargs)  # fmt: skip

    def call(self, *args: Any) -> Any:
        with self.client() as r:
            return r.execute_command(*args)


class LocalCluster:
    """A real cluster of ``size`` nodes (``replicas`` per primary); with
    ``tls`` (the ``certs`` fixture) a TLS-only one: clients, the cluster bus
    and replication all speak TLS, and every node asks for a client
    certificate (``RedisServer.client_kwargs()``)."""

    def __init__(self, size: int = 6, replicas: int = 1, node_timeout: int = 2000,
                 extra: Sequence[str] = (), tls: Optional[Certs] = None) -> None:  # fmt: skip
        self.size = size
        self.tls = tls
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.extra = list(extra)
        self.nodes: List[Node] = []

    def _server(self, port: int, bus_port: int, directory: Optional[str] = None) -> RedisServer:
        server = RedisServer(
            port, "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout),
            "--cluster-replica-validity-factor", "0",  # any replica may take over
            "--repl-diskless-sync-delay", "0",  # replicas online at once
            "--repl-ping-replica-period", "1",  # (their health is "loading" until offsets move)
            *(("--tls-cluster", "yes", "--tls-replication", "yes") if self.tls else ()),
            *self.extra, tls=self.tls,
        )  # fmt: skip
        if directory is not None:
            os.rmdir(server.dir)
            server.dir = directory
        return server

    # -- life -------------------------------------------------------------------

    def start(self) -> "LocalCluster":
        try:
            for _ in range(self.size):
                bus_port = free_port()
                self.nodes.append(Node(self._server(free_port(), bus_port), bus_port))
                self.nodes[-1].server.start()
            addresses = [node.name for node in self.nodes]
            tls = () if self.tls is None else (
                "--tls", "--cacert", self.tls["ca.crt"], "--cert", self.tls["client.crt"],
                "--key", self.tls["client.key"])  # fmt: skip
            subprocess.run(
                [REDIS_CLI, *tls, "--cluster", "create", *addresses, "--cluster-replicas",
                 str(self.replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
            )  # fmt: skip
            for node in self.nodes:
                node.node_id = node.call("CLUSTER", "MYID").decode()
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.server.cleanup()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- views --------------------------------------------------------------------

    @property
    def startup(self) -> Tuple[str, int]:
        node = next(node for node in self.nodes if node.alive)
        return "127.0.0.1", node.port

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def by_id(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.node_id == node_id)

    def shards(self, via: Optional[Node] = None) -> List[Dict[str, Any]]:
        """``CLUSTER SHARDS`` as dicts with str keys: slots [(start, end)],
        nodes [{id, port, role, health}]."""
        via = via or next(node for node in self.nodes if node.alive)
        with via.client(decode_responses=True, protocol=2) as r:
            raw = r.execute_command("CLUSTER", "SHARDS")
        shards = []
        for shard in raw:
            fields = dict(zip(shard[::2], shard[1::2]))
            slots = fields["slots"]
            nodes = [dict(zip(n[::2], n[1::2])) for n in fields["nodes"]]
            shards.append({
                "slots": [(int(slots[i]), int(slots[i + 1])) for i in range(0, len(slots), 2)],
                "nodes": nodes,
            })  # fmt: skip
        return shards

    def owner(self, slot: int) -> Node:
        for shard in self.shards():
            if any(start <= slot <= end for start, end in shard["slots"]):
                primary = next(n for n in shard["nodes"] if n["role"] == "master")
                return self.by_id(primary["id"])
        raise LookupError(f"slot {slot} is not served")

    def primaries(self) -> List[Node]:
        out = []
        for shard in self.shards():
            if shard["slots"]:
                out += [self.by_id(n["id"]) for n in shard["nodes"] if n["role"] == "master"]
        return out

    def replicas_of(self, primary: Node) -> List[Node]:
        for shard in self.shards():
            ids = [n["id"] for n in shard["nodes"]]
            if primary.node_id in ids:
                return [self.by_id(n["id"]) for n in shard["nodes"]
                        if n["role"] == "replica" and n["health"] == "online"]  # fmt: skip
        return []

    # -- waiting ------------------------------------------------------------------

    def _agreement(self) -> Optional[str]:
        """None when the live nodes agree and are healthy, else what is not yet."""
        views = []
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                with node.client(decode_responses=True) as r:
                    if "cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
                        return f"{node.name} cluster_state not ok"
                shards = self.shards(node)
            except redis.RedisError as exc:
                return f"{node.name}: {exc}"
            view = []
            for shard in shards:
                for n in shard["nodes"]:
                    if n["health"] != "online" and self._is_alive_id(n["id"]):
                        return f"{node.name} sees {n['id'][:8]} {n['health']}"
                primary = [n["id"] for n in shard["nodes"] if n["role"] == "master"]
                if shard["slots"]:
                    if not all(self._is_alive_id(p) for p in primary):
                        return f"{node.name} sees a dead primary serving slots"
                    view.append((tuple(shard["slots"]), tuple(primary)))
            listed = {n["id"] for shard in shards if shard["slots"] for n in shard["nodes"]}
            missing = [n.name for n in self.nodes if n.alive and n.node_id not in listed]
            if missing:
                return f"{node.name} does not list {missing} with the shards"
            views.append(sorted(view))
        if any(view != views[0] for view in views[1:]):
            return "nodes disagree about slot owners"
        covered = sum(end - start + 1 for slots, _ in views[0] for start, end in slots)
        if covered != 16384:
            return f"{covered} slots covered"
        return None

    def _is_alive_id(self, node_id: str) -> bool:
        return any(node.node_id == node_id and node.alive for node in self.nodes)

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node reports ``cluster_state:ok``, all agree on the
        slot owners and every live node is seen online."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._agreement()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok after {timeout}s: {problem}")
            time.sleep(0.05)

    # -- changes ------------------------------------------------------------------

    def migrate_slot(self, slot: int, dst: Node, pause: Callable[[], None] = lambda: None,
                     batch: int = 10) -> int:  # fmt: skip
        """Move ``slot`` to ``dst`` the way ``redis-cli --cluster reshard`` does
        (IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere);
        ``pause()`` runs between batches. Returns the keys moved."""
        src = self.owner(slot)
        if src is dst:
            return 0
        self.begin_migration(slot, src, dst)
        moved = 0
        while True:
            keys = src.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            self.migrate_keys(src, dst, keys)
            moved += len(keys)
            pause()
        self.end_migration(slot, src, dst)
        return moved

    def begin_migration(self, slot: int, src: Node, dst: Node) -> None:
        """Open a migration of ``slot``: ``dst`` IMPORTING, ``src`` MIGRATING."""
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)

    def migrate_keys(self, src: Node, dst: Node, keys: Sequence[Any]) -> None:
        src.call("MIGRATE", "127.0.0.1", dst.port, "", 0, 10000, "REPLACE", "KEYS", *keys)

    def end_migration(self, slot: int, src: Node, dst: Node) -> None:
        """Give ``slot`` to ``dst`` (SETSLOT NODE on dst, src, then the rest)."""
        for node in [dst, src] + [n for n in self.primaries() if n not in (src, dst)]:
            node.call("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)

    def command_calls(self, name: str, primaries: bool = False) -> int:
        """How many times the live nodes (or the primaries: replicas run the
        replicated writes too) ran ``name`` (``"cluster|shards"``); refused
        calls (MOVED...) are not counted."""
        total = 0
        for node in self.primaries() if primaries else self.nodes:
            if node.alive:
                stats = node.call("INFO", "commandstats")
                total += int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        return total

    def failover(self, replica: Node, timeout: float = 60.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica``; returns once it is a primary and
        the cluster agrees."""
        replica.call("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while replica.call("INFO", "replication")["role"] != "master":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replica.name} did not take over")
            time.sleep(0.05)
        self.wait_ok(timeout)

    def kill(self, node: Node) -> None:
        """SIGKILL, like a crash; its directory (nodes.conf) stays."""
        process = node.server.process
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            node.server.process = None

    def restart(self, node: Node, port: Optional[int] = None) -> None:
        """Start a killed node again, on ``port`` if given (another address)."""
        directory = node.server.dir
        if port is not None:
            node.bus_port = free_port()
        node.server = self._server(port or node.port, node.bus_port, directory)
        node.server.start()

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        """Until ``check()``; the loop keeps running meanwhile (call it from
        the main thread)."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what or check}")
            gevent.sleep(0.02)


def keys_in_slot(slot: int, count: int, prefix: str = "k") -> Iterator[str]:
    """``count`` distinct keys hashing to ``slot`` (hash tag ``{...}``)."""
    tag = tag_for_slot(slot)
    for i in range(count):
        yield f"{prefix}:{{{tag}}}:{i}"


_TAGS: Dict[int, str] = {}


def tag_for_slot(slot: int) -> str:
    """A short string whose slot is ``slot``."""
    if not _TAGS:
        from redis.crc import key_slot

        i = 0
        while len(_TAGS) < 16384:
            tag = f"t{i}"
            _TAGS.setdefault(key_slot(tag.encode()), tag)
            i += 1
    return _TAGS[slot]
