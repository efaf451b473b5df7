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
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple

import gevent
from redis.client import NEVER_DECODE
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, RedisClusterException

from ..dedicated import wait_bound
from ..exceptions import ClientClosedError
from ..pipeline import exchange
from ..routing import ROUTES, block_seconds
from ..slots import BatchSlot, RawSlot
from .routing import (
    ASKING, BROKEN, DISCARD, REPLY_TYPES, RETRY_LATER, follow_reply, pause, slot_owner,
)  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = ["Item", "by_slot", "partition_keys", "route", "run"]

_UNSET = object()
_ASKING_COMMAND: Tuple[Tuple[Any, ...], Dict[str, Any]] = (("ASKING",), {})


class Item:
    """One command of a batch, and what became of it.

    Args:
        command: the command's upper-case name.
        args: the command and its arguments.
        options: redis-py's per-command options.
    """

    __slots__ = ("args", "options", "command", "slot", "node", "asking", "reply", "sent",
                 "packed", "raw", "position", "block")  # fmt: skip

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
        self.position = -1  # where its result goes, for callers that need it
        self.block = 0.0  # a blocking command: how long it may wait on the server


def route(rc: "RedisCluster", item: Item) -> None:
    """Give ``item`` its slot (if keyed) and node, by redis-py's rules.

    Args:
        rc: the cluster client.
        item: the command to route; its ``slot``, ``node``, ``block`` and
            ``packed`` are set.

    Raises:
        redis.RedisClusterException: keys in several slots, no key and no
            flag, or a command meant for several nodes.
        geredis.SharedConnectionError: a command that cannot be pipelined
            (SELECT, SUBSCRIBE...); a blocking one is marked to run on a
            dedicated connection instead.
        redis.SlotNotCoveredError: no node serves the slot.
        redis.DataError: an argument of a type that cannot be sent.
    """
    check = ROUTES.get(item.command)
    if check is not None and check(rc, item.command, item.args):  # type: ignore[arg-type]
        item.block = block_seconds(item.command, item.args)
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


def run(rc: "RedisCluster", items: List[Item], replied: bool = False) -> None:
    """Send every routed item; leave its final reply in ``item.reply`` (error
    replies and broken-connection errors as values). With ``replied`` the
    items were sent once already and hold their first replies.

    Args:
        rc: the cluster client.
        items: routed items (:func:`route`).
        replied: the items hold their first replies already.
    """
    deadline = None if rc._timeout is None else monotonic() + rc._timeout
    pending = items
    rounds = failures = 0
    while pending:
        if not replied:
            _send_round(rc, pending)
        replied = False
        now: List[Item] = []
        later: List[Item] = []
        for item in pending:
            reply = item.reply
            redirect = follow_reply(rc, reply)
            if redirect is not None:
                item.node, item.asking = redirect
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
        if len(group) > owner.pipeline_threshold or any(item.block for item in group):
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
        block = sum(item.block for item in group)
        exchange(conn, rc._packer, commands, wait_bound(block, rc._timeout), consume)
    except BROKEN as exc:
        _fail(group, exc, conn.opened)
    finally:
        owner._dedicated.release(conn)


# -- the multi-key commands ---------------------------------------------------------


def partition_keys(rc: "RedisCluster", keys: Iterable[Any]) -> Dict[int, List[Any]]:
    """``{slot: [keys]}`` in first-seen order (redis-py's
    ``_partition_keys_by_slot``, with str and bytes keys encoded inline).

    Args:
        rc: the cluster client (its encoding).
        keys: the keys.

    Returns:
        The keys grouped by hash slot.
    """
    encoding, errors, encode = rc._encoding, rc._encoding_errors, rc.encoder.encode
    slots: Dict[int, List[Any]] = {}
    for key in keys:
        kind = type(key)
        raw = key.encode(encoding, errors) if kind is str else key if kind is bytes else encode(key)
        slot = key_slot(raw)
        group = slots.get(slot)
        if group is None:
            slots[slot] = [key]
        else:
            group.append(key)
    return slots


def by_slot(rc: "RedisCluster", command: str, slots_to_args: Mapping[int, Iterable[Any]]) -> List[Any]:
    """``command`` once per slot with that slot's arguments, every node's
    share as one batch, all nodes at once; the results in slot order (the
    first error raised). Replies that are not the answer, and commands
    whose connection broke, go through :func:`run`'s rules.

    Args:
        rc: the cluster client.
        command: the command (``MGET``, ``DEL``...).
        slots_to_args: each slot's arguments.

    Returns:
        One result per slot, in the mapping's order.

    Raises:
        redis.ResponseError: the first error reply.
        redis.ConnectionError: a connection broke under a command that was
            not sent again.
    """
    slots_cache = rc.nodes_manager.slots_cache
    pack = rc._packer.pack
    order = [(slot, (command, *args)) for slot, args in slots_to_args.items()]
    groups: Dict[str, Tuple[ClusterNode, List[int], List[bytes]]] = {}
    for position, (slot, args) in enumerate(order):
        nodes = slots_cache.get(slot)
        if not nodes:
            return _by_items(rc, command, order)
        entry = groups.get(nodes[0].name)
        if entry is None:
            entry = groups[nodes[0].name] = (nodes[0], [], [])
        entry[1].append(position)
        entry[2].append(pack(args))
    replies: List[Any] = [None] * len(order)
    again: List[Item] = []
    waiting = []
    for node, positions, parts in groups.values():
        owner = node.redis_connection
        if len(positions) > owner.pipeline_threshold:
            return _by_items(rc, command, order)
        try:
            conn = owner._usable_connection()
        except BROKEN:
            return _by_items(rc, command, order)
        result = BatchSlot(len(positions))
        conn.submit_batch(b"".join(parts), [result] * len(positions))
        waiting.append((node, positions, parts, result, conn))
    for node, positions, parts, result, conn in waiting:
        try:
            got: List[Any] = result.result.get()
        except BROKEN as exc:
            got = result.replies + [exc] * (len(positions) - len(result.replies))
        for position, packed, reply in zip(positions, parts, got):
            replies[position] = reply
            if type(reply) in REPLY_TYPES or isinstance(reply, BROKEN):
                slot, args = order[position]
                item = Item(command, args, {})
                item.slot, item.node, item.packed, item.position = slot, node, packed, position
                item.reply, item.sent = reply, not isinstance(reply, BROKEN) or conn.opened
                again.append(item)
    if again:
        run(rc, again, replied=True)
        for item in again:
            replies[item.position] = item.reply
    return _finish(rc, command, replies)


def _by_items(rc: "RedisCluster", command: str, order: List[Tuple[int, Tuple[Any, ...]]]) -> List[Any]:
    # The general way: through run() from the start.
    items = []
    for slot, args in order:
        item = Item(command, args, {})
        item.slot = slot
        item.node = slot_owner(rc, slot, command, None)
        item.packed = rc._packer.pack(args)
        items.append(item)
    run(rc, items)
    return _finish(rc, command, [item.reply for item in items])


def _finish(rc: "RedisCluster", command: str, replies: List[Any]) -> List[Any]:
    callback = rc.response_callbacks.get(command)
    results = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
        results.append(reply if callback is None else callback(reply))
    return results
