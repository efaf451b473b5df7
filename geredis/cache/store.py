"""One connection's cache: entries, reads in flight, and counters.

How this works: a :class:`Store` belongs to exactly one connection, so the
invalidations that connection receives are the only ones its entries need.
It is changed in two places only, both in the connection's event loop:

* callers (``lookup`` on a hit, a new ``Flight`` filing itself on a miss);
* the connection's reader, in stream order (``Flight`` completing, see
  ``flight.py``; ``on_push`` for invalidations; ``connection_lost``).

Entries live in an ``OrderedDict`` (oldest first) keyed by the command's
arguments (``keys.entry_key``). LRU is approximated by second chance: a hit
only sets ``entry.used``; when the store is over its entry or byte limit the
oldest entry is evicted if unused, or moved to the back with ``used``
cleared. So a hit never reorders the dict, and eviction stays O(1)
amortised.

``index`` files every entry under the Redis keys it read (bytes), and
``flight_index`` every read in flight, so an invalidation touches only what
it names. A Redis key read by one entry maps to that entry's key itself, a
set is made only for a second one (a set costs ~200 bytes per entry).

Reads in flight and invalidations (``invalidate``, in stream order): an
invalidation parsed *before* a read's reply was sent by the server before
it ran the read (push frames travel in the same ordered stream as replies),
so that reply already holds the new value: the read is left alone. One
parsed *after* the read's reply, while the flight waits for its PTTL
replies, marks it ``stale`` and detaches it: its callers still get the
reply, it is never inserted, and new callers start a new read. The
client's own write of a key (``drop``, when it is queued) detaches every
read of it in flight: all were queued before the write. A ``null``
invalidation (FLUSHDB/FLUSHALL) empties the store the same way
(``flush``); a lost connection empties everything and bumps ``epoch``, so
nothing read on the old connection can be inserted.

Hits are refused (the read goes to the server instead) while ``fenced`` or
``barriers``: after this connection's own write was answered until a later
reply shows that the write's invalidation has been applied, and after a
write on another connection of the same client until a PING sent afterwards
comes back (``flight.py``).

Entry sizes are estimated with ``sys.getsizeof`` over the reply's elements
plus the key and a fixed overhead; ``bench/cache.py`` measures the real
memory per entry.
"""

from __future__ import annotations

from collections import OrderedDict
from copy import deepcopy
from sys import getsizeof
from time import monotonic
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from .config import CacheSettings
from .keys import KeyEncoder

__all__ = ["COUNTERS", "MISS", "Entry", "Store"]

#: What ``lookup`` returns when it cannot serve a value.
MISS: Any = object()

#: The plain counters every store keeps (hits are counted in the owner's
#: ``ClientStats.cache_hits``; ``stats()`` adds entries and bytes).
COUNTERS = ("misses", "joins", "invalidations", "evictions", "expirations", "flushes")

#: Bytes charged per entry on top of its key and value (entry object,
#: OrderedDict node, index sets), measured by bench/cache.py.
ENTRY_OVERHEAD = 240

_IMMUTABLE = frozenset((bytes, str, int, float, bool, type(None)))


def _deep(value: Any) -> Any:
    return deepcopy(value)


def copier_for(value: Any) -> Optional[Callable[[Any], Any]]:
    """How to hand out ``value`` without letting a caller change the cached
    one.

    Args:
        value: a reply about to be cached.

    Returns:
        None when it can be handed out as it is (bytes, str, numbers, None,
        or a tuple of those); ``list.copy``, ``set.copy`` or ``dict.copy``
        for a flat list, set or dict of such items; ``copy.deepcopy``
        otherwise.
    """
    kind = type(value)
    if kind in _IMMUTABLE:
        return None
    if kind is list or kind is set:
        if all(type(item) in _IMMUTABLE for item in value):
            return kind.copy  # type: ignore[no-any-return]
    elif kind is dict:
        if all(type(k) in _IMMUTABLE and type(v) in _IMMUTABLE for k, v in value.items()):
            return dict.copy
    elif kind is tuple:
        if all(type(item) in _IMMUTABLE for item in value):
            return None
    return _deep


