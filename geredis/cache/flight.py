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
  contiguously. When the last reply of the batch is parsed, the value is
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
from typing import Any, List, Tuple

from ..slots import ReaderSlot
from .store import Store, copier_for

__all__ = ["BarrierSlot", "Flight", "OptinSlot", "PttlSlot", "WriteSlot"]


def _fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one more caller (tracebacks are per raise)."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        return exc
    copy.__cause__ = exc.__cause__
    return copy


class Flight(ReaderSlot):
    """A cached read in flight: the FIFO slot of its reply and its callers."""

    __slots__ = ("store", "key", "rkeys", "epoch", "started", "waiters", "stale",
                 "ready", "value", "copy", "pttls", "expires_in", "done")

    def __init__(self, store: Store, key: Any, rkeys: Tuple[bytes, ...], ttl: float,
                 pttls: int, waiter: Any) -> None:
        self.store = store
        self.key = key
        self.rkeys = rkeys
        self.epoch = store.epoch
        self.started = monotonic()
        self.waiters: List[Any] = [waiter]
        self.stale = False
        self.ready = False  # the read's reply was parsed: ``value`` holds it
        self.value: Any = None
        self.copy: Any = None  # how to hand ``value`` out (store.copier_for)
        self.pttls = pttls  # PTTL replies still to come
        self.expires_in = ttl
        self.done = False  # callers answered

    def __repr__(self) -> str:
        return f"<geredis.cache.Flight {self.key!r:.60} waiters={len(self.waiters)}>"

    # -- the reader, in stream order -------------------------------------------

    def parsed(self, reply: Any) -> Any:
        store = self.store
        store.fenced = False  # any write answered before this was applied
        if isinstance(reply, Exception):
            self._abandon()
            return reply
        self.value = reply
        self.copy = copier_for(reply)
        self.ready = True
        if not self.pttls:
            self._complete()
        return reply

    def pttl(self, reply: Any) -> None:
        """A PTTL reply of this flight's batch (milliseconds; -1: no expiry,
        -2: no key)."""
        if isinstance(reply, Exception) or not isinstance(reply, int):
            self.stale = True
        elif reply >= 0:
            self.expires_in = min(self.expires_in, reply / 1000.0)
        self.pttls -= 1
        if not self.pttls and self.ready:
            self._complete()

    def _complete(self) -> None:
        store = self.store
        store.end_flight(self)
        if not self.stale and self.epoch == store.epoch:
            store.insert(self.key, self.value, self.rkeys, self.started + self.expires_in,
                         self.copy)

    def _abandon(self) -> None:
        self.stale = True
        self.store.end_flight(self)

    # -- the hub ------------------------------------------------------------------

    def switch(self, reply: Any) -> None:
        if self.done:
            return
        self.done = True
        waiters, self.waiters = self.waiters, []
        copy = self.copy  # None for an error reply, parsed without a copier
        if len(waiters) == 1 and copy is None:
            waiters[0].switch(reply)
            return
        for waiter in waiters:
            waiter.switch(reply if copy is None else copy(reply))

    def throw(self, exc: BaseException) -> None:
        self._abandon()
        if self.done:
            return
        self.done = True
        waiters, self.waiters = self.waiters, []
        for i, waiter in enumerate(waiters):
            waiter.throw(exc if i == 0 else _fresh(exc))


class PttlSlot(ReaderSlot):
    """The reply of a PTTL sent with a flight."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def parsed(self, reply: Any) -> Any:
        self.flight.pttl(reply)
        return reply

    def switch(self, reply: Any) -> None:
        pass

    def throw(self, exc: BaseException) -> None:
        self.flight._abandon()


class OptinSlot(ReaderSlot):
    """The reply of the ``CLIENT CACHING YES`` sent before a flight's read:
    if it failed, the read is not tracked and must not be cached."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def parsed(self, reply: Any) -> Any:
        if isinstance(reply, Exception):
            self.flight.stale = True
        return reply

    def switch(self, reply: Any) -> None:
        pass

    def throw(self, exc: BaseException) -> None:
        pass


class WriteSlot(ReaderSlot):
    """Wraps the slot of a write whose keys are unknown: its reply raises
    the fence (see the module comment)."""

    __slots__ = ("store", "decode")

    def __init__(self, store: Store, target: Any, raw: bool = False) -> None:
        self.target = target
        self.store = store
        self.decode = not raw  # NEVER_DECODE: read undecoded (no RawSlot around it)

    def parsed(self, reply: Any) -> Any:
        self.store.fenced = True
        return reply


class BarrierSlot(ReaderSlot):
    """A PING's slot: lifts one barrier when its reply is parsed. A timeout
    does not lift it (the late reply will); a lost connection resets every
    barrier with the store."""

    __slots__ = ("store", "epoch")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.epoch = store.epoch
        store.barriers += 1

    def parsed(self, reply: Any) -> Any:
        store = self.store
        if self.epoch == store.epoch and store.barriers:
            store.barriers -= 1
        return reply

    def switch(self, reply: Any) -> None:
        pass

    def throw(self, exc: BaseException) -> None:
        pass
