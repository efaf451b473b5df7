"""Reading the slot map again: one refresh at a time, shared by everyone who
asked, in the background.

How this works (rueidis's lazy refresh, in gevent terms):

* :meth:`Refresher.request` asks for a fresh map and returns at once with an
  ``Event`` that is set when a refresh that *started reading after the
  request* has finished. If no refresh greenlet runs, it starts one; if one
  is about to read, the request joins it; if one is reading, the request
  marks the round as dirty and the same greenlet runs one more round when
  the current one ends. A storm of MOVED replies from a thousand greenlets
  (all woken in one pass of the loop) is therefore one read of the map, and
  the client only asks when a reply contradicts the map it holds.
* A round reads ``CLUSTER SHARDS`` (``CLUSTER SLOTS`` from servers that do not
  know it) from the known nodes in random order, never always the same one,
  over each node's own shared connection, and keeps the first answer that
  serves every slot (or, if none does, the answer serving the most). Each
  read is bounded by ``socket_timeout`` (at least ``QUERY_TIMEOUT``). When
  no node answers because none could be connected to (refused, timed out, a
  TLS certificate or a password refused), the round fails with
  :class:`ClusterUnreachableError`, a ``redis.ConnectionError`` too.
* The map is installed by ``NodesManager.apply``; nodes that left have their
  connections closed in the background, letting commands already sent
  finish (their replies, a MOVED most likely, still reach their callers).
* ``interval`` > 0 adds a periodic request. ``close()`` stops every greenlet
  and joins the closing ones.

Callers that cannot proceed without a new map (a slot nobody serves,
CLUSTERDOWN) wait on the returned event with their own deadline.
"""

from __future__ import annotations

import logging
import random
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, List, Optional, Set

import gevent
from gevent.event import Event
from gevent.greenlet import Greenlet
from gevent.hub import Waiter
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import (
    ConnectionError, RedisClusterException, RedisError, ResponseError, TimeoutError,
)  # fmt: skip

from ..writer import BackgroundGreenlet
from .topology import Shard, parse_shards, parse_slots

if TYPE_CHECKING:  # pragma: no cover
    from redis.cluster import ClusterNode

    from .topology import NodesManager

__all__ = ["MIN_INTERVAL", "QUERY_TIMEOUT", "ClusterUnreachableError", "Refresher"]

logger = logging.getLogger("geredis.cluster")

#: The least time a refresh gives one node to answer.
QUERY_TIMEOUT = 1.0
#: Rounds asked for while one runs start at least this long after it began:
#: a node that stays down cannot turn refreshes into a busy loop.
MIN_INTERVAL = 0.1
_UNREACHABLE = (ConnectionError, TimeoutError, OSError, gevent.Timeout)
_SHARDS = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n"
_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"


class ClusterUnreachableError(RedisClusterException, ConnectionError):  # type: ignore[misc]
    """No known node could be connected to, so no slot map was read: each
    refused the connection, timed out, or refused the TLS certificate or the
    credentials. The message names every node's error; ``__cause__`` is the
    last one (e.g. a ``geredis.network.TLSError``).

    It is redis-py's ``RedisClusterException`` (what redis-py raises then)
    and a ``redis.ConnectionError``. Nothing was sent; a client being built
    is closed, a built one keeps its old map and asks again later.
    """