def size_of(value: Any) -> int:
    """An estimate of the memory ``value`` holds.

    Args:
        value: a reply: bytes, str, a number, or lists, tuples, sets and
            dicts of those, nested.

    Returns:
        ``sys.getsizeof`` of ``value`` plus, for a container, that of every
        item (keys and values of a dict) recursively, in bytes.
    """
    kind = type(value)
    if kind is bytes or kind is str:
        return getsizeof(value)
    if kind is list or kind is tuple or kind is set:
        return getsizeof(value) + sum(size_of(item) for item in value)
    if kind is dict:
        return getsizeof(value) + sum(size_of(k) + size_of(v) for k, v in value.items())
    return getsizeof(value)


class Entry:
    """A cached reply: its value, how to copy it, until when it is good, the
    Redis keys it read, its charged size, and the second-chance bit
    (``used``, False when made).

    Args:
        value: the reply as parsed (before any response callback).
        deadline: when it stops being served (``time.monotonic()`` time).
        rkeys: the Redis keys the command read, as bytes.
        size: the bytes charged against ``max_bytes``.
        copy: how to hand the value out (:func:`copier_for`; None: as it
            is).
    """

    __slots__ = ("value", "copy", "deadline", "rkeys", "size", "used")

    def __init__(self, value: Any, deadline: float, rkeys: Tuple[bytes, ...], size: int,
                 copy: Optional[Callable[[Any], Any]]) -> None:
        self.value = value
        self.copy = copy
        self.deadline = deadline
        self.rkeys = rkeys
        self.size = size
        self.used = False


