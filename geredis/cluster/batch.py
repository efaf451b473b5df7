"""Many commands for many nodes at once: the engine under the cluster
pipeline and the multi-key commands (``mget_nonatomic``, cross-slot DEL ...).

How this works:

* Each command is an :class:`Item`, routed once (:func:`route`): by its
  keys' slot (redis-py's rules, so a command whose keys span slots raises
  redis-py's error before anything is sent), or to the one node its flags or
  ``target_nodes`` name.
* :func:`run` sends in rounds. A round groups the items per node and gives
  each node its whole group as one contiguous batch on its shared connection
  (``submit_batch``, no other greenlet's command between them), every node
  before waiting for any, so the nodes work in parallel. A group larger than
  the node's ``pipeline_threshold`` runs on a dedicated connection of that
  node instead, in chunks (``pipeline.exchange``), in a greenlet of its own.
* After a round, each item's reply decides: MOVED (the slot is patched, as
  for single commands) and ASK (``ASKING`` goes right before the command in
  the next batch) are re-sent in the next round at once, re-batched per
  node with the other redirected items, never one by one; TRYAGAIN,
  CLUSTERDOWN and LOADING after a backoff; an item whose connection broke
  only when repeating it is harmless (``retry.py``). The rest keep their
  replies. Rounds stop after ``max_redirections`` or when the caller's time
  (``socket_timeout``) is spent; the item then keeps its last reply.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import gevent
from redis.client import NEVER_DECODE
from redis.cluster import ClusterNode
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException

from ..dedicated import wait_bound
from ..exceptions import ClientClosedError
from ..pipeline import exchange
from ..slots import BatchSlot, RawSlot
from .routing import (
    ASKING, BROKEN, DISCARD, REPLY_TYPES, RETRY_LATER, on_moved, pause, slot_owner,
)  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = ["Item", "route", "run"]

_UNSET = object()
_ASKING_COMMAND: Tuple[Tuple[Any, ...], Dict[str, Any]] = (("ASKING",), {})


class Item:
    """One command of a batch, and what became of it."""

    __slots__ = ("args", "options", "command", "slot", "node", "asking", "reply", "sent",
                 "packed", "raw")  # fmt: skip

    def __init__(self, command: str, args: Tuple[Any, ...], options: Dict[str, Any]) -> None:
        self.command = command
        self.args = args
        self.options = options
        self.slot: Optional[int] = None
        self.node: Optional[ClusterNode] = None
        self.asking = False
        self.reply: Any = _UNSET
        self.sent = False
        self.packed = b""
        self.raw = NEVER_DECODE in options


def route(rc: "RedisCluster", item: Item) -> None:
    """Give ``item`` its slot (if keyed) and node, by redis-py's rules.

    Raises:
        RedisClusterException: keys in several slots, no key and no flag,
            or a command meant for several nodes.
    """
    target = item.options.pop("target_nodes", None)
    nodes, _ = rc._targets(item.command, item.args, target)
    if nodes is None:
        item.slot = rc._slot_of(item.command, item.args)
        item.node = slot_owner(rc, item.slot, item.command, None)
    elif len(nodes) != 1:
        raise RedisClusterException(f"Too many targets for command {item.args}")
    else:
        item.node = nodes[0]
    item.packed = rc._packer.pack(item.args)


def run(rc: "RedisCluster", items: List[Item]) -> None:
    """Send every routed item; leave its final reply in ``item.reply`` (error
    replies and broken-connection errors as values)."""
    deadline = None if rc._timeout is None else monotonic() + rc._timeout
    pending = items
    rounds = failures = 0
    while pending:
        _send_round(rc, pending)
        now: List[Item] = []
        later: List[Item] = []
        for item in pending:
            reply = item.reply
            kind = type(reply)
            if kind in REPLY_TYPES or isinstance(reply, BROKEN):
                rc.redirects[kind.__name__] += 1
            if kind is MovedError or kind is AskError:
                if kind is MovedError:
                    on_moved(rc, reply)
                item.node = rc.nodes_manager.node_for(reply.host, reply.port)
                item.asking = kind is AskError
                now.append(item)
            elif isinstance(reply, RETRY_LATER):
                if isinstance(reply, ClusterDownError):
                    rc._refresher.request()
                later.append(item)
            elif isinstance(reply, BROKEN):
                node = item.node
                if isinstance(reply, ClientClosedError) and not rc._closed and \
                        node is not None and node.redis_connection._closed:  # fmt: skip
                    now.append(item)  # the node left the map: route again
                    item.node = None
                    continue
                rc._refresher.request()
                if rc._retry.should_retry(item.command, reply, failures + 1, item.sent):
                    later.append(item)
        rounds += 1
        if not (now or later) or rounds > rc.max_redirections:
            return
        if later:
            failures += 1
            if not pause(rc, failures, deadline, None):
                later = []
        for item in later:
            item.asking = False
            if item.slot is not None:
                item.node = None
        for item in now + later:
            if item.node is None:
                assert item.slot is not None
                item.node = slot_owner(rc, item.slot, item.command, deadline)
        pending = now + later


def _send_round(rc: "RedisCluster", items: List[Item]) -> None:
    groups: Dict[str, Tuple[ClusterNode, List[Item]]] = {}
    for item in items:
        item.reply = _UNSET
        node = item.node
        assert node is not None
        entry = groups.get(node.name)
        if entry is None:
            groups[node.name] = (node, [item])
        else:
            entry[1].append(item)
    waits: List[Any] = []
    for node, group in groups.values():
        owner = node.redis_connection
        if owner is None:
            owner = node.redis_connection = rc.nodes_manager.create_redis_node(node.host, node.port)
        if len(group) > owner.pipeline_threshold:
            waits.append(gevent.spawn(_on_dedicated, rc, owner, group))
            continue
        try:
            conn = owner._usable_connection()
        except BROKEN as exc:
            _fail(group, exc, False)
            continue
        slot = BatchSlot(len(group))
        parts: List[bytes] = []
        slots: List[Any] = []
        for item in group:
            if item.asking:
                parts.append(ASKING)
                slots.append(DISCARD)
            parts.append(item.packed)
            slots.append(RawSlot(slot) if item.raw else slot)
        conn.submit_batch(b"".join(parts), slots)
        waits.append((group, slot, conn))
    for wait in waits:
        if isinstance(wait, gevent.Greenlet):
            wait.join()
            continue
        group, slot, conn = wait
        try:
            replies = slot.result.get()
        except BROKEN as exc:
            for item, reply in zip(group, slot.replies):  # those that came before
                item.reply = reply
                item.sent = True
            _fail(group, exc, conn.opened)
        else:
            for item, reply in zip(group, replies):
                item.reply = reply
                item.sent = True


def _fail(group: List[Item], exc: BaseException, sent: bool) -> None:
    for item in group:
        if item.reply is _UNSET:
            item.reply = exc
            item.sent = sent


def _on_dedicated(rc: "RedisCluster", owner: Any, group: List[Item]) -> None:
    """A big group: chunks on a dedicated connection of the node, so the
    shared connection's other callers never wait behind it."""
    commands: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = []
    index: List[Optional[Item]] = []
    for item in group:
        if item.asking:
            commands.append(_ASKING_COMMAND)
            index.append(None)
        commands.append((item.args, item.options))
        index.append(item)

    def consume(offset: int, replies: List[Any]) -> None:
        for i, reply in enumerate(replies, offset):
            item = index[i]
            if item is not None:
                item.reply = reply
                item.sent = True

    try:
        conn = owner._dedicated.acquire(graceful=True)
    except BROKEN as exc:
        _fail(group, exc, False)
        return
    try:
        exchange(conn, rc._packer, commands, wait_bound(0.0, rc._timeout), consume)
    except BROKEN as exc:
        _fail(group, exc, conn.opened)
    finally:
        owner._dedicated.release(conn)
