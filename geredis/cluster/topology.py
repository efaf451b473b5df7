"""The slot map: which node serves each of the 16384 slots, read from the
cluster and kept in redis-py's shape.

How this works:

* :func:`parse_shards` and :func:`parse_slots` turn a raw ``CLUSTER SHARDS``
  reply (Redis 7: RESP3 maps or RESP2 flat arrays, bytes or str) or a raw
  ``CLUSTER SLOTS`` reply (older servers) into :class:`Shard` records: slot
  ranges and nodes (address, role, health). An empty or unknown endpoint
  means "the node you asked" (a single-node cluster answers so).
* :class:`NodesManager` is redis-py's ``NodesManager`` without its
  constructor or its blocking I/O, so that everything redis-py's code and
  users read keeps working: ``nodes_cache`` (name -> ``ClusterNode``),
  ``slots_cache`` (slot -> [primary, replicas...], one list shared by the
  slots of a range, exactly as redis-py builds it), ``default_node``,
  ``startup_nodes``, ``get_node``, ``get_node_from_slot`` (replica load
  balancing), ``move_slot`` (a MOVED patches one slot at once, or promotes a
  replica after a failover), ``get_nodes_by_server_type``.
* :meth:`NodesManager.apply` installs a freshly read map: nodes keep their
  ``ClusterNode`` (and its connections) across refreshes when their address
  is unchanged; nodes seen ``fail`` are left out (unless a failed primary is
  still the only server of its slots); a replica still ``loading`` is a node
  but serves no reads. Nodes that left (a removed node, an old address) are
  returned for the caller to close.

Reading the map from the network and deciding when is ``refresh.py``'s job.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import redis.cluster
from redis.cluster import PRIMARY, REPLICA, ClusterNode, LoadBalancer
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.event import AfterSlotsCacheRefreshEvent, EventDispatcher
from redis.exceptions import RedisClusterException

__all__ = ["NodeInfo", "NodesManager", "Shard", "parse_shards", "parse_slots"]


@dataclasses.dataclass
class NodeInfo:
    """One node as the cluster describes it."""

    #: The node's host (its endpoint, or the asked host when unknown).
    host: str
    #: Its port (the TLS port over TLS).
    port: int
    #: True for the shard's primary.
    primary: bool
    health: str = "online"  #: "online", "loading" or "fail"
    #: The cluster's id of the node ("" when not reported).
    node_id: str = ""


@dataclasses.dataclass
class Shard:
    """Slot ranges (inclusive) and the nodes serving them."""

    #: ``(first, last)`` slot ranges, inclusive.
    slots: List[Tuple[int, int]]
    #: The nodes serving them, primary and replicas.
    nodes: List[NodeInfo]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _as_dict(value: Any) -> Dict[str, Any]:
    """A RESP3 map or a RESP2 flat ``[key, value, ...]`` array, str keys."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    return {_text(value[i]): value[i + 1] for i in range(0, len(value) - 1, 2)}


def parse_shards(reply: Any, asked_host: str, tls: bool = False) -> List[Shard]:
    """Shards from a raw ``CLUSTER SHARDS`` reply (see the module comment).

    Args:
        reply: the raw reply (RESP2 arrays or RESP3 maps).
        asked_host: the host that was asked, for nodes that report none.
        tls: take each node's ``tls-port``.

    Returns:
        The shards.
    """
    shards = []
    for raw in reply:
        fields = _as_dict(raw)
        bounds = [int(x) for x in fields.get("slots") or ()]
        nodes = []
        for raw_node in fields.get("nodes") or ():
            node = _as_dict(raw_node)
            host = _text(node.get("endpoint") or "")
            if host in ("", "?"):
                host = _text(node.get("ip") or "") or asked_host
            port = node.get("tls-port") if tls and node.get("tls-port") else node.get("port")
            if port is None:
                continue
            nodes.append(NodeInfo(
                host, int(port), _text(node.get("role")) == "master",
                _text(node.get("health") or "online"), _text(node.get("id") or ""),
            ))  # fmt: skip
        shards.append(Shard(list(zip(bounds[::2], bounds[1::2])), nodes))
    return shards


