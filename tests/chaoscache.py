"""The client-side caching invariant, checked for every read of hot keys.

How this works: hot keys are counters that only grow (INCR). Writers, on a
client of their own ("another client") or on the cached client itself,
record the highest value the server acknowledged per key (``acked``). A
tracker greenlet loops: copy ``acked``, send PING on the cached client's
shared connection, and once the PING's reply is back publish the copy as
``visible``: every write acknowledged before that round trip began has had
its invalidation applied (the server sent it before the PING's reply, and
the reader handles frames in stream order). So any read of key ``i`` that
*starts* after that must return at least ``visible[i]``; hits included.
Reads check exactly that, and a read right after the cached client's own
INCR must return at least what the INCR returned (read-your-writes).

Counts: ``hot reads ok``, ``hot hits`` (reads served without a round trip),
``round trips``, ``hot writes acked``; violations: ``STALE hot reads``.
Used by ``tests/cache/test_cache_load.py`` (1,000 greenlets, no faults) and
by the chaos run's caching mode (``python -m tests.chaos --cache``).
"""

from __future__ import annotations

import collections
import random
from typing import Any, Dict, List

import gevent
import redis

import geredis

__all__ = ["CacheInvariant"]


class CacheInvariant:
    """Hot counters, what was acknowledged and what must be visible."""

    def __init__(self, cached: geredis.Redis, prefix: str, keys: int = 100) -> None:
        self.cached = cached
        self.keys = [f"{prefix}:hot:{i}" for i in range(keys)]
        self.acked = [0] * keys
        self.visible = [0] * keys
        self.counts: Dict[str, int] = collections.Counter()
        self.examples: List[str] = []
        self.stopping = False

    def _stale(self, text: str) -> None:
        self.counts["STALE hot reads"] += 1
        if len(self.examples) < 8:
            self.examples.append(text)

    def track(self) -> None:
        """The round-trip loop (run it in a greenlet until ``stopping``)."""
        while not self.stopping:
            snapshot = list(self.acked)
            try:
                self.cached.ping()
            except (redis.ConnectionError, redis.TimeoutError):
                gevent.sleep(0.01)
                continue
            self.visible = snapshot
            self.counts["round trips"] += 1
            gevent.sleep(0.001)

    def write(self, client: geredis.Redis, i: int) -> None:
        """INCR hot key ``i`` on ``client``; errors are the caller's."""
        n = client.incr(self.keys[i])
        if n > self.acked[i]:
            self.acked[i] = n
        self.counts["hot writes acked"] += 1

    def read(self, i: int) -> None:
        """GET hot key ``i`` on the cached client and check it."""
        floor = self.visible[i]
        hits = self._hits()
        value = self.cached.get(self.keys[i])
        got = int(value or 0)
        if got < floor:
            self._stale(f"{self.keys[i]} read {got}, {floor} was acked before a round trip")
        else:
            self.counts["hot reads ok"] += 1
            if self._hits() > hits:
                self.counts["hot hits"] += 1

    def write_then_read(self, i: int) -> None:
        """The cached client's own INCR, then its GET: read-your-writes."""
        n = self.cached.incr(self.keys[i])
        if n > self.acked[i]:
            self.acked[i] = n
        got = int(self.cached.get(self.keys[i]) or 0)
        if got < n:
            self._stale(f"{self.keys[i]} read {got} right after this client's INCR gave {n}")
        else:
            self.counts["hot reads ok"] += 1

    def _hits(self) -> int:
        cache = self.cached.cache
        return 0 if cache is None else cache.stats()["hits"]

    def op(self, rng: random.Random, writer: geredis.Redis) -> None:
        """One random hot-key operation: mostly reads (90%), writes by the
        other client, and the cached client's own write-then-read."""
        i = rng.randrange(len(self.keys))
        roll = rng.random()
        if roll < 0.9:
            self.read(i)
        elif roll < 0.97:
            self.write(writer, i)
        else:
            self.write_then_read(i)

    def report(self) -> Dict[str, Any]:
        return dict(self.counts)