class Refresher:
    """Reads and installs the slot map for ``manager`` (see the module comment).

    Args:
        manager: the map's owner.
        timeout: the client's ``socket_timeout`` (None: no bound of its own).
        tls: read TLS ports from ``CLUSTER SHARDS``.
        interval: seconds between periodic refreshes; 0 or None disables.
    """

    def __init__(self, manager: "NodesManager", timeout: Optional[float], tls: bool = False,
                 interval: Optional[float] = None) -> None:  # fmt: skip
        self.manager = manager
        self.timeout = max(timeout or QUERY_TIMEOUT, QUERY_TIMEOUT)
        self.tls = tls
        self.interval = interval or 0
        #: Rounds completed (successful or not).
        self.rounds = 0
        #: Requests made (:meth:`request` calls).
        self.requests = 0
        #: The last error a round ended with (None after a success).
        self.error: Optional[BaseException] = None
        self._use_slots = False  # the server has no CLUSTER SHARDS
        self._greenlet: Optional[Greenlet] = None
        self._again = False
        self._reading = False  # a round has started reading: later requests need another
        self._done = Event()  # set when the round in progress ends
        self._next = Event()  # for requests made during a round
        self._periodic: Optional[Greenlet] = None
        self._closing: Set[Greenlet] = set()
        self._closed = False

    # -- asking ---------------------------------------------------------------

    def request(self) -> Event:
        """Ask for a fresh map, at most one round at a time: a request made
        while a round reads shares the next one.

        Returns:
            An event set once a map has been read (or a round failed: check
            ``error``).
        """
        self.requests += 1
        if self._closed:
            done = Event()
            done.set()
            return done
        if self._greenlet is None:
            self._done = Event()
            self._greenlet = BackgroundGreenlet.spawn(self._run)
            self._start_periodic()
            return self._done
        if not self._reading:  # the coming round has not read anything yet
            return self._done
        self._again = True
        return self._next

    def refresh(self, timeout: Optional[float] = None) -> None:
        """Read the map now and wait for it (at most ``timeout`` seconds).

        Args:
            timeout: the longest to wait (None: as long as the round takes).

        Raises:
            redis.RedisClusterException: no node answered with a usable map,
                or none within ``timeout``.
        """
        if not self.request().wait(timeout):
            raise RedisClusterException(f"no slot map read within {timeout}s")
        if self.error is not None:
            raise self.error

    def _start_periodic(self) -> None:
        if self.interval > 0 and self._periodic is None:
            # A weak reference: a client dropped without close() is collected
            # (and its __del__ stops this greenlet).
            self._periodic = BackgroundGreenlet.spawn(_tick, weakref.ref(self), self.interval)

    # -- the refresh greenlet -----------------------------------------------------

    def _run(self) -> None:
        try:
            started = 0.0
            while True:
                wait = started + MIN_INTERVAL - monotonic()
                if wait > 0:
                    gevent.sleep(wait)
                started = monotonic()
                self._again = False
                self._reading = True
                try:
                    self._round()
                finally:
                    self._reading = False
                self.rounds += 1
                done, self._done = self._done, self._next
                self._next = Event()
                done.set()
                if not self._again or self._closed:
                    break
        finally:
            self._greenlet = None
            if self._closed or not self._again:
                self._done.set()

    def _round(self) -> None:
        try:
            shards = self._read()
            left = self.manager.apply(shards)
        except (RedisError, RedisClusterException, OSError) as exc:
            self.error = exc
            logger.warning("cluster slot map refresh failed: %s", exc)
            return
        self.error = None
        for node in left:
            self._close_later(node)

    def _read(self) -> List[Shard]:
        nodes = self.manager.known_nodes()
        random.shuffle(nodes)
        best: Optional[List[Shard]] = None
        best_served = -1
        errors: List[str] = []
        last: Optional[BaseException] = None
        unreachable = True  # every node failed to connect (not a bad answer)
        for node in nodes:
            try:
                shards = self._ask(node)
            except (RedisError, RedisClusterException, OSError, gevent.Timeout) as exc:
                errors.append(f"{node.name}: {type(exc).__name__}: {exc}"[:200])
                last = exc
                unreachable = unreachable and isinstance(exc, _UNREACHABLE)
                continue
            served = sum(end - start + 1 for shard in shards for start, end in shard.slots
                         if any(info.primary for info in shard.nodes))  # fmt: skip
            if served > best_served:
                best, best_served = shards, served
            if served >= REDIS_CLUSTER_HASH_SLOTS:
                break
        if best is None:
            error = ClusterUnreachableError if unreachable and last else RedisClusterException
            raise error(
                "Redis Cluster cannot be connected. Please provide at least one reachable"
                f" node: {'; '.join(errors) or 'no nodes known'}"
            ) from last
        return best

    def _ask(self, node: "ClusterNode") -> List[Shard]:
        """One node's view of the map, over its shared connection."""
        owner = node.redis_connection
        if owner is None:
            owner = node.redis_connection = self.manager.create_redis_node(node.host, node.port)
        with gevent.Timeout(self.timeout):
            reply = self._call(owner, _SLOTS if self._use_slots else _SHARDS)
            if isinstance(reply, ResponseError) and not self._use_slots:
                if "unknown" not in str(reply).lower():
                    raise reply
                self._use_slots = True  # a server before 7.0
                reply = self._call(owner, _SLOTS)
        if isinstance(reply, Exception):
            if isinstance(reply, ResponseError):
                raise RedisClusterException(f"{node.name}: {reply} (is cluster mode enabled?)")
            raise reply
        if self._use_slots:
            return parse_slots(reply, node.host)
        return parse_shards(reply, node.host, self.tls)

    @staticmethod
    def _call(owner: Any, packed: bytes) -> Any:
        conn = owner._usable_connection()
        waiter = Waiter()
        conn.submit(packed, waiter)
        return waiter.get()

    # -- nodes that left ----------------------------------------------------------------

    def _close_later(self, node: "ClusterNode") -> None:
        owner = node.redis_connection  # kept: a caller holding this node gets
        if owner is None:              # ClientClosedError from it and re-routes
            return
        logger.info("cluster node %s left the slot map: closing its connections", node.name)
        greenlet = BackgroundGreenlet(owner.close)
        self._closing.add(greenlet)
        greenlet.link(self._closing.discard)
        greenlet.start()

    def close_nowait(self) -> None:
        """Stop refreshing now, without waiting (safe in ``__del__``)."""
        self._closed = True
        for greenlet in (self._greenlet, self._periodic):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)

    def close(self) -> None:
        """Stop refreshing; wait for the connections of departed nodes."""
        self._closed = True
        for greenlet in (self._greenlet, self._periodic):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill()
        self._greenlet = self._periodic = None
        self._done.set()
        self._next.set()
        gevent.joinall(list(self._closing))


def _tick(ref: "weakref.ref[Refresher]", interval: float) -> None:
    # The periodic refresh greenlet.
    while True:
        gevent.sleep(interval)
        refresher = ref()
        if refresher is None or refresher._closed:
            return
        refresher.request()
        del refresher
