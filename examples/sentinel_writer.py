"""Keep writing through a Sentinel-managed primary while it fails over.

    SENTINELS=127.0.0.1:26379,127.0.0.1:26380 SERVICE=mymaster \\
        python examples/sentinel_writer.py [greenlets] [seconds]

``greenlets`` (default 100) each append numbers to a list of their own
through ``Sentinel.master_for(SERVICE)`` for ``seconds`` (default 30). Run
``redis-cli -p 26379 SENTINEL FAILOVER mymaster`` (or kill the primary)
meanwhile: the client moves to the new primary as soon as the sentinels
announce it, and never writes to the old one once it is demoted. Each
change of primary is printed as the writers see it. A write whose outcome
was lost with the old primary raises ``redis.ConnectionError`` (it is never
re-sent behind the caller's back); the writer counts it and goes on. At the
end every acknowledged write is checked on the current primary.
"""

from __future__ import annotations

import os
import sys
import time
from typing import List, Optional, Tuple

import gevent
import redis

from geredis.sentinel import Sentinel


def sentinel_addresses() -> List[Tuple[str, int]]:
    spec = os.environ.get("SENTINELS", "127.0.0.1:26379")
    addresses = []
    for item in spec.split(","):
        host, _, port = item.strip().rpartition(":")
        addresses.append((host or "127.0.0.1", int(port)))
    return addresses


def main() -> None:
    greenlets = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    service = os.environ.get("SERVICE", "mymaster")
    sentinel = Sentinel(sentinel_addresses(), socket_timeout=1.0)
    primary = sentinel.master_for(service, socket_timeout=1.0)

    acked: List[List[int]] = [[] for _ in range(greenlets)]
    lost = [0]
    current: List[Optional[Tuple[str, int]]] = [None]
    started = time.perf_counter()
    stop = False

    def writer(i: int) -> None:
        key = f"sentinel-writer:{i}"
        n = 0
        while not stop:
            n += 1
            try:
                primary.rpush(key, n)
            except (redis.ConnectionError, redis.TimeoutError):
                lost[0] += 1  # the outcome is unknown: count it, do not assume
                gevent.sleep(0.05)
                continue
            acked[i].append(n)
            address = sentinel.discover_master(service) if i == 0 and n % 200 == 0 else None
            if address is not None and address != current[0]:
                print(f"{time.perf_counter() - started:6.2f} s: writing to {address[0]}:{address[1]}",
                      flush=True)
                current[0] = address

    primary.delete(*[f"sentinel-writer:{i}" for i in range(greenlets)])
    workers = [gevent.spawn(writer, i) for i in range(greenlets)]
    gevent.sleep(seconds)
    stop = True
    gevent.joinall(workers, raise_error=True)

    missing = 0
    for i, numbers in enumerate(acked):
        stored = {int(v) for v in primary.lrange(f"sentinel-writer:{i}", 0, -1)}
        missing += sum(1 for n in numbers if n not in stored)
    total = sum(len(numbers) for numbers in acked)
    print(f"{total:,} writes acknowledged, {missing} of them missing on the primary now,"
          f" {lost[0]} with an unknown outcome (ConnectionError/TimeoutError)")
    primary.delete(*[f"sentinel-writer:{i}" for i in range(greenlets)])
    primary.close()
    sentinel.close()


if __name__ == "__main__":
    main()
