"""SET+GET throughput: geredis vs redis-py under gevent, same server, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/throughput.py [--seconds 2] [--rounds 3]

Every cell runs in a fresh process that calls ``gevent.monkey.patch_all()``
first (as a gevent web app does), starts C greenlets that each loop
``set(k, v); get(k)`` on their own key for a fixed time, and reports
operations per second (a SET+GET pair counts 2), the client process's CPU
time per operation (``time.process_time``), the part of it spent in Python's
cyclic garbage collector (timed with ``gc.callbacks``) and its RSS half way
through the run (every greenlet waiting or running). Configurations:

* ``geredis``: one geredis client (one multiplexed connection), its hot path
  compiled (``./dev build``; the bench says so when it is not);
  ``geredis python``: the same with the pure-Python parser;
  ``geredis uncompiled``: the same code interpreted (``GEREDIS_PURE_PYTHON=1``);
* ``redis-py blocking(50)``: ``redis.Redis`` on ``BlockingConnectionPool(50)``
  with gevent's LifoQueue, the setting redis-py's tracker recommends;
* ``redis-py pool(unbounded)``: ``ConnectionPool(max_connections=2**31)``.

redis-py uses its hiredis parser (checked). Rounds interleave the
configurations and the median of the rounds is printed, with each redis-py
setting's ratio to geredis, since the machine is shared and noisy. Results go
to ``bench/results/throughput.json`` and a plot to ``bench/throughput.png``.

``--baseline DIR`` also runs the geredis configurations with the ``geredis``
package found in DIR (e.g. ``git archive main geredis | tar -x -C DIR``), in
the same rounds: before/after numbers from one run.
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

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ["geredis", "geredis python", "geredis uncompiled", "redis-py blocking(50)",
           "redis-py pool(unbounded)"]
#: Run with GEREDIS_PURE_PYTHON=1: the compiled modules' .py files.
UNCOMPILED = "geredis uncompiled"
BASELINE = " (baseline)"
CONCURRENCY = [1, 10, 100, 1000, 10000]


def worker(config: str, greenlets: int, seconds: float, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import gc
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    import gevent
    import gevent.queue
    import redis

    compiled = False
    if config.startswith("geredis"):
        import geredis

        parser = "python" if config.endswith("python") else "auto"
        client: Any = geredis.Redis.from_url(url, socket_timeout=60, parser=parser)
        compiled = getattr(geredis, "COMPILED", False)
    elif config == "redis-py blocking(50)":
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=50, timeout=60, queue_class=gevent.queue.LifoQueue
        )
        client = redis.Redis(connection_pool=pool)
    else:
        pool = redis.ConnectionPool.from_url(url, max_connections=2**31)
        client = redis.Redis(connection_pool=pool)
    client.ping()

    stop = [False]
    counts = [0] * greenlets
    errors = [0]

    def loop(i: int) -> None:
        key, value = f"bench:{i}", f"value-{i}"
        while not stop[0]:
            try:
                client.set(key, value)
                if client.get(key) != value.encode():
                    raise AssertionError("wrong value")
                counts[i] += 2
            except redis.RedisError:
                errors[0] += 1
                gevent.sleep(0.001)

    gc_time = [0.0, 0.0]  # seconds in collections, start of the current one

    def on_gc(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    workers = [gevent.spawn(loop, i) for i in range(greenlets)]
    gevent.sleep(min(0.5, seconds / 4))  # warm up: connections, pools
    gc.callbacks.append(on_gc)
    before, started, cpu = sum(counts), time.perf_counter(), time.process_time()
    gevent.sleep(seconds / 2)
    rss = _rss_mib()  # with every greenlet waiting on a reply or running
    gevent.sleep(seconds / 2)
    after, elapsed = sum(counts), time.perf_counter() - started
    cpu = time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    stop[0] = True
    gevent.joinall(workers)
    client.close()
    ops = after - before
    return {
        "ops": ops / elapsed, "errors": errors[0], "rss_mib": rss, "compiled": compiled,
        "cpu_us": cpu / ops * 1e6 if ops else 0.0, "gc_us": gc_time[0] / ops * 1e6 if ops else 0.0,
    }  # fmt: skip


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_cell(
    config: str, greenlets: int, seconds: float, url: str, baseline: str = ""
) -> Dict[str, Any]:
    env = dict(os.environ)
    if config.endswith(BASELINE):  # another geredis tree, for before/after in one run
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
        config = config[: -len(BASELINE)]
    if config == UNCOMPILED:
        env["GEREDIS_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", config, str(greenlets), str(seconds), url],
        capture_output=True,
        text=True,
        timeout=seconds * 10 + 60,
        env=env,
    )
    if out.returncode != 0:
        return {"ops": 0.0, "errors": -1, "stderr": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="*", default=CONCURRENCY)
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    parser.add_argument("--baseline", default="", help="a directory holding another geredis"
                        " package: its geredis configs run too, for before/after in one run")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    configs: List[str] = list(args.configs)
    if args.baseline:
        configs += [c + BASELINE for c in configs if c.startswith("geredis")]
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    import redis

    admin = redis.Redis.from_url(url)
    if int(admin.config_get("maxclients")["maxclients"]) < 11000:
        try:
            admin.config_set("maxclients", 11000)
        except redis.ResponseError as exc:
            print(f"note: could not raise maxclients ({exc}); the unbounded pool may hit it")
    version = admin.info("server")["redis_version"]
    admin.close()

    cells: Dict[str, Dict[int, List[Dict[str, Any]]]] = {
        c: {n: [] for n in args.concurrency} for c in configs
    }
    for round_ in range(args.rounds):
        for n in args.concurrency:
            for config in configs:
                cell = run_cell(config, n, args.seconds, url, args.baseline)
                cells[config][n].append(cell)
                if "stderr" in cell:
                    print(f"  {config} @ {n}: failed: {cell['stderr']}", file=sys.stderr)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    def med(config: str, n: int, key: str) -> float:
        values = [cell.get(key, 0.0) for cell in cells[config][n]]
        return statistics.median(values) if values else 0.0

    for config in configs:
        if config.startswith("geredis") and UNCOMPILED not in config and BASELINE not in config:
            if not all(cell.get("compiled", True) for cells_ in cells[config].values()
                       for cell in cells_):
                print(f"note: {config} ran uncompiled (run ./dev build)", file=sys.stderr)
    median = {c: {n: med(c, n, "ops") for n in args.concurrency} for c in configs}
    redis_py = [c for c in configs if c.startswith("redis-py")]
    print(f"\nSET+GET ops/s, median of {args.rounds} x {args.seconds:g}s, redis-server {version},"
          f" {os.cpu_count()} cores, gevent-patched processes")
    width = max(len(c) for c in configs) + 1
    header = f"{'greenlets':>9} | " + " | ".join(f"{c:>{width}}" for c in configs)
    if redis_py:
        header += " | geredis / best redis-py"
    print(header)
    print("-" * len(header))
    for n in args.concurrency:
        cells_ = " | ".join(f"{median[c][n]:>{width},.0f}" for c in configs)
        ratio = ""
        if redis_py and "geredis" in median:
            best = max(median[c][n] for c in redis_py) or 1.0
            ratio = f" | {median['geredis'][n] / best:>6.1f}x"
        print(f"{n:>9} | {cells_}{ratio}")
    for title, key, fmt in (("client CPU per command (us)", "cpu_us", ".2f"),
                            ("of which cyclic GC (us)", "gc_us", ".2f"),
                            ("client RSS mid-run (MiB)", "rss_mib", ".0f")):
        print(f"\n{title}")
        print(f"{'greenlets':>9} | " + " | ".join(f"{c:>{width}}" for c in configs))
        for n in args.concurrency:
            print(f"{n:>9} | " + " | ".join(f"{med(c, n, key):>{width}{fmt}}" for c in configs))
    for c in configs:
        errors = {n: sum(max(cell.get("errors", 0), 0) for cell in cells[c][n])
                  for n in args.concurrency}
        if any(errors.values()):
            print(f"errors raised to callers for {c}: {errors}")

    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "throughput.json"), "w") as f:
        json.dump({"median": median, "cells": cells}, f, indent=1)
    if not args.no_plot:
        plot(median, configs, args.concurrency, os.path.join(HERE, "throughput.png"))


def plot(
    median: Dict[str, Dict[int, float]], configs: List[str], concurrency: List[int], path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for config in configs:
        ax.plot(concurrency, [median[config][n] for n in concurrency], marker="o", label=config)
    ax.set_xscale("log")
    ax.set_xlabel("concurrent greenlets")
    ax.set_ylabel("SET+GET operations / s")
    ax.set_title("geredis vs redis-py under gevent (same server, same run)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, config, n, seconds, url = sys.argv
        print(json.dumps(worker(config, int(n), float(seconds), url)))
    else:
        main()
