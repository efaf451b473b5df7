"""Where a Sentinel-managed client connects: the primary of a service, or
one of its replicas, as the sentinels say.

How this works: a :class:`SentinelResolver` sits in the client's
``ConnectionSettings.address_resolver``, so every connection the client
opens (shared, dedicated, pub/sub, monitor, pinned) asks it for a node at
connect time (``handshake.open_initialised``).

Primary (``master_for``):

* The resolver remembers the primary's address (``primary``). When it has
  none, it asks the sentinels (``Sentinel.discover_master``) in a
  background greenlet: one discovery in flight at a time, whose answer every
  caller that asked meanwhile shares.
* It opens the node with ``ROLE`` pipelined after the handshake (no extra
  round trip) and accepts the socket only if the node says ``master``. A
  node that refuses the connection, or says it is a replica, is forgotten:
  the next connection discovers again. The caller gets a ConnectionError
  with nothing sent, so the client's retry policy may try again.
* Every socket it hands out is remembered (weakly) by node address. When
  the resolver learns that the primary is another node (``+switch-master``
  from the sentinels, a discovery, ``+convert-to-slave``), it ends every
  connection to any other node at once, to be reset when closed (and
  abandons connects still under way to it): the client's shared connection, idle and busy dedicated
  ones, pub/sub streams (they resubscribe on the new primary), monitors and
  pinned clients all see their connection end, fail what was in flight with
  ConnectionError, and reconnect through the resolver. Greenlets sleeping in
  a retry backoff are woken (``wait_moved``).
* When the leader sentinel starts promoting a replica (before it announces
  ``+switch-master``), the resolver leaves the old primary at once and new
  connections poll the replica's ``ROLE`` until it says ``master`` (at most
  ``PROMOTION_WAIT``): writes go neither to the old primary, which keeps
  accepting them and would lose them, nor wait for the sentinels to notice
  the promotion.
* A discovery that started before an event is not allowed to undo it.

Replicas (``slave_for``): each connection asks the sentinels for the
replicas that are up and linked to the primary, tries them round-robin from
a random start (as redis-py does), then the primary, and raises
``SlaveNotFoundError`` when none answers. ``+sdown`` of a replica shuts the
sockets to it.
"""

from __future__ import annotations

import random
import socket as _socket
import struct
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import gevent
from gevent.event import AsyncResult, Event
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

from ..exceptions import ConnectionClosedError
from ..settings import HandshakeStep, OpenNode
from ..slots import failure_for
from ..writer import BackgroundGreenlet

if TYPE_CHECKING:  # pragma: no cover
    from .manager import Sentinel

__all__ = ["Address", "SentinelResolver"]

#: ``(host, port)`` of a Redis node.
Address = Tuple[str, int]

#: Pipelined after the handshake of every connection to a primary; an error
#: reply (ROLE denied by an ACL) is a value, and then the node is trusted.
_ROLE: Sequence[HandshakeStep] = ((("ROLE",), True),)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _role(reply: Any) -> Optional[str]:
    # ROLE -> ["master", offset, replicas]; None when it could not be read.
    if isinstance(reply, (list, tuple)) and reply:
        return _text(reply[0])
    return None


def _attempt(open_node: OpenNode, address: Address) -> Tuple[Any, Optional[BaseException]]:
    # One connect in a greenlet of its own: (result, None) or (None, error).
    try:
        return open_node(address[0], address[1], _ROLE), None
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        return None, exc


#: How long connections wait for a replica under promotion to become the
#: primary (seconds).
PROMOTION_WAIT = 5.0
#: How often they ask it meanwhile (seconds).
PROMOTION_POLL = 0.02

#: SO_LINGER on, 0 seconds: the owner's close() resets the connection.
_ABORT = struct.pack("ii", 1, 0)


