"""Feature flags read thousands of times a second, served from the client-side cache.

    REDIS_URL=redis://localhost:6379/0 python examples/feature_flags.py [readers] [seconds]

A web app checks its feature flags on every request. Here ``readers``
greenlets (default 1,000) read three flags in a loop through one caching
client (``cache_config=``: Redis 6+, RESP3), while an admin greenlet flips
one flag every half second through a separate, uncached client, as another
process would. Reads are answered from the cache without a round trip;
Redis pushes an invalidation when a flag changes, and the next read fetches
the new value. At the end it prints the reads per second, the cache's
counters, and how long each change took to be seen by the readers.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Dict, List

import gevent

import geredis
from geredis.cache import CacheConfig

FLAGS = ["flags:new-checkout", "flags:dark-mode", "flags:beta-search"]


def main() -> None:
    readers = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    app = geredis.from_url(url, protocol=3, decode_responses=True,
                           cache_config=CacheConfig(max_size=1_000, ttl=60))
    admin = geredis.from_url(url, decode_responses=True)  # no cache: another process's writes
    for flag in FLAGS:
        admin.set(flag, "off")

    reads = [0]
    flipped_at: Dict[str, float] = {}  # value -> when the admin set it
    seen_after: List[float] = []  # how long until a reader saw each new value
    stop = False

    def reader() -> None:
        while not stop:
            for flag in FLAGS:
                value = app.get(flag)
                reads[0] += 1
                started = flipped_at.pop(value, None) if flag == FLAGS[0] else None
                if started is not None:
                    seen_after.append(time.perf_counter() - started)
            gevent.sleep(0)  # a hit never waits: let the other greenlets run

    def flipper() -> None:
        n = 0
        while not stop:
            gevent.sleep(0.5)
            n += 1
            value = f"on-{n}" if n % 2 else f"off-{n}"
            flipped_at[value] = time.perf_counter()
            admin.set(FLAGS[0], value)

    workers = [gevent.spawn(reader) for _ in range(readers)] + [gevent.spawn(flipper)]
    started = time.perf_counter()
    gevent.sleep(seconds)
    stop = True
    gevent.joinall(workers, raise_error=True)
    elapsed = time.perf_counter() - started

    stats = app.cache.stats() if app.cache is not None else {}
    print(f"{readers} readers, {reads[0] / elapsed:,.0f} flag reads/s over {elapsed:.1f} s")
    print(f"cache: {stats.get('hits', 0):,} hits, {stats.get('misses', 0):,} misses,"
          f" {stats.get('invalidations', 0):,} invalidations, {stats.get('entries', 0)} entries")
    if seen_after:
        worst = max(seen_after) * 1000
        print(f"{len(seen_after)} flag changes, each seen by a reader within {worst:.1f} ms")
    # The promise: a write acknowledged to another client is seen by every read
    # that starts after one more round trip on the caching client's own
    # connection (its invalidation travels there, ahead of that reply).
    app.ping()
    print(f"final value of {FLAGS[0]}: {app.get(FLAGS[0])!r} (server: {admin.get(FLAGS[0])!r})")
    for flag in FLAGS:
        admin.delete(flag)
    app.close()
    admin.close()


if __name__ == "__main__":
    main()