def parse_slots(reply: Any, asked_host: str) -> List[Shard]:
    """Shards from a raw ``CLUSTER SLOTS`` reply: one per slot range.

    Args:
        reply: the raw reply.
        asked_host: the host that was asked, for nodes that report none.

    Returns:
        The shards.
    """
    shards = []
    for entry in reply:
        nodes = []
        for i, raw_node in enumerate(entry[2:]):
            host = _text(raw_node[0]) or asked_host
            node_id = _text(raw_node[2]) if len(raw_node) > 2 else ""
            nodes.append(NodeInfo(host, int(raw_node[1]), i == 0, "online", node_id))
        shards.append(Shard([(int(entry[0]), int(entry[1]))], nodes))
    return shards


class NodesManager(redis.cluster.NodesManager):  # type: ignore[misc]
    """redis-py's ``NodesManager`` state and lookups, filled by geredis.

    Args:
        startup_nodes: where to read the map first.
        make_connection: ``f(host, port)`` -> the node's ``NodeRedis``.
        require_full_coverage: refuse a map that leaves slots unserved.
        dynamic_startup_nodes: after each refresh, read the next map from
            the discovered nodes (True), or from the startup nodes only.
        address_remap: ``f((host, port)) -> (host, port)`` for each node.
        connection_kwargs: what ``get_connection_kwargs()`` returns.
        event_dispatcher: gets ``AfterSlotsCacheRefreshEvent`` on changes.
    """

    def __init__(
        self,
        startup_nodes: Sequence[ClusterNode],
        make_connection: Callable[[str, int], Any],
        *,
        require_full_coverage: bool = True,
        dynamic_startup_nodes: bool = True,
        address_remap: Optional[Callable[[Tuple[str, int]], Tuple[str, int]]] = None,
        connection_kwargs: Optional[Dict[str, Any]] = None,
        event_dispatcher: Optional[EventDispatcher] = None,
    ) -> None:  # redis-py's constructor connects: not called
        self.nodes_cache: Dict[str, ClusterNode] = {}
        self.slots_cache: Dict[int, List[ClusterNode]] = {}
        self.startup_nodes: Dict[str, ClusterNode] = {n.name: n for n in startup_nodes}
        self.default_node: Optional[ClusterNode] = None
        self.from_url = False
        self._require_full_coverage = require_full_coverage
        self._dynamic_startup_nodes = dynamic_startup_nodes
        self.address_remap = address_remap
        self.connection_kwargs = connection_kwargs or {}
        self.read_load_balancer = LoadBalancer()
        self._lock = threading.RLock()  # for redis-py's methods; uncontended here
        self._initialization_lock = threading.RLock()
        self._event_dispatcher = event_dispatcher or EventDispatcher()
        self._credential_provider = self.connection_kwargs.get("credential_provider")
        self.maint_notifications_config = None
        self.himport_registry = None
        self._cache = None
        self._epoch = 0
        self._make_connection = make_connection
        #: Called with no argument after every change of the map (refresh
        #: or MOVED patch); the cluster's pub/sub follows slots with it.
        self.on_change: List[Callable[[], None]] = []

    # -- connections ----------------------------------------------------------

    def create_redis_node(self, host: str, port: int, **kwargs: Any) -> Any:
        """A new client for one node (redis-py's hook).

        Args:
            host: the node's host.
            port: the node's port.
            **kwargs: ignored (redis-py's connection kwargs; the cluster
                client's settings apply).

        Returns:
            The node's :class:`~geredis.cluster.nodes.NodeRedis`.
        """
        return self._make_connection(host, port)

    def create_redis_connections(self, nodes: Iterable[ClusterNode]) -> None:
        """Give each node without one its client (redis-py's hook).

        Args:
            nodes: the nodes.
        """
        for node in nodes:
            if node.redis_connection is None:
                node.redis_connection = self._make_connection(node.host, node.port)

    def node_for(self, host: str, port: int) -> ClusterNode:
        """The node at ``host:port`` (after ``address_remap``), created and
        added to ``nodes_cache`` when unknown (an ASK or MOVED target).

        Args:
            host: the host, as the cluster named it.
            port: the port.

        Returns:
            The node, with its client.
        """
        host, port = self.remap_host_port(host, port)
        name = f"{host}:{port}"
        node = self.nodes_cache.get(name) or self.startup_nodes.get(name)
        if node is None:
            node = self.nodes_cache[name] = ClusterNode(host, port, PRIMARY)
        if node.redis_connection is None:
            node.redis_connection = self._make_connection(node.host, node.port)
        return node

    def known_nodes(self) -> List[ClusterNode]:
        """Every node a map may be read from: discovered and startup nodes.

        Returns:
            The nodes, each once.
        """
        seen = dict(self.startup_nodes)
        seen.update(self.nodes_cache)
        return list(seen.values())

    # -- changes ----------------------------------------------------------------

    def move_slot(self, e: Any) -> None:
        """A MOVED reply: point its slot at the new owner now (redis-py's
        rule), and tell the listeners.

        Args:
            e: the ``redis.MovedError``.
        """
        if e.slot_id not in self.slots_cache:
            node = self.node_for(e.host, e.port)
            self.slots_cache[e.slot_id] = [node]
        else:
            host, port = self.remap_host_port(e.host, e.port)
            e.host, e.port = host, port
            super().move_slot(e)
        for node in self.nodes_cache.values():
            if node.redis_connection is None:
                node.redis_connection = self._make_connection(node.host, node.port)
        self._changed()

    def apply(self, shards: List[Shard]) -> List[ClusterNode]:
        """Install the map ``shards`` describe; return the nodes that left.

        Args:
            shards: the map, as :func:`parse_shards` or :func:`parse_slots`
                read it.

        Returns:
            The nodes no longer in the map (their connections are the
            caller's to close).

        Raises:
            redis.RedisClusterException: the map leaves slots unserved while
                ``require_full_coverage`` is set, or describes no node
                (nothing is changed then).
        """
        old = dict(self.nodes_cache)
        old.update(self.startup_nodes)
        fresh: Dict[str, ClusterNode] = {}
        slots: Dict[int, List[ClusterNode]] = {}
        for shard in shards:
            if not shard.slots:  # an empty primary, or a stale view of a replica
                continue
            serving: List[ClusterNode] = []
            primary = [i for i in shard.nodes if i.primary and i.health != "fail"]
            if not primary and shard.slots:  # its primary failed, no failover yet
                primary = [i for i in shard.nodes if i.primary]
            for info in primary[:1] + [i for i in shard.nodes if not i.primary]:
                if info.health == "fail" and not info.primary:
                    continue
                host, port = self.remap_host_port(info.host, info.port)
                name = f"{host}:{port}"
                node = fresh.get(name) or old.get(name) or ClusterNode(host, port)
                node.server_type = PRIMARY if info.primary else REPLICA
                fresh[name] = node
                if info.primary or info.health == "online":
                    serving.append(node)
            if serving and serving[0].server_type == PRIMARY:
                for start, end in shard.slots:
                    slots.update(dict.fromkeys(range(start, end + 1), serving))
        if self._require_full_coverage and len(slots) < REDIS_CLUSTER_HASH_SLOTS:
            raise RedisClusterException(
                f"All slots are not covered: {len(slots)} of {REDIS_CLUSTER_HASH_SLOTS}"
                " are served (require_full_coverage=True)"
            )
        if not fresh:
            raise RedisClusterException("the cluster described no nodes")
        self.create_redis_connections(fresh.values())
        with self._lock:
            self.nodes_cache = fresh
            self.slots_cache = slots
            if self.default_node is None or self.default_node.name not in fresh \
                    or self.default_node.server_type != PRIMARY:
                primaries = self.get_nodes_by_server_type("primary")
                self.default_node = primaries[0] if primaries else next(iter(fresh.values()))
            else:
                self.default_node = fresh[self.default_node.name]
            if self._dynamic_startup_nodes:
                self.startup_nodes = fresh
            self._epoch += 1
        self.read_load_balancer.reset()
        self._changed()
        keep = set(map(id, fresh.values())) | set(map(id, self.startup_nodes.values()))
        return [node for node in old.values() if id(node) not in keep]

    def _changed(self) -> None:
        try:
            self._event_dispatcher.dispatch(AfterSlotsCacheRefreshEvent())
        except Exception:  # a user's listener: never breaks routing
            redis.cluster.logger.exception("listener raised after a slot map change")
        for callback in list(self.on_change):
            callback()

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Refused: redis-py's own map reading is replaced by
        ``RedisCluster.refresh()``.

        Args:
            *args: ignored.
            **kwargs: ignored.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("geredis reads the slot map with RedisCluster.refresh()")

    def close(self) -> None:
        """Forget the nodes; their connections are closed by the client."""
        self.default_node = None
