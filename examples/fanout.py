"""Fan r.get out over 1,000 greenlets that share one geredis connection.

    REDIS_URL=redis://localhost:6379/0 python examples/fanout.py

Writes 1,000 keys, then 1,000 greenlets each read one key with plain blocking
calls; geredis pipelines their commands over a single connection. Prints what
it did, how long it took, and how many connections the server saw.
"""

from __future__ import annotations

import os
import time

import gevent

import geredis

N = int(os.environ.get("FANOUT_GREENLETS", "1000"))


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    r = geredis.from_url(url, decode_responses=True)
    print(f"connected: {r!r}")

    started = time.perf_counter()
    writers = [gevent.spawn(r.set, f"fanout:{i}", f"value-{i}") for i in range(N)]
    gevent.joinall(writers, raise_error=True)
    wrote = time.perf_counter() - started

    def read(i: int) -> bool:
        return r.get(f"fanout:{i}") == f"value-{i}"

    started = time.perf_counter()
    readers = [gevent.spawn(read, i) for i in range(N)]
    gevent.joinall(readers, raise_error=True)
    took = time.perf_counter() - started

    correct = sum(g.value for g in readers)
    clients = r.info("clients")["connected_clients"]
    print(f"wrote {N} keys from {N} greenlets in {wrote * 1000:.1f} ms")
    print(
        f"read  {N} keys from {N} greenlets in {took * 1000:.1f} ms"
        f" ({N / took:,.0f} GET/s), {correct}/{N} values correct"
    )
    print(f"server saw {clients} client connection(s) (this demo uses 1)")
    r.delete(*[f"fanout:{i}" for i in range(N)])
    r.close()
    print(f"closed:    {r!r}")
    if correct != N:
        raise SystemExit("some greenlets got the wrong value")


if __name__ == "__main__":
    main()
