"""Pipeline throughput: 1,000,000 SETs through geredis vs redis-py, same
server, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/pipeline.py [--rounds 3] [--count 1000000]

Each cell runs in a fresh process that calls ``gevent.monkey.patch_all()``
first (as a gevent application does) and times, from one greenlet:

* ``one pipeline``: ``pipe = r.pipeline(transaction=False)``, ``count``
  ``pipe.set(k, v)`` calls, one ``pipe.execute()`` (the ETL case: geredis
  runs it on a dedicated connection, in chunks);
* ``batches of 1000``: the same SETs as ``count / 1000`` pipelines of 1,000
  commands each (under geredis's threshold: on the shared connection).

Times cover queueing the commands and ``execute``; the keys are deleted after
each cell (untimed), so every cell inserts fresh keys. redis-py uses its
hiredis parser (checked). Rounds interleave the clients; the median is
printed with redis-py's time over geredis's (higher is better for geredis),
and each process's peak RSS. The keys written are ``bench:pipe:*`` in the
database of REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

CLIENTS = ["geredis", "redis-py"]
WORKLOADS = ["one pipeline", "batches of 1000"]


def worker(client_name: str, workload: str, count: int, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import resource

    import gevent

    if client_name == "geredis":
        import geredis

        client: Any = geredis.Redis.from_url(url, socket_timeout=60)
    else:
        import redis
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE, "redis-py should use hiredis"
        client = redis.Redis.from_url(url, socket_timeout=60)
    client.ping()
    keys = [f"bench:pipe:{i}" for i in range(count)]
    values = [f"value-{i}" for i in range(count)]

    def load() -> float:
        started = time.perf_counter()
        if workload == "one pipeline":
            pipe = client.pipeline(transaction=False)
            for key, value in zip(keys, values):
                pipe.set(key, value)
            results = pipe.execute()
            assert len(results) == count and all(results)
        else:
            for start in range(0, count, 1000):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(start + 1000, count)):
                    pipe.set(keys[i], values[i])
                results = pipe.execute()
                assert all(results)
        return time.perf_counter() - started

    elapsed = gevent.spawn(load).get()
    assert client.get(keys[-1]) == values[-1].encode()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for start in range(0, count, 10_000):  # clean up, untimed
        client.unlink(*keys[start:start + 10_000])
    client.close()
    return {"seconds": elapsed, "rss_mb": rss_mb}


def run_cell(client_name: str, workload: str, count: int, url: str) -> Dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", client_name, workload, str(count), url],
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(f"{client_name} / {workload} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    import redis

    admin = redis.Redis.from_url(url)
    version = admin.info("server")["redis_version"]
    admin.close()

    times: Dict[str, Dict[str, List[float]]] = {w: {c: [] for c in CLIENTS} for w in WORKLOADS}
    rss: Dict[str, Dict[str, float]] = {w: {c: 0.0 for c in CLIENTS} for w in WORKLOADS}
    for round_ in range(args.rounds):
        for workload in WORKLOADS:
            for client_name in CLIENTS:
                cell = run_cell(client_name, workload, args.count, url)
                times[workload][client_name].append(cell["seconds"])
                rss[workload][client_name] = max(rss[workload][client_name], cell["rss_mb"])
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    print(f"\n{args.count:,} SETs, median of {args.rounds}, redis-server {version},"
          f" {os.cpu_count()} cores, gevent-patched processes, one greenlet")
    header = (f"{'workload':>16} | {'geredis s':>9} | {'redis-py s':>10} | {'redis-py/geredis':>16}"
              f" | {'geredis MB':>10} | {'redis-py MB':>11}")
    print(header)
    print("-" * len(header))
    for workload in WORKLOADS:
        mine = statistics.median(times[workload]["geredis"])
        theirs = statistics.median(times[workload]["redis-py"])
        print(f"{workload:>16} | {mine:>9.2f} | {theirs:>10.2f} | {theirs / mine:>15.2f}x"
              f" | {rss[workload]['geredis']:>10.0f} | {rss[workload]['redis-py']:>11.0f}")
    print("(MB: peak RSS of the benchmark process, keys and values included)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, name, load_kind, n, redis_url = sys.argv
        print(json.dumps(worker(name, load_kind, int(n), redis_url)))
    else:
        main()
