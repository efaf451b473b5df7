"""``rc.pubsub()``: pub/sub on a cluster; shard channels follow their slot.

How this works: :class:`ClusterPubSub` is a ``geredis.pubsub.PubSub`` (one
``Delivery``: its handler dispatcher and ``get_message()`` queue) fed by
several ``Subscriber``s, each a subscriber connection to one node:

* channels and patterns (SUBSCRIBE, PSUBSCRIBE: messages are broadcast to
  every node) use one node: the one given (``node=``, or ``host``/``port``),
  else the default node;
* shard channels (SSUBSCRIBE, Redis 7) use one subscriber per node that owns
  subscribed slots, each channel on the primary of its slot; a SSUBSCRIBE
  sent on a stale map (answered MOVED) is patched and sent again.

Following the cluster: when the slot map changes (a refresh, or a MOVED
seen by any command of the client), when the server ends a shard
subscription itself (the ``sunsubscribe`` Redis 7 sends when a slot leaves a
node), or when a subscriber's node left the map (a failover), one reconcile
greenlet moves each channel to its slot's current primary and subscribes it
there with the same handler. Nothing is sent to the old node (it no longer
serves the slot: its server dropped the subscription, or will never see a
message for it); a subscriber left with nothing is closed. Each move is
reported like a reconnect (``on_reconnect``, and a ``'reconnect'``
message): what was published meanwhile is lost.
"""

from __future__ import annotations

import logging
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import gevent
from gevent.greenlet import Greenlet
from redis.cluster import ClusterNode
from redis.commands.helpers import list_or_args, parse_pubsub_subscriptions
from redis.exceptions import MovedError, RedisClusterException, RedisError

from ..pubsub import PubSub, ReconnectInfo
from ..pubsub.stream import shard_groups
from ..pubsub.subscriber import Subscriber
from ..writer import BackgroundGreenlet
from .routing import on_moved

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = ["ClusterPubSub"]

logger = logging.getLogger("geredis.cluster")
_SHARD = 2


