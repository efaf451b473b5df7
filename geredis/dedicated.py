"""Dedicated connections: a bounded pool of connections that each serve one
caller at a time, for what cannot share the multiplexed connection.

How this works:

* A *permit* is the right to one dedicated connection; a pool has
  ``max_size`` of them (default :data:`MAX_DEDICATED`, 10,000: as many as a
  Redis server accepts clients by default, and as ``max_in_flight``).
  :meth:`DedicatedPool.acquire` takes a permit and returns an idle connection
  (the most recently used one) or opens a new one; :meth:`DedicatedPool.release`
  gives the permit back and keeps at most :data:`MAX_IDLE` connections idle.
  :meth:`DedicatedPool.hold` takes a permit for something that manages its own
  socket (a pinned ``r.client()``, a monitor), so those count against the
  same bound.
* Blocking commands (:meth:`DedicatedPool.run`) never wait for a permit: when
  all are taken they fail at once with
  :class:`~geredis.exceptions.PoolExhaustedError`. Waiting could deadlock:
  the greenlets holding every connection may be blocked on items that only a
  greenlet queued behind them would push (a job consumer and the callers
  waiting for their results on one client). The default bound is high enough
  for a producer/consumer with thousands of waiters; a reached bound is a
  clear error, never a stall.
* Pipelines, transactions, pinned clients and monitors finish on their own,
  so when no permit is free they queue (FIFO, strictly: a permit given back
  goes straight to the longest waiter) for at most ``timeout`` seconds (None:
  as long as it takes), then get ``PoolExhaustedError``.
* A dedicated connection is an ordinary :class:`~geredis.connection.Connection`
  (handshake from the client's settings, lazily opened) with no timeout of its
  own: its one caller bounds every wait itself (:func:`call`, :func:`wait_batch`)
  and, when it gives up (timeout, ``gevent.Timeout``, kill) before the reply,
  the connection is aborted, so a BLPOP the caller abandoned cannot pop an item
  into nowhere. :meth:`release` keeps a connection only when it is clean
  (CONNECTING/OPEN, nothing pending, same client name as the settings, not
  dropped by :meth:`disconnect` meanwhile); anything else is aborted.
* :meth:`disconnect` closes idle connections and marks leased ones to be
  closed when given back (or aborts them); the pool stays usable.
  :meth:`close` refuses new leases, wakes the waiters with
  ``ClientClosedError``, closes idle connections, gives *graceful* leases (a
  pipeline or transaction in flight) until the deadline to come back, and
  aborts the rest (blocking commands, pinned clients, monitors).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections import deque
from typing import Any, Deque, List, Optional, Set

import gevent
from gevent.event import Event
from gevent.hub import Waiter

from .connection import Connection, State
from .exceptions import ClientClosedError, PoolExhaustedError, TimeoutError
from .observability.stats import ClientStats
from .settings import ConnectionSettings
from .slots import BatchSlot, FutureSlot, failure_for

__all__ = [
    "MAX_DEDICATED", "MAX_IDLE", "DedicatedPool", "call", "check_usable", "wait_batch",
    "wait_bound",
]

_LIVE = (State.CONNECTING, State.OPEN)

#: Default bound on a client's dedicated connections (``max_dedicated``).
MAX_DEDICATED = 10_000
#: Idle dedicated connections kept for reuse; more are closed when released.
MAX_IDLE = 16


def wait_bound(extra: float, socket_timeout: Optional[float]) -> Optional[float]:
    """How long a caller waits for a reply: ``extra`` seconds the command may
    block on the server (``math.inf``: forever) plus ``socket_timeout`` as a
    margin.

    Args:
        extra: the seconds the command may block on the server
            (``math.inf``: forever).
        socket_timeout: the client's ``socket_timeout`` (None: no bound).

    Returns:
        The bound in seconds, or None for no bound.
    """
    if socket_timeout is None or math.isinf(extra):
        return None
    return extra + socket_timeout


def check_usable(conn: Connection) -> None:
    """Raise the ConnectionError that closed ``conn``, if it is closed.

    Args:
        conn: a dedicated connection.

    Raises:
        redis.ConnectionError: ``conn`` is closed or closing: a fresh copy of
            the error that closed it (its class kept, e.g.
            ``redis.AuthenticationError``), else
            :class:`~geredis.exceptions.ConnectionClosedError`.
    """
    if conn.state not in _LIVE:
        raise failure_for(
            conn.error or ClientClosedError("connection closed"), conn.settings.address
        )


def call(conn: Connection, packed: bytes, raw: bool, bound: Optional[float],
         abort: bool = True) -> Any:
    """Send one packed command on a dedicated connection and return the raw
    reply (an error reply is returned, not raised).

    Waits at most ``bound`` seconds (None: forever), then raises
    ``redis.TimeoutError``. If the caller gives up before the reply (that
    bound, ``gevent.Timeout``, kill) and ``abort`` is true, the connection is
    aborted so the server cannot act for nobody.

    Args:
        conn: a leased dedicated connection.
        packed: the command, already packed.
        raw: return bytes for this reply even when the settings decode.
        bound: the longest to wait for the reply, in seconds (None: forever).
        abort: abort the connection when the caller gives up first.

    Returns:
        The raw reply; an error reply as a ``redis.ResponseError`` value.

    Raises:
        redis.TimeoutError: no reply within ``bound``.
        redis.ConnectionError: the connection was closed, or broke before
            the reply.
    """
    check_usable(conn)
    slot = FutureSlot()
    conn.submit(packed, slot, raw)
    try:
        slot.wait(bound)
    except BaseException:
        if abort and not slot.ready():
            conn.abort()
        raise
    if not slot.ready():
        if abort:
            conn.abort()
        raise TimeoutError(
            f"Timeout reading from {conn.settings.address}: no reply within {bound}s"
        )
    return slot.get()


def wait_batch(conn: Connection, slot: BatchSlot, bound: Optional[float]) -> List[Any]:
    """Wait at most ``bound`` seconds for a batch submitted on a dedicated
    connection; abort the connection if the caller gives up first.

    Args:
        conn: the dedicated connection the batch went on.
        slot: the batch's slot.
        bound: the longest to wait, in seconds (None: forever).

    Returns:
        The raw replies, one per command, error replies as values.

    Raises:
        redis.TimeoutError: the replies were not all in within ``bound``.
        redis.ConnectionError: the connection broke before the last reply.
    """
    result = slot.result
    try:
        result.wait(bound)
    except BaseException:
        if not result.ready():
            conn.abort()
        raise
    if not result.ready():
        conn.abort()
        raise TimeoutError(
            f"Timeout reading from {conn.settings.address}: no reply within {bound}s"
        )
    return result.get()  # type: ignore[no-any-return]


class _Ticket:
    """A caller queued for a permit."""

    __slots__ = ("waiter", "granted")

    def __init__(self) -> None:
        self.waiter = Waiter()
        self.granted = False


class DedicatedPool:
    """Up to ``max_size`` dedicated connections for one client.

    Args:
        settings: the client's settings (shared, so a later ``client_setname``
            reaches connections opened afterwards).
        parser: as for :class:`~geredis.connection.Connection`.
        max_size: how many dedicated connections (leased, held or idle) may
            exist at once.
        timeout: how long ``acquire`` waits for a free permit; None waits as
            long as it takes, 0 fails at once. Blocking commands never wait.
        stats: the owner's counters (a private set when None).

    Raises:
        ValueError: ``max_size`` is below 1.
    """

    def __init__(self, settings: ConnectionSettings, *, parser: str = "auto",
                 max_size: int = MAX_DEDICATED, timeout: Optional[float] = None,
                 stats: Optional[ClientStats] = None) -> None:
        if max_size < 1:
            raise ValueError("max_dedicated must be at least 1")
        self.settings = settings
        #: Where the pool and its connections count (``r.stats()``).
        self.stats = stats if stats is not None else ClientStats(settings)
        self.max_size = max_size
        self.timeout = timeout
        self._parser = parser
        self._free = max_size
        self._idle: List[Connection] = []
        self._waiters: Deque[_Ticket] = deque()
        self._leased: Set[Connection] = set()
        self._held: "weakref.WeakSet[Any]" = weakref.WeakSet()  # pinned clients, monitors
        self._graceful: Set[Connection] = set()
        self._dropped: Set[Connection] = set()  # leased when disconnect() ran
        self._drained = Event()
        self._drained.set()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<geredis.DedicatedPool in_use={self.in_use}/{self.max_size}"
            f" idle={len(self._idle)} waiting={len(self._waiters)}>"
        )

    @property
    def in_use(self) -> int:
        """Permits taken: leased connections, pinned clients and monitors."""
        return self.max_size - self._free

    @property
    def idle(self) -> int:
        """Open connections waiting for their next lease."""
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Callers waiting for a permit."""
        return len(self._waiters)

    def connections(self) -> List[Connection]:
        """The pool's leased and idle connections.

        Returns:
            A new list of them (held connections are not the pool's).
        """
        return list(self._leased) + self._idle

    # -- permits -------------------------------------------------------------

    def _take_permit(self, wait: bool = True) -> None:
        if self._closed:
            raise ClientClosedError("this geredis client was closed")
        if self._free > 0 and not self._waiters:
            self._free -= 1
        elif wait:
            self._wait_for_permit()
        else:
            self.stats.dedicated_exhausted += 1
            raise PoolExhaustedError(
                f"all {self.max_size} dedicated connections to {self.settings.address}"
                " are in use; a blocking command does not wait for one, since the"
                " commands holding them may be waiting for what this caller would"
                " do next (a deadlock): raise max_dedicated= on geredis.Redis"
            )

    def _wait_for_permit(self) -> None:
        self.stats.dedicated_waits += 1
        timeout = self.timeout
        if timeout is not None and timeout <= 0:
            raise self._exhausted()
        ticket = _Ticket()
        self._waiters.append(ticket)
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            ticket.waiter.get()
        except BaseException as exc:
            if ticket.granted:
                self._give_permit()  # handed over just as we left: pass it on
            else:
                try:
                    self._waiters.remove(ticket)
                except ValueError:
                    pass  # close() emptied the queue
            if exc is timer:
                raise self._exhausted() from None
            raise
        finally:
            timer.close()

    def _exhausted(self) -> PoolExhaustedError:
        self.stats.dedicated_exhausted += 1
        return PoolExhaustedError(
            f"all {self.max_size} dedicated connections to {self.settings.address}"
            f" are in use and none was released within {self.timeout}s"
            " (raise max_dedicated= or dedicated_timeout= on geredis.Redis)"
        )

    def _give_permit(self) -> None:
        if self._waiters:
            ticket = self._waiters.popleft()
            ticket.granted = True
            gevent.get_hub().loop.run_callback(ticket.waiter.switch, None)
        else:
            self._free += 1

    # -- leases ---------------------------------------------------------------

    def connect(self, settings: Optional[ConnectionSettings] = None) -> Connection:
        """A new dedicated connection, opened from ``settings`` or the pool's.
        It has no timeout of its own (its caller bounds each wait) and no
        health-check PINGs (one would queue behind a blocking command).

        Args:
            settings: the settings to open it from (None: the pool's).

        Returns:
            The new connection, not counted against the pool's bound (the
            caller holds a permit), opened lazily.
        """
        base = settings if settings is not None else self.settings
        fresh = dataclasses.replace(base, socket_timeout=None, health_check_interval=0)
        return Connection(fresh, parser=self._parser, stats=self.stats)

    def acquire(self, graceful: bool = False, wait: bool = True) -> Connection:
        """Lease a dedicated connection; give it back with :meth:`release`.

        A ``graceful`` lease (a pipeline in flight) gets until ``close()``'s
        deadline to finish; others are aborted at close. Without ``wait``,
        fail at once when no permit is free.

        Args:
            graceful: let this lease finish at ``close()`` (until its
                deadline) instead of being aborted.
            wait: wait (at most the pool's ``timeout``) for a free permit.

        Returns:
            An idle clean connection (the most recently used), or a new one.

        Raises:
            geredis.PoolExhaustedError: no permit became free within ``timeout`` (at
                once without ``wait``).
            geredis.ClientClosedError: the client was closed.
        """
        self._take_permit(wait)
        self.stats.dedicated_leases += 1
        conn: Optional[Connection] = None
        while self._idle:
            candidate = self._idle.pop()
            if self._clean(candidate):
                conn = candidate
                break
            candidate.abort()
        if conn is None:
            conn = self.connect()
        self._leased.add(conn)
        if graceful:
            self._graceful.add(conn)
            self._drained.clear()
        return conn

    def _clean(self, conn: Connection) -> bool:
        return (
            conn.state in _LIVE
            and conn.pending == 0
            and conn.settings.client_name == self.settings.client_name
        )

    def release(self, conn: Connection) -> None:
        """Give a leased connection back: kept when clean, aborted otherwise.
        Never blocks; a connection not leased (released twice) is ignored.

        Args:
            conn: a connection :meth:`acquire` returned.
        """
        if conn not in self._leased:
            return  # released twice, or already aborted by close()
        self._leased.discard(conn)
        self._graceful.discard(conn)
        dropped = conn in self._dropped
        self._dropped.discard(conn)
        if not self._graceful:
            self._drained.set()
        if not self._closed and not dropped and self._clean(conn) and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.abort()
        self._give_permit()

    def run(self, packed: bytes, raw: bool, bound: Optional[float]) -> Any:
        """One command on a leased connection (a blocking command); fails at
        once with ``PoolExhaustedError`` when every permit is taken.

        Args:
            packed: the command, already packed.
            raw: return bytes for this reply even when the settings decode.
            bound: the longest to wait for the reply, in seconds (None:
                forever); see :func:`wait_bound`.

        Returns:
            The raw reply; an error reply as a ``redis.ResponseError`` value.

        Raises:
            geredis.PoolExhaustedError: every permit is taken.
            geredis.ClientClosedError: the pool was closed.
            redis.TimeoutError: no reply within ``bound`` (the connection is
                aborted).
            redis.ConnectionError: the connection broke before the reply.
        """
        conn = self.acquire(wait=False)
        try:
            return call(conn, packed, raw, bound)
        finally:
            self.release(conn)

    def hold(self, holder: Any) -> None:
        """Take a permit for ``holder``, which opens its own connection. It
        must call :meth:`unhold` exactly once (close, abort or ``__del__``),
        and have ``abort()``, which ``close()`` calls. Held weakly.

        Args:
            holder: a pinned client or a monitor.

        Raises:
            geredis.PoolExhaustedError: no permit became free within the
                pool's ``timeout``.
            geredis.ClientClosedError: the pool was closed.
        """
        self._take_permit()
        self._held.add(holder)
        while len(self._idle) > self._free:  # keep idle + in use <= max_size
            self._idle.pop(0).abort()

    def unhold(self, holder: Any) -> None:
        """Give back the permit :meth:`hold` took for ``holder``.

        Args:
            holder: what :meth:`hold` was given.
        """
        self._held.discard(holder)
        self._give_permit()

    # -- dropping and closing -------------------------------------------------------

    def disconnect(self, abort: bool = False) -> None:
        """Close the idle connections; leased ones are closed when given back,
        or aborted now with ``abort`` (their callers get a ConnectionError).
        Held ones (pinned clients, monitors) are left alone. Never blocks;
        the pool stays usable.

        Args:
            abort: abort the leased connections now instead of when given
                back.
        """
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close_nowait()
        if abort:
            for conn in list(self._leased):
                conn.abort()
        else:
            self._dropped |= self._leased


    def close(self, timeout: Optional[float] = None) -> None:
        """Close every dedicated connection; see the module comment.

        Waits at most ``timeout`` seconds (None: as long as it takes) for
        pipelines in flight on dedicated connections.

        Args:
            timeout: the longest to wait for graceful leases, in seconds.
        """
        self._closed = True
        self._wake_waiters()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close(0)
        for holder in list(self._held):
            holder.abort()
        for conn in list(self._leased - self._graceful):
            self._abort(conn)
        in_flight = list(self._graceful)
        if in_flight:
            self._drained.wait(timeout)
        for conn in list(self._leased):
            self._abort(conn)
        for conn in in_flight:
            conn.close(0)  # released (and aborted) meanwhile: join its greenlets

    def close_nowait(self) -> None:
        """Abort everything now without waiting (safe in ``__del__``)."""
        self._closed = True
        self._wake_waiters()
        for conn in self._idle + list(self._leased) + list(self._held):
            try:
                conn.abort()
            except Exception:  # interpreter shutdown: greenlets are being finalised
                pass
        self._idle = []

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        loop = gevent.get_hub().loop
        for ticket in waiters:
            exc = ClientClosedError("this geredis client was closed")
            loop.run_callback(ticket.waiter.throw, exc)

    def _abort(self, conn: Connection) -> None:
        conn.abort()
        conn.close(0)  # already CLOSED: joins its greenlets
        self.release(conn)