class SentinelResolver:
    """The address resolver of one client (see the module comment).

    Args:
        manager: the :class:`~geredis.sentinel.Sentinel` that asks the sentinels.
        service_name: the service (master name) the sentinels monitor.
        is_master: True follows the primary, False spreads over replicas.
    """

    def __init__(self, manager: "Sentinel", service_name: str, is_master: bool) -> None:
        self.manager = manager
        self.service_name = service_name
        self.is_master = is_master
        #: The primary as last learnt (None: discover at the next connect).
        self.primary: Optional[Address] = None
        self._flight: Optional[AsyncResult] = None
        self._epoch = 0  # bumped by every change; a discovery older than one yields
        self._moved = Event()
        self._sockets: Dict[Address, "weakref.WeakSet[Any]"] = {}
        self._next_replica: Optional[int] = None
        self._promotion: Optional[Address] = None  # a replica being promoted
        self._promotion_until = 0.0
        #: Discoveries run so far (tests and benchmarks read it).
        self.discoveries = 0
        #: Called once each time the primary moves to another address (the
        #: client's ``stats().failovers`` counts them); None for nothing.
        self.on_failover: Optional[Callable[[], None]] = None

    def __repr__(self) -> str:
        where = "?" if self.primary is None else "%s:%d" % self.primary
        role = "primary" if self.is_master else "replicas"
        return f"<SentinelResolver {self.service_name} {role} primary={where}>"

    def describe(self) -> str:
        """What the client is connected to, for messages and its repr.

        Returns:
            ``mymaster (sentinel primary)`` or ``mymaster (sentinel replicas)``.
        """
        return f"{self.service_name} (sentinel {'primary' if self.is_master else 'replicas'})"

    # -- connecting ------------------------------------------------------------

    def connect(self, open_node: OpenNode) -> Any:
        """Open a connection to the primary (checked with ROLE) or to a
        replica; see the module comment.

        Args:
            open_node: connects to one node and runs the handshake plus the
                resolver's ``ROLE`` check.

        Returns:
            The connected, initialised socket.

        Raises:
            redis.sentinel.MasterNotFoundError: the sentinels know no usable
                primary (a ConnectionError).
            redis.sentinel.SlaveNotFoundError: no replica and no primary
                could be reached (a ConnectionError).
            geredis.ConnectionClosedError: the node refused, is not the
                primary, or the primary moved while connecting.
        """
        self.manager._watch_events()
        if not self.is_master:
            return self._connect_replica(open_node)
        while True:
            if self._promotion is not None:
                sock = self._connect_promoted(open_node, self._promotion)
                if sock is not None:
                    return sock
            address = self.primary if self.primary is not None else self._discover()
            if self._promotion is None:
                break  # else a promotion began while discovering: wait for it
        host, port = address
        try:
            sock, (role,) = self._open_unless_moved(open_node, address)
        except RedisConnectionError:
            self._forget(address)
            raise
        name = _role(role)
        if name is not None and name != "master":
            sock.close()
            self._forget(address)
            raise ConnectionClosedError(
                f"{host}:{port} is no longer the primary of {self.service_name!r}"
                f" (ROLE says {name}); asking the sentinels again"
            )
        if (self.primary is not None and self.primary != address) or self._promotion is not None:
            sock.close()  # the primary moved while this connection opened
            raise ConnectionClosedError(
                f"the primary of {self.service_name!r} moved from {host}:{port} while"
                " connecting to it"
            )
        self._track(address, sock)
        return sock

    def _open_unless_moved(self, open_node: OpenNode, address: Address) -> Tuple[Any, List[Any]]:
        """``open_node`` on ``address``, given up as soon as the primary
        moves: a connect to a primary that hangs (stopped, partitioned) would
        otherwise wait out ``socket_connect_timeout`` after the failover."""
        moved = self._moved
        attempt = BackgroundGreenlet.spawn(_attempt, open_node, address)
        try:
            gevent.wait([attempt, moved], count=1)
            finished = attempt.ready()
        finally:
            if not attempt.ready():
                attempt.kill()  # its socket is closed on the way out
        if not finished:
            raise ConnectionClosedError(
                f"the primary of {self.service_name!r} moved from {address[0]}:{address[1]}"
                " while connecting to it"
            )
        result, error = attempt.value
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    def _connect_promoted(self, open_node: OpenNode, target: Address) -> Any:
        """Wait (at most ``PROMOTION_WAIT``) for the replica being promoted
        to say it is the primary, polling its ROLE; then it is the primary.
        None when the promotion was given up (abort, timeout, another event)."""
        while self._promotion == target and monotonic() < self._promotion_until:
            try:
                sock, (role,) = self._open_unless_moved(open_node, target)
            except RedisConnectionError:
                sock = None
            else:
                if _role(role) in (None, "master") and self._promotion == target:
                    self.learned(target)
                    self._track(target, sock)
                    return sock
                sock.close()
            self._moved.wait(PROMOTION_POLL)
        if self._promotion == target:
            self._promotion = None
        return None

    def _connect_replica(self, open_node: OpenNode) -> Any:
        errors: List[str] = []
        for address in self._replica_candidates():
            try:
                sock, _ = open_node(address[0], address[1], ())
            except RedisConnectionError as exc:
                errors.append(f"{address[0]}:{address[1]} - {type(exc).__name__}: {exc}")
                continue
            self._track(address, sock)
            return sock
        detail = f": {', '.join(errors)}" if errors else ""
        raise SlaveNotFoundError(f"No slave found for {self.service_name!r}{detail}")

    def _replica_candidates(self) -> List[Address]:
        # Replicas round-robin from a random start, then the primary.
        replicas = self.manager.discover_slaves(self.service_name)
        candidates: List[Address] = []
        if replicas:
            if self._next_replica is None:
                self._next_replica = random.randrange(len(replicas))
            for _ in range(len(replicas)):
                self._next_replica = (self._next_replica + 1) % len(replicas)
                candidates.append(replicas[self._next_replica])
        try:
            candidates.append(self.manager.discover_master(self.service_name))
        except MasterNotFoundError:
            pass
        return candidates

    # -- discovery ---------------------------------------------------------------

    def _discover(self) -> Address:
        """Ask the sentinels for the primary: one discovery at a time,
        shared by every caller that asks while it runs."""
        flight = self._flight
        if flight is None:
            flight = self._flight = AsyncResult()
            BackgroundGreenlet.spawn(self._run_discovery, flight)
        gevent.wait([flight, self._moved], count=1)
        if not flight.ready() and self.primary is not None:
            return self.primary  # an event told first
        try:
            return flight.get()  # type: ignore[no-any-return]
        except RedisConnectionError as exc:
            raise failure_for(exc, self.describe()) from None  # one instance per caller

    def _run_discovery(self, flight: AsyncResult) -> None:
        epoch = self._epoch
        self.discoveries += 1
        try:
            address = self.manager.discover_master(self.service_name)
        except Exception as exc:  # noqa: BLE001 - handed to every caller
            self._flight = None
            flight.set_exception(exc)
            return
        self._flight = None
        if self._epoch != epoch and self.primary is not None:
            address = self.primary  # an event overtook this discovery: it wins
        elif self._promotion is None:  # else the promotion decides
            self.learned(address)
        flight.set(address)

    def refresh(self) -> None:
        """Check the primary with the sentinels in the background (after a
        gap in the event stream): connections to any other node are
        dropped. Does nothing while a discovery is in flight."""
        if self.is_master and self._flight is None:
            self._flight = AsyncResult()
            BackgroundGreenlet.spawn(self._run_discovery, self._flight)

    # -- what the sentinels tell ------------------------------------------------------

    def learned(self, address: Address) -> None:
        """``address`` is the primary: connections to any other node end now.

        Args:
            address: the primary's ``(host, port)``.
        """
        changed = address != self.primary
        if changed and self.primary is not None and self.on_failover is not None:
            self.on_failover()
        self.primary = address
        self._promotion = None
        self._leave_all_but(address, changed)

    def _leave_all_but(self, address: Address, wake: bool) -> None:
        self._epoch += 1
        for other in [a for a in self._sockets if a != address]:
            self.drop(other)
        if wake:
            moved, self._moved = self._moved, Event()
            moved.set()

    def promoting(self, old: Address, selected: Address) -> None:
        """The leader sentinel is turning the replica ``selected`` into the
        primary (``+failover-state-send-slaveof-noone``): leave ``old`` now,
        and let new connections wait for ``selected`` to say it is the
        primary rather than write to ``old``, which would lose the write.

        Args:
            old: the primary being replaced.
            selected: the replica being promoted.
        """
        if self.primary is not None and self.primary != old:
            self.refresh()  # not the primary this resolver knows: ask
            return
        self._promotion = selected
        self._promotion_until = monotonic() + PROMOTION_WAIT
        self._leave_all_but(selected, True)

    def promotion_aborted(self) -> None:
        """The failover was aborted (``-failover-abort-*``): ask again."""
        if self._promotion is not None:
            self._promotion = None
            self.refresh()

    def switched(self, old: Address, new: Address) -> None:
        """A sentinel announced ``+switch-master old -> new``. Applied at once
        when it follows what this resolver knew; otherwise (events missed or
        out of order) the sentinels are asked again.

        Args:
            old: the previous primary.
            new: the new primary.
        """
        if self.primary is None or self.primary == old or self.primary == new:
            self.learned(new)
        else:
            self.refresh()

    def not_primary(self, address: Address) -> None:
        """A sentinel turned ``address`` into a replica (``+convert-to-slave``).

        Args:
            address: the node now a replica.
        """
        if self.primary == address:
            self._forget(address)
            self.drop(address)
            self.refresh()

    def demoted(self, sock: Any) -> bool:
        """A command on ``sock`` got READONLY. For a primary resolver, the node
        is forgotten and the sentinels asked again.

        Args:
            sock: the socket the READONLY reply came on.

        Returns:
            True for a primary resolver; False for replicas (READONLY is a
            normal answer there).
        """
        if not self.is_master:
            return False
        for address, sockets in list(self._sockets.items()):
            if sock in sockets:
                self._forget(address)
                self.drop(address)
        self.refresh()
        return True

    def _forget(self, address: Address) -> None:
        if self.primary == address:
            self.primary = None

    def wait_moved(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the primary changes, whichever is first.

        Args:
            seconds: the longest to sleep.
        """
        self._moved.wait(seconds)

    # -- the sockets handed out ----------------------------------------------------------

    def _track(self, address: Address, sock: Any) -> None:
        sockets = self._sockets.get(address)
        if sockets is None:
            sockets = self._sockets[address] = weakref.WeakSet()
        sockets.add(sock)

    def drop(self, address: Address) -> None:
        """End every connection to ``address`` now: each reader sees the end
        of its stream and fails what was pending there; its owner then closes
        the socket, abortively (RST): a node that hangs and comes back later
        finds the connection reset and discards the commands it had not read.
        (Shut down, not closed here: the owner's reader may be watching the
        descriptor, which must stay open until it stops.)

        Args:
            address: the node whose connections end.
        """
        for sock in list(self._sockets.pop(address, ())):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _ABORT)
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