class ClusterPubSub(PubSub):
    """``rc.pubsub(node=None, host=None, port=None, **kwargs)``: geredis's
    ``PubSub`` API (handlers, ``get_message``, ``listen``, ``run_in_thread``)
    over a cluster; see the module comment.

    Args:
        cluster: the cluster client.
        node: the node for channels and patterns (default: the cluster's
            default node).
        host: that node's host, with ``port`` (instead of ``node``).
        port: that node's port.
        **kwargs: :class:`geredis.pubsub.PubSub`'s options (handlers' error
            hook, ``on_reconnect``, ``max_queued``...).

    Raises:
        redis.RedisClusterException: only one of ``host`` and ``port``, or
            no such node in the cluster.
    """

    def __init__(self, cluster: "RedisCluster", node: Optional[ClusterNode] = None,
                 host: Optional[str] = None, port: Optional[int] = None,
                 **kwargs: Any) -> None:  # fmt: skip
        if node is None and (host is not None or port is not None):
            if host is None or port is None:
                raise RedisClusterException("Passing a host requires passing a port, and vice versa")
            node = cluster.get_node(host, port)
            if node is None:
                raise RedisClusterException(f"Node {host}:{port} doesn't exist in the cluster")
        self.cluster = cluster
        self.node = node or cluster.get_default_node()
        owner = cluster.get_redis_connection(self.node)
        super().__init__(owner.settings, parser=owner._parser, encoder=cluster.encoder, **kwargs)
        self._shards: Dict[str, Subscriber] = {}
        self._nodes: Dict[str, ClusterNode] = {}
        self._dropped: Dict[Any, Any] = {}  # shard channels the servers ended
        self._dirty = False
        self._reconciler: Optional[Greenlet] = None
        self._delivery.on_dropped = self._on_dropped
        ref = weakref.WeakMethod(self._on_map_change)

        def on_change() -> None:
            method = ref()
            if method is not None:
                method()

        self._hook = on_change
        cluster.nodes_manager.on_change.append(on_change)

    def __repr__(self) -> str:
        return (f"<geredis.ClusterPubSub channels={len(self.channels)}"
                f" patterns={len(self.patterns)} shard_channels={len(self.shard_channels)}"
                f" shard_nodes={len(self._shards)} dropped={self.dropped}>")  # fmt: skip

    def get_pubsub_node(self) -> ClusterNode:
        """The node of the channel and pattern subscriptions.

        Returns:
            That node.
        """
        return self.node

    # -- state over every subscriber ------------------------------------------------

    @property
    def shard_channels(self) -> Dict[Any, Any]:
        """Subscribed shard channels and their handlers, over every node (and
        those being moved to another node)."""
        merged: Dict[Any, Any] = {}
        for sub in self._shards.values():
            merged.update(sub.tables[_SHARD])
        merged.update(self._dropped)
        return merged

    @property
    def subscribed(self) -> bool:
        """True while anything is subscribed, on any node."""
        return self._subscriber.subscribed or bool(self._dropped) or any(
            sub.subscribed for sub in self._shards.values())

    @property
    def reconnects(self) -> int:
        """Reconnects of every subscriber connection, summed."""
        return self._subscriber.reconnects + sum(s.reconnects for s in self._shards.values())

    # -- shard channels -------------------------------------------------------------

    def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Any) -> None:
        """Subscribe to shard channels, each at its slot's primary; returns
        once every node confirmed.

        Args:
            *args: shard channel names, or lists of them.
            target_node: accepted for redis-py's signature; unused (each
                channel goes to its slot's primary).
            **kwargs: ``channel=handler``.

        Raises:
            redis.RedisClusterException: a slot no node serves, or a
                SSUBSCRIBE still redirected after ``max_redirections``.
            redis.TimeoutError: a node did not confirm within
                ``socket_timeout``.
            redis.ConnectionError: a node's first connection failed.
        """
        subscriptions = parse_pubsub_subscriptions(args, kwargs)
        by_node: Dict[str, Dict[Any, Any]] = {}
        for name, handler in subscriptions.items():
            node = self._owner(name)
            by_node.setdefault(node.name, {})[name] = handler
        for name, group in by_node.items():
            self._subscribe_at(self._nodes.get(name) or self.cluster.get_node(node_name=name),
                               group)  # fmt: skip

    def _subscribe_at(self, node: ClusterNode, group: Dict[Any, Any]) -> None:
        """SSUBSCRIBE ``group`` on ``node``: one command per slot, all sent
        before waiting; a slot answered MOVED goes where it says."""
        cluster = self.cluster
        todo = [(node, {name: group[name] for name in names})
                for names in shard_groups(group, self.settings.encoding)]  # fmt: skip
        for _ in range(cluster.max_redirections + 1):
            waiting = [(node, part, self._shard_subscriber(node).subscribe(_SHARD, part))
                       for node, part in todo]  # fmt: skip
            todo = []
            for node, part, result in waiting:
                try:
                    self._wait(result)
                except MovedError as exc:  # our map was stale: patch it, go there
                    on_moved(cluster, exc)
                    todo.append((cluster.nodes_manager.node_for(exc.host, exc.port), part))
            if not todo:
                return
        raise RedisClusterException(f"SSUBSCRIBE {list(group)} kept being redirected")

    def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """Unsubscribe from shard channels (all when none given), on every
        node; returns once each confirmed.

        Args:
            *args: shard channel names, or one list of them.
            target_node: accepted for redis-py's signature; unused.

        Raises:
            redis.TimeoutError: a node did not confirm within
                ``socket_timeout``.
        """
        names = list_or_args(args[0], args[1:]) if args else None
        normalize = self._subscriber.normalize
        wanted = None if names is None else {normalize(n) for n in names}
        for channel in list(self._dropped):
            if wanted is None or channel in wanted:
                del self._dropped[channel]
        waiting = []
        for sub in list(self._shards.values()):
            if wanted is None:  # SUNSUBSCRIBE without names: every one, any slot
                waiting.append(sub.unsubscribe(_SHARD, []))
                continue
            mine = [c for c in sub.tables[_SHARD] if c in wanted]
            for names in shard_groups(mine, self.settings.encoding):  # one slot each
                waiting.append(sub.unsubscribe(_SHARD, names))
        for result in waiting:
            if result is not None:
                self._wait(result)
        self._delivery.wake()

    def _owner(self, channel: Any) -> ClusterNode:
        slot = self.cluster.keyslot(channel)
        nodes = self.cluster.nodes_manager.slots_cache.get(slot)
        if not nodes:
            self.cluster.refresh()
            nodes = self.cluster.nodes_manager.slots_cache.get(slot)
        if not nodes:
            raise RedisClusterException(f"no node serves slot {slot} of {channel!r}")
        return nodes[0]

    def _shard_subscriber(self, node: ClusterNode) -> Subscriber:
        sub = self._shards.get(node.name)
        if sub is None:
            owner = self.cluster.get_redis_connection(node)
            base = self._subscriber
            sub = Subscriber(owner.settings, self._delivery, base.normalize, parser=base.parser,
                             health_check_interval=base.health_check_interval,
                             backoff=base.backoff)  # fmt: skip
            self._shards[node.name] = sub
            self._nodes[node.name] = node
        return sub

    # -- following the slots ------------------------------------------------------------

    def _on_dropped(self, kind: int, name: Any) -> None:
        # In a subscriber's reader greenlet: never block here.
        if kind != _SHARD:
            return
        for sub in self._shards.values():
            handler = sub.tables[_SHARD].pop(name, _MISSING)
            if handler is not _MISSING:
                self._dropped[name] = handler
        self.cluster._refresher.request()
        self._on_map_change()

    def _on_map_change(self) -> None:
        if not self._shards and not self._dropped and not self._subscriber.subscribed:
            return
        self._dirty = True
        if self._reconciler is None:
            self._reconciler = BackgroundGreenlet.spawn(self._reconcile)

    def _reconcile(self) -> None:
        try:
            failures = 0
            while self._dirty:
                self._dirty = False
                if self._dropped:  # wait for a map that knows where they went
                    self.cluster._refresher.request().wait(self.settings.socket_timeout)
                try:
                    self._move_shard_channels()
                    self._move_channels()
                    failures = 0
                except (RedisError, RedisClusterException, OSError) as exc:
                    failures += 1
                    logger.warning("pub/sub could not follow the cluster yet: %r", exc)
                    self._dirty = True
                    gevent.sleep(min(5.0, 0.05 * 2 ** min(failures, 10)))
        finally:
            self._reconciler = None

    def _move_shard_channels(self) -> None:
        started = monotonic()
        moves: Dict[str, Dict[Any, Any]] = {}
        for name, sub in list(self._shards.items()):
            for channel, handler in list(sub.tables[_SHARD].items()):
                if channel in sub.pending[_SHARD]:
                    continue  # being unsubscribed
                owner = self._owner(channel)
                if owner.name != name:
                    # The old node no longer serves the slot: the server
                    # dropped the subscription (or would get nothing for it).
                    sub.tables[_SHARD].pop(channel, None)
                    moves.setdefault(owner.name, {})[channel] = handler
                    self._nodes.setdefault(owner.name, owner)
        for channel, handler in list(self._dropped.items()):
            owner = self._owner(channel)
            self._nodes.setdefault(owner.name, owner)
            moves.setdefault(owner.name, {})[channel] = handler
        for name, group in moves.items():
            self._subscribe_at(self._nodes[name], group)
            for channel in group:
                self._dropped.pop(channel, None)
            self._delivery.reconnected(ReconnectInfo(
                RedisClusterException(f"shard channels {list(group)} moved to {name}"),
                monotonic() - started, 1, self.reconnects))  # fmt: skip
            self._delivery.after_read()  # wake the dispatcher and get_message
        for name, sub in list(self._shards.items()):
            if not sub.subscribed:
                sub.close()
                del self._shards[name]
                self._nodes.pop(name, None)

    def _move_channels(self) -> None:
        """Channels and patterns move when their node left the map."""
        sub = self._subscriber
        if not sub.subscribed or self.node.name in self.cluster.nodes_manager.nodes_cache:
            return
        tables = [dict(table) for table in sub.tables[:2]]
        self.node = self.cluster.get_default_node()
        self.settings = self.cluster.get_redis_connection(self.node).settings
        sub.close()
        sub.settings = self.settings
        for kind, table in enumerate(tables):
            if table:
                self._wait(sub.subscribe(kind, table))

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Close every subscriber connection; forget every subscription."""
        try:
            self.cluster.nodes_manager.on_change.remove(self._hook)
        except ValueError:
            pass
        reconciler, self._reconciler = self._reconciler, None
        if reconciler is not None and reconciler is not gevent.getcurrent():
            reconciler.kill()
        for sub in self._shards.values():
            sub.close()
        self._shards.clear()
        self._dropped.clear()
        super().close()

    reset = close

    def __del__(self) -> None:
        try:
            self.cluster.nodes_manager.on_change.remove(self._hook)
        except (AttributeError, ValueError):
            pass
        try:
            for sub in self._shards.values():
                sub.close(block=False)
        except Exception:  # interpreter shutdown
            pass
        super().__del__()


_MISSING: Sequence[Any] = ()
