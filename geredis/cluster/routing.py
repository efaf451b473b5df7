"""The cluster command path: route by slot, send on the node's multiplexed
connection, follow the cluster's answers.

How this works:

* Fast path (``RedisCluster.execute_command``, kept there for speed): a command whose only key
  is its first argument (GET, SET, INCR, HSET ...: read from the server's
  ``COMMAND`` table at start) has its slot computed (CRC16 of the key or its
  ``{hash tag}``), the slot's node read from the map, and is appended to that
  node's shared connection exactly as on a single server: no greenlet
  switch between queueing and waiting, so every greenlet's commands to a
  node coalesce into that node's sends.
* Everything else (:func:`general`): redis-py's rules pick the
  nodes (its command flags and policy resolver, ``target_nodes=``, keys from
  the ``COMMAND`` table, CROSSSLOT checks before anything is sent); keyed
  commands then take the path above; commands for several nodes are sent to
  all of them at once and the replies merged by redis-py's result callbacks.
  Blocking commands run on a dedicated connection of the slot's node.
* When the reply is not the answer (:func:`follow`):

  - MOVED: the slot is patched at once; if the map did not already say so,
    a background refresh is asked for (one at a time, shared by every
    caller); the command is sent to the new owner;
  - ASK: ``ASKING`` and the command are appended together, contiguously, to
    the importing node's connection, for this command only;
  - TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING: nothing ran; the command is
    sent again after a backoff (CLUSTERDOWN asks for a new map first), while
    the caller's own time (``socket_timeout``) lasts;
  - a broken connection or a timeout: a new map is asked for; the command is
    sent again only if that is harmless (``retry.py``: it never left, or it
    is read-only, or ``retry_writes``), else the caller gets the error;
  - at most ``max_redirections`` MOVED/ASK per command, then ``ClusterError``.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import gevent
from gevent.hub import Waiter
from redis.client import NEVER_DECODE
from redis.cluster import ClusterNode
from redis.commands.cluster import READ_COMMANDS
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from ..client import finish_reply
from ..dedicated import call, wait_bound
from ..exceptions import ClientClosedError
from ..guards import check_thread, real_thread_id
from ..routing import ROUTES, block_seconds
from ..slots import RawSlot

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = [
    "ASKING", "BROKEN", "DISCARD", "REPLY_TYPES", "RETRY_LATER", "attempt", "follow",
    "follow_reply", "general", "on_moved", "pause", "slot_owner",
]  # fmt: skip

#: A packed ``ASKING``, sent before a command an ASK redirected.
ASKING = b"*1\r\n$6\r\nASKING\r\n"
#: Replies that mean "not now": the command is sent again after a pause.
RETRY_LATER = (TryAgainError, ClusterDownError, BusyLoadingError)
#: Reply types that are not the answer: ``follow`` takes over.
REPLY_TYPES = frozenset((MovedError, AskError, TryAgainError, ClusterDownError,
                          BusyLoadingError)) | frozenset(ClusterDownError.__subclasses__())
#: Errors of a connection that broke or a reply that did not come in time.
BROKEN = (ConnectionError, TimeoutError)


class Discard:
    """The slot of a reply nobody reads (the ``ASKING`` before a command)."""

    __slots__ = ()

    def switch(self, reply: Any) -> None:
        """Take a reply and drop it.

        Args:
            reply: the reply.
        """

    def throw(self, exc: BaseException) -> None:
        """Take a connection error and drop it (the command's own slot gets
        one too).

        Args:
            exc: the error.
        """


#: The one :class:`Discard` slot.
DISCARD = Discard()


def read_node(rc: "RedisCluster", slot: int) -> ClusterNode:
    """The node a read for ``slot`` goes to with replica reads on (redis-py's
    load balancing).

    Args:
        rc: the cluster client.
        slot: the hash slot.

    Returns:
        A primary or replica of the slot.
    """
    return rc.nodes_manager.get_node_from_slot(  # type: ignore[no-any-return]
        slot, rc.read_from_replicas, rc.load_balancing_strategy)


# -- when the first answer is not the answer ------------------------------


def follow(rc: "RedisCluster", command: str, slot: int, packed: bytes, raw: bool,
            node: Optional[ClusterNode], blocking: bool, args: Tuple[Any, ...],
            outcome: Optional[Tuple[Any, bool]] = None) -> Any:  # fmt: skip
    """Send (again) until the cluster answers; return the reply (an error
    reply as a value), or raise the connection error that must not be
    retried. See the module comment for each case.

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        slot: its hash slot.
        packed: the command, packed.
        raw: read the reply undecoded.
        node: where to send it first (None: the slot's owner).
        blocking: a blocking command (it goes on a dedicated connection).
        args: the command's arguments (for retry and blocking decisions).
        outcome: the first attempt's ``(reply, sent)``, when already made.

    Returns:
        The reply; an error reply (including ``TRYAGAIN``/``CLUSTERDOWN``
        after the last pause) as a value.

    Raises:
        redis.ClusterError: more than ``max_redirections`` MOVED/ASK.
        redis.TimeoutError: redirected past ``socket_timeout``.
        redis.ConnectionError: the connection broke and the command may not
            be sent again (``geredis.retry``), or no more attempts.
        redis.SlotNotCoveredError: no node serves the slot, even after a
            new map.
    """
    deadline = None if rc._timeout is None else monotonic() + rc._timeout
    redirects = failures = 0
    asking = False
    reply: Any = None
    while True:
        if outcome is None:
            if redirects and deadline is not None and monotonic() > deadline:
                raise TimeoutError(f"{command}: no answer from the cluster within"
                                   f" {rc._timeout}s ({redirects} redirections, last:"
                                   f" {type(reply).__name__}: {reply})")  # fmt: skip
            if node is None:
                node = slot_owner(rc, slot, command, deadline)
            outcome = attempt(rc, node, packed, raw, asking, blocking, command, args)
            asking = False
        reply, sent = outcome
        outcome = None
        redirect = follow_reply(rc, reply)
        if redirect is not None:
            node, asking = redirect
            redirects += 1
            if redirects > rc.max_redirections:
                raise ClusterError(
                    f"TTL exhausted: {command} redirected {redirects - 1} times"
                    f" (last: {reply})"
                )
        elif isinstance(reply, RETRY_LATER):
            failures += 1
            if isinstance(reply, ClusterDownError):
                rc._refresher.request()
            if not pause(rc, failures, deadline, rc.max_redirections):
                return reply
            node = None
        elif isinstance(reply, BROKEN):
            if isinstance(reply, ClientClosedError) and not rc._closed and node is not None \
                    and node.redis_connection._closed:
                redirects += 1  # the node left the map meanwhile: route again
                if redirects <= rc.max_redirections:
                    node = None
                    continue
            rc._refresher.request()
            failures += 1
            if not rc._retry.should_retry(command, reply, failures, sent) or \
                    not pause(rc, failures, deadline, None):
                raise reply
            node = None
        else:
            return reply


def follow_reply(rc: "RedisCluster", reply: Any) -> Optional[Tuple[ClusterNode, bool]]:
    """Count a reply that is not the answer (``rc.redirects``); for MOVED
    (the slot patched) or ASK, return ``(node to send to, asking)``.

    Args:
        rc: the cluster client.
        reply: a reply or error.

    Returns:
        ``(node, asking)`` for MOVED or ASK, else None.
    """
    kind = type(reply)
    if kind in REPLY_TYPES or isinstance(reply, BROKEN):
        rc.redirects[kind.__name__] += 1
        if kind is MovedError or kind is AskError:
            if kind is MovedError:
                on_moved(rc, reply)
            target = rc.nodes_manager.node_for(reply.host, reply.port)
            if target.redis_connection is not None:  # r.stats() and the metrics count it
                target.redis_connection._stats.redirected("MOVED" if kind is MovedError else "ASK")
            return target, kind is AskError
    return None


def pause(rc: "RedisCluster", failures: int, deadline: Optional[float],
           cap: Optional[int]) -> bool:  # fmt: skip
    """Sleep before attempt ``failures + 1``; False when out of attempts
    or time.

    Args:
        rc: the cluster client.
        failures: the attempts failed so far.
        deadline: a ``time.monotonic()`` not to sleep past (None: none).
        cap: the most failures allowed (None: the retry policy decides).

    Returns:
        True after sleeping (the backoff, cut at the deadline); False
        without sleeping when out of attempts or time.
    """
    if cap is not None and failures > cap:
        return False
    delay = rc._retry.delay(failures)
    if deadline is not None:
        left = deadline - monotonic()
        if left <= 0:
            return False
        delay = min(delay, left)
    gevent.sleep(delay)
    return True


def slot_owner(rc: "RedisCluster", slot: int, command: str,
           deadline: Optional[float]) -> ClusterNode:  # fmt: skip
    """The node to send a command for ``slot`` to; waits for a new map
    (within the deadline) when no node serves the slot.

    Args:
        rc: the cluster client.
        slot: the hash slot.
        command: the command's upper-case name (reads may go to replicas).
        deadline: a ``time.monotonic()`` not to wait past (None: none).

    Returns:
        The slot's primary, or a replica for a read with replica reads on.

    Raises:
        redis.SlotNotCoveredError: no node serves the slot, even after a
            new map.
    """
    for _ in range(2):
        nodes = rc.nodes_manager.slots_cache.get(slot)
        if nodes:
            if rc._replica_reads and len(nodes) > 1 and command in READ_COMMANDS:
                return read_node(rc, slot)
            return nodes[0]
        left = None if deadline is None else max(0.0, deadline - monotonic())
        rc._refresher.request().wait(left)
    raise SlotNotCoveredError(f'Slot "{slot}" is not covered by the cluster.')


def on_moved(rc: "RedisCluster", error: MovedError) -> None:
    """Patch the slot; ask for a new map unless ours already agreed (the
    command was sent before an earlier patch or refresh).

    Args:
        rc: the cluster client.
        error: the MOVED reply.
    """
    manager = rc.nodes_manager
    host, port = manager.remap_host_port(error.host, error.port)
    nodes = manager.slots_cache.get(error.slot_id)
    if nodes and nodes[0].name == f"{host}:{port}":
        return
    manager.move_slot(error)
    if rc.reinitialize_steps:
        rc._refresher.request()


def attempt(rc: "RedisCluster", node: ClusterNode, packed: bytes, raw: bool,
             asking: bool, blocking: bool, command: str,
             args: Tuple[Any, ...]) -> Tuple[Any, bool]:  # fmt: skip
    """Send once to ``node``; ``(reply or error, whether it may have been
    sent)``. Error replies are values; a broken connection or a timeout
    is returned too, never raised.

    Args:
        rc: the cluster client.
        node: where to send it.
        packed: the command, packed.
        raw: read the reply undecoded.
        asking: send ``ASKING`` first (after an ASK).
        blocking: use a dedicated connection of the node.
        command: the command's upper-case name.
        args: the command's arguments.

    Returns:
        ``(reply or error, sent)``: ``sent`` is False when the command
        surely never left.
    """
    owner = node.redis_connection
    if owner is None:
        owner = node.redis_connection = rc.nodes_manager.create_redis_node(
            node.host, node.port)  # fmt: skip
    if blocking:
        return attempt_dedicated(rc, owner, packed, raw, asking, command, args)
    try:
        conn = owner._usable_connection()
    except BROKEN as exc:  # the node was closed, or its in-flight limit held
        return exc, False
    waiter = Waiter()
    if asking:
        conn.submit_batch(ASKING + packed, [DISCARD, RawSlot(waiter) if raw else waiter])
    else:
        conn.submit(packed, waiter, raw)
    try:
        return waiter.get(), conn.opened
    except BROKEN as exc:
        return exc, conn.opened


def attempt_dedicated(rc: "RedisCluster", owner: Any, packed: bytes, raw: bool,
                       asking: bool, command: str,
                       args: Tuple[Any, ...]) -> Tuple[Any, bool]:  # fmt: skip
    """:func:`attempt` for a blocking command: on a dedicated connection of
    the node, aborted if the caller gives up before the reply.

    Args:
        rc: the cluster client.
        owner: the node's client.
        packed: the command, packed.
        raw: read the reply undecoded.
        asking: send ``ASKING`` first.
        command: the command's upper-case name (for its blocking time).
        args: the command's arguments.

    Returns:
        ``(reply or error, sent)``, as :func:`attempt`.
    """
    bound = wait_bound(block_seconds(command, args), rc._timeout)
    try:
        conn = owner._dedicated.acquire()
    except BROKEN as exc:
        return exc, False
    try:
        if asking:
            call(conn, ASKING, False, bound)
        return call(conn, packed, raw, bound), True
    except BROKEN as exc:
        return exc, conn.opened
    finally:
        owner._dedicated.release(conn)


# -- commands that are not "one key, first argument" --------------------------


def general(rc: "RedisCluster", command: str, args: Tuple[Any, ...],
             options: Dict[str, Any]) -> Any:  # fmt: skip
    """A command that is not "one key, first argument": keyed by redis-py's
    rules, sent to ``target_nodes``, or to the nodes its policy names.

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        args: the command and its arguments.
        options: redis-py's options (``target_nodes`` is taken out).

    Returns:
        The result, combined over the nodes as redis-py does.

    Raises:
        redis.RedisClusterException: the command cannot be routed (no key,
            no policy): pass ``target_nodes=``.
        redis.ConnectionError: a node's connection broke.
        redis.ResponseError: a node's error reply, as redis-py raises it.
    """
    target = options.pop("target_nodes", None) if options else None
    route = ROUTES.get(command)
    blocking = route is not None and route(rc, command, args)  # type: ignore[arg-type]
    nodes, policies = rc._targets(command, args, target)
    if nodes is None:  # keyed: one slot
        slot = rc.determine_slot(*args)
        if slot is None:
            raise RedisClusterException(f"{command} cannot be routed: pass target_nodes=")
        return rc._keyed(command, slot, args, options, blocking)
    if blocking and len(nodes) == 1:
        packed = rc._packer.pack(args)
        reply, _ = attempt(rc, nodes[0], packed, NEVER_DECODE in options, False, True,
                                 command, args)  # fmt: skip
        if isinstance(reply, BROKEN):
            raise reply
        return rc._process_result(args[0], {nodes[0].name: node_result(rc, 
            command, reply, options)}, response_policy=policies.response_policy, **options)
    return on_nodes(rc, command, args, options, nodes, policies, target is None)


def node_result(rc: "RedisCluster", command: str, reply: Any,
                 options: Dict[str, Any]) -> Any:  # fmt: skip
    """One node's reply through the response callback, then the cluster
    callback.

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        reply: the node's raw reply.
        options: the command's options.

    Returns:
        The node's result.

    Raises:
        redis.ResponseError: ``reply`` is an error reply.
    """
    result = finish_reply(rc.response_callbacks, command, reply, dict(options))
    callback = rc.cluster_response_callbacks.get(command)
    if callback is not None:
        options = {k: v for k, v in options.items() if k != "keys"}
        result = callback(result, **options)
    return result


def on_nodes(rc: "RedisCluster", command: str, args: Tuple[Any, ...],
              options: Dict[str, Any], nodes: List[ClusterNode], policies: Any,
              may_retry: bool) -> Any:  # fmt: skip
    """Send to every node at once; merge as redis-py does.

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        args: the command and its arguments.
        options: redis-py's options.
        nodes: the nodes to send to.
        policies: redis-py's command policies (how replies combine).
        may_retry: whether a single-node command may go to another node
            after its connection broke (False with ``target_nodes``).

    Returns:
        The combined result.

    Raises:
        redis.ConnectionError: a node's connection broke and the command
            was not retried.
        redis.ResponseError: a node's error reply, as redis-py raises it.
        geredis.ThreadAffinityError: called from another OS thread.
    """
    if real_thread_id() != rc._owner_thread:
        check_thread(rc._owner_thread)
    packed = rc._packer.pack(args)
    raw = NEVER_DECODE in options
    failures = 0
    while True:
        waiting = []
        for node in nodes:
            owner = node.redis_connection or rc.nodes_manager.create_redis_node(
                node.host, node.port)  # fmt: skip
            waiter = Waiter()
            owner._usable_connection().submit(packed, waiter, raw)
            waiting.append((node, waiter))
        replies: Dict[str, Any] = {}
        try:
            for node, waiter in waiting:
                replies[node.name] = waiter.get()
        except BROKEN as exc:
            rc._refresher.request()
            failures += 1
            if not (may_retry and len(nodes) == 1 and
                    rc._retry.should_retry(command, exc, failures, True)) or \
                    not pause(rc, failures, None, None):  # fmt: skip
                raise
            if nodes[0] is rc.get_default_node():
                rc.replace_default_node()
            retarget, policies = rc._targets(command, args, None)
            assert retarget is not None
            nodes = retarget
            continue
        results = {name: node_result(rc, command, reply, options)
                   for name, reply in replies.items()}  # fmt: skip
        return rc._process_result(args[0], results,
                                    response_policy=policies.response_policy, **options)
