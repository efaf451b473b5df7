"""The slots a caching connection's reader runs in stream order.

How this works: every slot here is a :class:`~geredis.slots.ReaderSlot`:
its ``parsed(reply)`` runs in the connection's reader the moment the reply
is parsed, in the same ordered pass as the push frames (invalidations), and
before any waiter wakes (it returns the reply, unchanged). That order is what makes the cache race-free
without locks (the argument of Redis's client-side caching docs for one
RESP3 connection):

* :class:`Flight` is a cached read on the wire (one per entry key at a
  time: callers that miss while it flies join it instead of sending their
  own). Its batch is ``[CLIENT CACHING YES] READ [PTTL key ...]``, appended
  contiguously; the flight is the slot of the read's reply and of each
  PTTL's (one object per miss). When the last reply of the batch is parsed, the value is
  inserted unless the flight went ``stale`` in between: an invalidation of
  one of its keys (or a flush) arrived after the read's reply, this client
  queued a write of one of them after the read, its ``CLIENT CACHING YES``
  or a PTTL failed, or the connection was lost (``store.py`` says why an
  invalidation parsed before the read's reply cannot make it stale). Its entry lives
  until ``min(ttl, PTTL)`` counted from when it was sent, which can only be
  earlier than the key's expiry on the server.
* :class:`WriteSlot` wraps the slot of a write whose keys are unknown
  (EVAL, FCALL, a module command...). Redis sends the invalidation caused by
  a connection's own write after that write's reply and before the next
  command's reply (Redis 7.0+; before the reply on 6.x), so between the two
  the writer could hit a stale entry. The write's reply sets the store's
  ``fenced`` flag, which refuses every hit until the next cached read's
  reply (sent after the write, so after its invalidation) clears it. (A
  write whose keys are known drops them from the store when it is queued:
  ``ClientCache``.) This gives read-your-writes on one client.
* :class:`BarrierSlot` is a PING sent after a write on another connection
  of the same client (pipeline, transaction, blocking command,
  ``r.client()``): hits are refused until its reply comes back, after every
  invalidation the write caused.

``switch``/``throw`` run in the hub afterwards, as for every slot, and hand
the reply (a copy of a mutable one) or the error to the waiting callers.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, List, Optional, Tuple

from ..slots import ReaderSlot
from .store import Store, copier_for, file_under, unfile_from

__all__ = ["BarrierSlot", "Flight", "OptinSlot", "WriteSlot"]


def _fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one more caller (tracebacks are per raise)."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        return exc
    copy.__cause__ = exc.__cause__
    return copy


class Flight(ReaderSlot):
    """A cached read in flight: the FIFO slot of its replies and its callers.

    Making it files it in ``store`` (``flights``, ``flight_index``), so
    invalidations and callers that miss the same entry find it.

    Args:
        store: the store of the connection it is sent on (its ``epoch`` is
            noted: a value read before a reconnect is never inserted).
        key: the entry key.
        rkeys: the Redis keys the read reads, as bytes.
        ttl: the longest the entry may live, in seconds, counted from now.
        pttls: how many PTTL replies come before the read's in its batch
            (0 without ``fetch_ttl``).
        waiter: the first caller's slot (a gevent ``Waiter`` or a
            ``FutureSlot``); callers that join are added to ``joiners``.
    """

    __slots__ = ("store", "key", "rkeys", "epoch", "started", "waiter", "joiners", "stale",
                 "answered", "value", "copy", "pttls", "expires_in", "done")

    def __init__(self, store: Store, key: Any, rkeys: Tuple[bytes, ...], ttl: float,
                 pttls: int, waiter: Any) -> None:
        self.store = store
        self.key = key
        self.rkeys = rkeys
        self.epoch = store.epoch
        self.started = monotonic()
        self.waiter: Any = waiter
        self.joiners: List[Any] = []  # callers that missed the same entry meanwhile
        self.stale = False
        self.answered = False  # the read's reply was parsed: ``value`` holds it
        self.value: Any = None
        self.copy: Any = None  # how to hand ``value`` out (store.copier_for)
        self.pttls = pttls  # PTTL replies still to come
        self.expires_in = ttl
        self.done = False  # callers answered
        store.flights[key] = self
        file_under(store.flight_index, key, rkeys)

    def __repr__(self) -> str:
        return f"<geredis.cache.Flight {self.key!r:.60} joiners={len(self.joiners)}>"

    # -- the reader, in stream order -------------------------------------------

    def parsed(self, reply: Any) -> Any:
        """Runs in the reader as a reply of the flight's batch is parsed.

        The read's reply lifts the store's fence and is kept (an error reply
        abandons the flight). The flight is also the slot of its PTTL replies
        (no object per PTTL): each one caps the entry's life (-1: no expiry,
        -2: no key; neither caps; an error makes the flight stale). After
        the last reply of the batch the flight is unfiled and the value
        inserted, unless stale.

        Args:
            reply: the read's reply (or a PTTL's), or the exception of an
                error reply.

        Returns:
            ``reply``, unchanged.
        """
        if self.answered:  # a PTTL reply, in milliseconds
            if type(reply) is not int:  # an error reply
                self.stale = True
            elif reply >= 0:
                self.expires_in = min(self.expires_in, reply / 1000.0)
            self.pttls -= 1
        else:
            self.answered = True
            self.store.fenced = False  # any write answered before this was applied
            if isinstance(reply, Exception):
                self._abandon()
                return reply
            self.value = reply
            if type(reply) is not bytes:
                self.copy = copier_for(reply)
        if not self.pttls:  # the last reply of the batch: complete
            store, key = self.store, self.key
            if store.flights.get(key) is self:  # not detached: unfile it
                del store.flights[key]
                unfile_from(store.flight_index, key, self.rkeys)
            if not self.stale and self.epoch == store.epoch:
                store.insert(key, self.value, self.rkeys, self.started + self.expires_in,
                             self.copy)
        return reply

    def _abandon(self) -> None:
        self.stale = True
        self.store.end_flight(self)

    # -- the hub ------------------------------------------------------------------

    def switch(self, reply: Any) -> None:
        """Runs in the hub: hand the reply to every caller, once (a copy each
        when it is mutable); a PTTL reply after it does nothing.

        Args:
            reply: the read's reply, or the exception of an error reply
                (each caller raises it).
        """
        if self.done:
            return
        self.done = True
        first, joiners = self.waiter, self.joiners
        self.waiter = None
        copy = self.copy  # None for an error reply, parsed without a copier
        first.switch(reply if copy is None else copy(reply))
        for waiter in joiners:
            waiter.switch(reply if copy is None else copy(reply))

    def throw(self, exc: BaseException) -> None:
        """The read or a PTTL failed (timeout, lost connection): abandon the
        flight (nothing is inserted) and raise ``exc`` in every caller not
        answered yet (a copy each after the first).

        Args:
            exc: the error.
        """
        self._abandon()
        if self.done:
            return
        self.done = True
        first, joiners = self.waiter, self.joiners
        self.waiter = None
        first.throw(exc)
        for waiter in joiners:
            waiter.throw(_fresh(exc))


class OptinSlot(ReaderSlot):
    """The reply of the ``CLIENT CACHING YES`` sent before a flight's read:
    if it failed, the read is not tracked and must not be cached.

    Args:
        flight: the flight whose read it opts in.
    """

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def parsed(self, reply: Any) -> Any:
        """Runs in the reader: an error reply makes the flight stale.

        Args:
            reply: ``OK``, or the exception of an error reply.

        Returns:
            ``reply``, unchanged.
        """
        if isinstance(reply, Exception):
            self.flight.stale = True
        return reply

    def switch(self, reply: Any) -> None:
        """Nothing: nobody waits for this reply.

        Args:
            reply: the reply.
        """
        pass

    def throw(self, exc: BaseException) -> None:
        """Nothing: the flight's own slot fails with the same error.

        Args:
            exc: the error.
        """
        pass


class WriteSlot(ReaderSlot):
    """Wraps the slot of a write whose keys are unknown: its reply raises
    the fence (see the module comment). The reply or error goes on to
    ``target`` unchanged.

    Args:
        store: the store of the connection the write is queued on.
        target: the caller's slot (a gevent ``Waiter`` or a
            ``FutureSlot``).
        raw: True to have the reply read undecoded (the call's
            ``NEVER_DECODE``).
    """

    __slots__ = ("store", "decode")

    def __init__(self, store: Store, target: Any, raw: bool = False) -> None:
        self.target = target
        self.store = store
        self.decode = not raw  # NEVER_DECODE: read undecoded (no RawSlot around it)

    def parsed(self, reply: Any) -> Any:
        """Runs in the reader: fences the store (hits refused until the next
        cached read's reply), whatever the reply, error replies included.

        Args:
            reply: the write's reply, or the exception of an error reply.

        Returns:
            ``reply``, unchanged.
        """
        self.store.fenced = True
        return reply


class BarrierSlot(ReaderSlot):
    """A PING's slot: lifts one barrier when its reply is parsed. A timeout
    does not lift it (the late reply will); a lost connection resets every
    barrier with the store.

    Args:
        store: the store of the connection the PING is queued on; making
            the slot raises one barrier there at once.
    """

    __slots__ = ("store", "epoch")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.epoch = store.epoch
        store.barriers += 1

    def parsed(self, reply: Any) -> Any:
        """Runs in the reader: lifts this slot's barrier (unless the
        connection was lost since, which reset them all).

        Args:
            reply: the PING's reply (or an error: lifts it too).

        Returns:
            ``reply``, unchanged.
        """
        store = self.store
        if self.epoch == store.epoch and store.barriers:
            store.barriers -= 1
        return reply

    def switch(self, reply: Any) -> None:
        """Nothing: nobody waits for the PING.

        Args:
            reply: the PING's reply.
        """
        pass

    def throw(self, exc: BaseException) -> None:
        """Nothing: see the class comment.

        Args:
            exc: the error.
        """
        pass
