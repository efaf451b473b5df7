"""Client-side caching: cached vs uncached reads, same server, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/cache.py [--seconds 2] [--rounds 3]

Every cell runs in a fresh process that calls ``gevent.monkey.patch_all()``
first. 1,000 hot keys hold 16-byte values. Configurations:

* ``geredis cached``: ``geredis.Redis(protocol=3, cache_config=CacheConfig())``;
* ``geredis``: the same client without a cache (one multiplexed connection);
* ``redis-py``: ``redis.Redis`` on ``BlockingConnectionPool(50)`` with hiredis,
  uncached (redis-py's own cache needs Redis 7.4+; it refuses older servers).

Workloads: ``get`` (C greenlets GET random hot keys in a loop) at 1, 100
and 1,000 greenlets; ``mix`` (90% GET of the hot keys, 10% SET of one of
them through the same client, which invalidates it) at 100 and 1,000
greenlets; ``mixother`` (the same, but the SETs go through a second,
uncached client in the same process, as writes from other app processes
would: the cached client only gets their invalidations). Each cell reports operations per second and the client's CPU per
operation (``time.process_time``). ``hit`` times one greenlet's loop of
cache hits (wall and CPU per hit). ``memory`` fills a cache with 100,000
entries and reports the bytes per entry (tracemalloc) and the cache's own
estimate. Rounds interleave the configurations; medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ["geredis cached", "geredis", "redis-py"]
HOT_KEYS = 1000
VALUE = "v" * 16


def _client(config: str, url: str) -> Any:
    import gevent.queue
    import redis

    if config == "redis-py":
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=50, timeout=60, queue_class=gevent.queue.LifoQueue)
        return redis.Redis(connection_pool=pool)
    import geredis
    from geredis.cache import CacheConfig

    if config == "geredis cached":
        return geredis.Redis.from_url(url, socket_timeout=60, protocol=3,
                                      cache_config=CacheConfig(max_size=100_000))
    return geredis.Redis.from_url(url, socket_timeout=60)


def worker(config: str, workload: str, greenlets: int, seconds: float, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    client = _client(config, url)
    keys = [f"bench:hot:{i}" for i in range(HOT_KEYS)]
    if workload == "memory":
        return memory(client)
    for key in keys:
        client.get(key)  # warm: every hot key cached before the clock starts
    if workload == "hit":
        return hit(client, keys[0], seconds)
    stop = [False]
    counts = [0] * greenlets
    writes = 0.1 if workload in ("mix", "mixother") else 0.0
    writer = _client(config.replace(" cached", ""), url) if workload == "mixother" else client

    def loop(i: int) -> None:
        rng = random.Random(i)
        choice, roll = rng.choice, rng.random
        while not stop[0]:
            key = choice(keys)
            if writes and roll() < writes:
                writer.set(key, VALUE)
            elif client.get(key) != VALUE.encode():
                raise AssertionError("wrong value")
            counts[i] += 1
            if greenlets > 1 and not counts[i] % 50:
                gevent.sleep(0)  # hits never yield: let the others run

    workers = [gevent.spawn(loop, i) for i in range(greenlets)]
    gevent.sleep(min(0.5, seconds / 4))
    before, started, cpu = sum(counts), time.perf_counter(), time.process_time()
    gevent.sleep(seconds)
    after, elapsed = sum(counts), time.perf_counter() - started
    cpu = time.process_time() - cpu
    stop[0] = True
    gevent.joinall(workers, raise_error=True)
    out = {"ops": (after - before) / elapsed, "cpu_us": cpu / max(after - before, 1) * 1e6}
    cache = getattr(client, "cache", None)
    if cache is not None:
        stats = cache.stats()
        out["hit_ratio"] = stats["hits"] / max(stats["hits"] + stats["misses"] + stats["joins"], 1)
    client.close()
    if writer is not client:
        writer.close()
    return out


def hit(client: Any, key: str, seconds: float) -> Dict[str, Any]:
    """One greenlet, the same key: every call a hit (or a round trip)."""
    get = client.get
    n, total, cpu = 0, 0.0, 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t, c = time.perf_counter(), time.process_time()
        for _ in range(1000):
            get(key)
        total += time.perf_counter() - t
        cpu += time.process_time() - c
        n += 1000
    client.close()
    return {"ops": n / total, "cpu_us": cpu / n * 1e6}


def memory(client: Any) -> Dict[str, Any]:
    """Bytes per cached entry: 100,000 GETs of 16-byte values, keys of 12-17
    characters, measured with tracemalloc around the filling."""
    import tracemalloc

    count = 100_000
    with client.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.set(f"bench:mem:{i}", VALUE)
        pipe.execute()
    keys = [f"bench:mem:{i}" for i in range(count)]  # kept alive by the caller too
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key in keys:
        client.get(key)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stats = client.cache.stats()
    client.close()
    return {"entries": stats["entries"], "bytes_per_entry": (after - before) / count,
            "estimated_per_entry": stats["bytes"] / max(stats["entries"], 1)}


def run_cell(config: str, workload: str, greenlets: int, seconds: float, url: str) -> Dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", config, workload, str(greenlets), str(seconds), url],
        capture_output=True, text=True, timeout=seconds * 10 + 120,
    )
    if out.returncode != 0:
        return {"ops": 0.0, "cpu_us": 0.0, "stderr": out.stderr[-800:]}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


CELLS: List[Tuple[str, int]] = [("hit", 1), ("get", 1), ("get", 100), ("get", 1000),
                                ("mix", 100), ("mix", 1000), ("mixother", 1000)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None,
                        help="cells to run, e.g. mix@1000 hit@1 (default: all)")
    args = parser.parse_args()
    cells = [c for c in CELLS if args.only is None or f"{c[0]}@{c[1]}" in args.only]
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    import redis

    admin = redis.Redis.from_url(url)
    version = admin.info("server")["redis_version"]
    admin.mset({f"bench:hot:{i}": VALUE for i in range(HOT_KEYS)})
    admin.close()

    raw: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    for round_ in range(args.rounds):
        for workload, n in cells:
            configs = CONFIGS if workload != "hit" else CONFIGS[:2]
            for config in configs:
                cell = run_cell(config, workload, n, args.seconds, url)
                if "stderr" in cell:
                    print(f"  {config} {workload}@{n}: failed: {cell['stderr']}", file=sys.stderr)
                raw.setdefault(f"{workload}@{n}", {}).setdefault(config, []).append(cell)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    mem = run_cell("geredis cached", "memory", 1, args.seconds, url) if args.only is None else {}

    def med(name: str, config: str, field: str) -> float:
        found = raw.get(name, {}).get(config, [])
        return statistics.median(c.get(field, 0.0) for c in found) if found else 0.0

    print(f"\nmedian of {args.rounds} x {args.seconds:g}s, redis-server {version},"
          f" {os.cpu_count()} cores, gevent-patched processes, {HOT_KEYS} hot keys")
    print(f"{'workload':>10} | {'cached ops/s':>12} | {'CPU us/op':>9} | {'uncached ops/s':>14} |"
          f" {'CPU us/op':>9} | {'redis-py ops/s':>14} | cached/uncached | hit ratio")
    for workload, n in cells:
        name = f"{workload}@{n}"
        cached, plain = med(name, "geredis cached", "ops"), med(name, "geredis", "ops")
        print(f"{name:>10} | {cached:>12,.0f} | {med(name, 'geredis cached', 'cpu_us'):>9.2f} |"
              f" {plain:>14,.0f} | {med(name, 'geredis', 'cpu_us'):>9.2f} |"
              f" {med(name, 'redis-py', 'ops'):>14,.0f} | {cached / max(plain, 1):>14.1f}x |"
              f" {med(name, 'geredis cached', 'hit_ratio'):>8.1%}")
    speedup = med("hit@1", "geredis cached", "ops") / max(med("hit@1", "geredis", "ops"), 1)
    hit_cpu = med("hit@1", "geredis cached", "cpu_us")
    print(f"hit@1: one greenlet, one key: a hit is {speedup:.0f}x the uncached round trip,"
          f" {hit_cpu:.2f} us of CPU")
    print(f"memory: {mem.get('bytes_per_entry', 0):.0f} bytes per entry measured"
          f" (GET, 16-byte value, ~16-char key), {mem.get('estimated_per_entry', 0):.0f} estimated"
          f" by the cache, {mem.get('entries', 0)} entries")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "cache.json"), "w") as f:
        json.dump({"raw": raw, "memory": mem, "redis": version}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, config, workload, n, seconds, url = sys.argv
        print(json.dumps(worker(config, workload, int(n), float(seconds), url)))
    else:
        main()