class Store:
    """A connection's cache (see the module comment).

    Made by :meth:`geredis.cache.ClientCache.new_store` for each shared
    connection; changed only in that connection's event loop.

    Args:
        settings: the cache's resolved settings (limits, TTL).
        encoder: turns the keys named by invalidations into bytes.
        counters: the owner's ``ClientStats``, where hits and evictions are
            counted too.
    """

    def __init__(self, settings: CacheSettings, encoder: KeyEncoder, counters: Any) -> None:
        self.settings = settings
        self.encoder = encoder
        #: The owner's ``ClientStats``: cache_hits, cache_misses, cache_evicted().
        self.client_stats = counters
        self.entries: "OrderedDict[Any, Entry]" = OrderedDict()
        self.index: Dict[bytes, Any] = {}  # an entry key, or a set of them
        self.flights: Dict[Any, Any] = {}
        self.flight_index: Dict[bytes, Any] = {}
        self.nbytes = 0
        self.fenced = False
        self.barriers = 0
        self.epoch = 0
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self.misses = self.joins = 0
        self.invalidations = self.evictions = self.expirations = self.flushes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<geredis.cache.Store entries={len(self.entries)} bytes={self.nbytes}>"

    # -- callers --------------------------------------------------------------

    def lookup(self, key: Any) -> Any:
        """The cached value for ``key``, counting a hit.

        An entry past its deadline is dropped (an expiration) instead.

        Args:
            key: the entry key (``keys.entry_key``).

        Returns:
            The value (a copy if it is mutable), or :data:`MISS` when there
            is no live entry or hits are refused (``fenced``, ``barriers``).
        """
        if self.fenced or self.barriers:
            return MISS
        entry = self.entries.get(key)
        if entry is None:
            return MISS
        if entry.deadline < monotonic():
            self.expirations += 1
            self.client_stats.cache_evicted(1, "expired")
            self._remove(key)
            return MISS
        entry.used = True
        self.client_stats.cache_hits += 1
        copy = entry.copy
        return entry.value if copy is None else copy(entry.value)

    def end_flight(self, flight: Any) -> None:
        """Unfile a read in flight, if it is still the one filed.

        Args:
            flight: the :class:`~geredis.cache.flight.Flight` to unfile (one
                detached already, or replaced, is left alone).
        """
        key, rkeys = flight.key, flight.rkeys
        if self.flights.get(key) is flight:
            del self.flights[key]
            unfile_from(self.flight_index, key, rkeys)

    # -- the reader -------------------------------------------------------------

    def insert(self, key: Any, value: Any, rkeys: Tuple[bytes, ...], deadline: float,
               copy: Optional[Callable[[Any], Any]]) -> None:
        """Cache ``value`` for ``key``, replacing its entry, then evict
        (LRU, second chance) while over ``max_entries`` or ``max_bytes``.

        A value larger than ``max_bytes`` by itself is not cached (the old
        entry is still dropped).

        Args:
            key: the entry key.
            value: the reply as parsed.
            rkeys: the Redis keys the command read, as bytes (the entry is
                filed under each).
            deadline: when it stops being served (``time.monotonic()``
                time).
            copy: ``copier_for(value)``.
        """
        if key in self.entries:
            self._remove(key)
        size = ENTRY_OVERHEAD + getsizeof(key) + sum(map(getsizeof, key)) + (
            getsizeof(value) if type(value) is bytes else size_of(value))
        if size > self.max_bytes:
            return
        self.entries[key] = Entry(value, deadline, rkeys, size, copy)
        self.nbytes += size
        file_under(self.index, key, rkeys)
        if len(self.entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._evict()

    def on_push(self, push: Any) -> None:
        """Apply a RESP3 push message, in stream order (the connection's
        ``on_push``).

        Only invalidations concern the cache: ``invalidate`` with a list of
        keys drops what read them (see :meth:`invalidate`); with null
        (``FLUSHDB``/``FLUSHALL``) it empties the store (:meth:`flush`).
        Other pushes are ignored.

        Args:
            push: the push message as parsed (a list: its kind, then its
                data; bytes, or str when decoding).
        """
        if len(push) < 2 or push[0] not in (b"invalidate", "invalidate"):
            return
        names = push[1]
        if names is None:
            self.flush()
            return
        pushed_key = self.encoder.pushed_key
        index, flight_index = self.index, self.flight_index
        for name in names:
            rkey = name if type(name) is bytes else pushed_key(name)
            if rkey in index or rkey in flight_index:  # else dropped already (own write)
                self.invalidate(rkey)

    def invalidate(self, rkey: bytes) -> None:
        """The server invalidated ``rkey``: drop every entry that read it,
        detach the reads of it in flight already answered.

        Reads of it in flight not yet answered are left alone: the server ran
        them after the change.

        Args:
            rkey: the Redis key, as bytes.
        """
        filed = self.index.pop(rkey, None)
        if filed is not None:
            self._drop_entries(filed, rkey)
        filed = self.flight_index.get(rkey)
        if filed is not None:
            for key in list(filed) if type(filed) is set else (filed,):
                flight = self.flights[key]
                if flight.answered:  # answered before this invalidation: stale
                    del self.flights[key]
                    flight.stale = True
                    unfile_from(self.flight_index, key, flight.rkeys)

    def drop(self, rkey: bytes) -> None:
        """This connection is about to write ``rkey``: drop every entry that
        read it and detach every read of it in flight (all were queued
        before the write).

        Args:
            rkey: the Redis key, as bytes.
        """
        filed = self.index.pop(rkey, None)
        if filed is not None:
            self._drop_entries(filed, rkey)
        filed = self.flight_index.pop(rkey, None)
        if filed is not None:
            for key in filed if type(filed) is set else (filed,):
                flight = self.flights.pop(key)
                flight.stale = True
                unfile_from(self.flight_index, key, flight.rkeys, rkey)

    def flush(self) -> int:
        """Empty the store and detach the reads in flight already answered
        (see :meth:`invalidate`); counts a flush.

        Returns:
            How many entries were dropped.
        """
        count = len(self.entries)
        if count:
            self.client_stats.cache_evicted(count, "flush")
        self.entries.clear()
        self.index.clear()
        self.nbytes = 0
        for flight in [f for f in self.flights.values() if f.answered]:
            self.end_flight(flight)
            flight.stale = True
        self.flushes += 1
        return count

    def detach_flights(self) -> None:
        """Mark every read in flight stale and let no caller join it (a write
        on another connection may have come after it ran)."""
        for flight in self.flights.values():
            flight.stale = True
        self.flights.clear()
        self.flight_index.clear()

    def connection_lost(self) -> None:
        """The connection broke: forget everything it read or is reading."""
        self.epoch += 1
        self.fenced = False
        self.barriers = 0
        self.flush()
        self.detach_flights()

    # -- internals ----------------------------------------------------------------

    def _remove(self, key: Any) -> None:
        entry = self.entries[key]
        del self.entries[key]  # not OrderedDict.pop: it parses its arguments the slow way
        self.nbytes -= entry.size
        unfile_from(self.index, key, entry.rkeys)

    def _drop_entries(self, filed: Any, rkey: bytes) -> None:
        # Drop the entries that were filed under ``rkey`` (popped from the
        # index already): invalidated.
        keys = filed if type(filed) is set else (filed,)
        entries, index = self.entries, self.index
        for key in keys:
            entry = entries[key]
            del entries[key]  # not OrderedDict.pop (see _remove)
            self.nbytes -= entry.size
            if len(entry.rkeys) > 1:  # filed under other keys too
                unfile_from(index, key, entry.rkeys, rkey)
        self.invalidations += len(keys)
        self.client_stats.cache_evicted(len(keys), "invalidation")

    def _evict(self) -> None:
        entries = self.entries
        while entries and (len(entries) > self.max_entries or self.nbytes > self.max_bytes):
            key, entry = entries.popitem(last=False)
            if entry.used:
                entry.used = False
                entries[key] = entry  # second chance: to the back
                continue
            self.nbytes -= entry.size
            unfile_from(self.index, key, entry.rkeys)
            self.evictions += 1
            self.client_stats.cache_evicted(1, "full")

    def counters(self) -> Dict[str, int]:
        """The plain counters (see :data:`COUNTERS`).

        Returns:
            A new dict: counter name -> count, for this store.
        """
        return {name: getattr(self, name) for name in COUNTERS}


def file_under(index: Dict[bytes, Any], key: Any, rkeys: Iterable[bytes]) -> None:
    """File ``key`` (an entry's or a flight's) under each of ``rkeys`` in
    ``index``: the key alone, or a set of keys.

    Args:
        index: ``Store.index`` or ``Store.flight_index``.
        key: the entry key.
        rkeys: the Redis keys it read, as bytes.
    """
    for rkey in rkeys:
        filed = index.get(rkey)
        if filed is None:
            index[rkey] = key
        elif type(filed) is set:
            filed.add(key)
        elif filed != key:
            index[rkey] = {filed, key}


def unfile_from(index: Dict[bytes, Any], key: Any, rkeys: Iterable[bytes],
                skip: Optional[bytes] = None) -> None:
    """Unfile ``key`` from each of ``rkeys`` in ``index``.

    Args:
        index: ``Store.index`` or ``Store.flight_index``.
        key: the entry key.
        rkeys: the Redis keys it was filed under, as bytes.
        skip: a Redis key to leave alone (popped from ``index`` already).
    """
    for rkey in rkeys:
        if rkey == skip:
            continue
        filed = index.get(rkey)
        if filed is None:
            continue
        if type(filed) is set:
            filed.discard(key)
            if not filed:
                del index[rkey]
        elif filed == key:
            del index[rkey]
