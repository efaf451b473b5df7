"""Redis Cluster: geredis.RedisCluster vs redis.RedisCluster under gevent, on
the same local cluster, in the same run.

    python bench/cluster.py [--seconds 2] [--rounds 3] [--only setget,mget,reshard,failover]

The bench starts its own 6-node cluster (3 primaries, 3 replicas, made with
``redis-cli --cluster create`` on free loopback ports; see
``tests/cluster/localcluster.py``) and stops it at the end. Every cell runs
in a fresh process that calls ``gevent.monkey.patch_all()`` first; redis-py
uses its hiredis parser (checked). Configurations:

* ``geredis``: ``geredis.RedisCluster`` (one multiplexed connection per node);
* ``redis-py default``: ``redis.RedisCluster`` as built by default (a
  ``ConnectionPool`` of at most 100 connections per node: beyond that a
  caller gets ``MaxConnectionsError``, counted as an error);
* ``redis-py unbounded``: ``redis.RedisCluster(max_connections=2**31)``.

Workloads:

* ``setget``: C greenlets loop ``set(k, v); get(k)`` on their own keys
  (spread over every slot); operations per second (a pair counts 2), for
  C = 1, 100, 1000, 10000;
* ``mget``: one greenlet loops ``mget_nonatomic`` of 1,000 keys (spread
  over the slots); calls per second;
* ``reshard`` / ``failover``: 1,000 greenlets of ``setget`` with values
  unique per operation while the parent process moves 20 slots (with their
  keys) to another primary, or SIGKILLs a primary (its replica takes over,
  the node comes back as a replica); operations per second over the whole
  window, errors raised to callers, and at the end every key is read back:
  a key holding neither its last acknowledged value nor one whose outcome
  was unknown is a lost write (after a killed primary, counted as lost to
  asynchronous replication).

Rounds interleave the configurations; medians are printed with the ratio
to the best redis-py configuration. Results go to
``bench/results/cluster.json``. Run it under
``flock /tmp/geredis-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = ["geredis", "redis-py default", "redis-py unbounded"]
CONCURRENCY = [1, 100, 1000, 10000]


def make_client(config: str, host: str, port: int) -> Any:
    import redis

    if config == "geredis":
        import geredis

        return geredis.RedisCluster(host=host, port=port, socket_timeout=30)
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE
    extra = {"max_connections": 2**31} if config == "redis-py unbounded" else {}
    return redis.RedisCluster(host=host, port=port, socket_timeout=30, **extra)


def worker(config: str, workload: str, greenlets: int, seconds: float, host: str,
           port: int) -> Dict[str, Any]:  # fmt: skip
    from gevent import monkey

    monkey.patch_all()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import gevent
    import redis

    client = make_client(config, host, port)
    client.ping()
    stop = [False]
    counts = [0] * greenlets
    errors: Dict[str, int] = {}
    acked: Dict[int, bytes] = {}
    unknown: Dict[int, set] = {i: set() for i in range(greenlets)}
    wrong = [0]

    def note(exc: BaseException) -> None:
        name = type(exc).__name__
        errors[name] = errors.get(name, 0) + 1

    def loop(i: int) -> None:
        key = f"bench:{{{i}}}:{i}"
        op = 0
        while not stop[0]:
            op += 1
            value = f"{i}:{op}".encode()
            unknown[i].add(value)
            try:
                client.set(key, value)
                unknown[i].discard(value)
                acked[i] = value
                got = client.get(key)
                if got != value and got not in unknown[i]:
                    wrong[0] += 1
                counts[i] += 2
            except redis.RedisError as exc:
                note(exc)
                gevent.sleep(0.01)

    keys = [f"mget:{i}" for i in range(1000)]

    def mget_loop(i: int) -> None:
        while not stop[0]:
            try:
                values = client.mget_nonatomic(keys)
                if values[7] != b"7":
                    wrong[0] += 1
                counts[i] += 1
            except redis.RedisError as exc:
                note(exc)

    if workload == "mget":
        client.mset_nonatomic({k: k.split(":")[1] for k in keys})
        target = mget_loop
    else:
        target = loop
    workers = [gevent.spawn(target, i) for i in range(greenlets)]
    gevent.sleep(min(0.5, seconds / 4))  # warm up: connections, pools
    before, started = sum(counts), time.perf_counter()
    print("started", flush=True)  # the parent starts its fault now
    gevent.sleep(seconds)
    after, elapsed = sum(counts), time.perf_counter() - started
    stop[0] = True
    gevent.joinall(workers)
    result: Dict[str, Any] = {"ops": (after - before) / elapsed, "errors": errors,
                              "wrong": wrong[0]}  # fmt: skip
    if workload in ("reshard", "failover"):
        sys.stdin.readline()  # the parent says the cluster is ok again
        lost = 0
        for attempt in range(50):
            try:
                indexes = sorted(acked)
                final = client.mget_nonatomic([f"bench:{{{i}}}:{i}" for i in indexes])
                break
            except redis.RedisError:
                gevent.sleep(0.2)
        for i, value in zip(indexes, final):
            if value != acked[i] and value not in unknown[i]:
                lost += 1
        result["lost"] = lost
        result["acked"] = len(acked)
    client.close()
    return result


def run_cell(config: str, workload: str, greenlets: int, seconds: float, cluster: Any,
             fault: Any = None) -> Dict[str, Any]:  # fmt: skip
    host, port = cluster.startup
    args = [sys.executable, __file__, "--worker", config, workload, str(greenlets),
            str(seconds), host, str(port)]  # fmt: skip
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    try:
        line = child.stdout.readline()
        if line.strip() == "started" and fault is not None:
            time.sleep(min(0.5, seconds / 4))
            fault()
            cluster.wait_ok()
        if fault is not None:
            child.stdin.write("go\n")
            child.stdin.flush()
        out, err = child.communicate(timeout=seconds * 10 + 120)
    except BaseException:
        child.kill()
        raise
    if child.returncode != 0:
        return {"ops": 0.0, "errors": {"crashed": 1}, "stderr": err[-800:]}
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="setget,mget,reshard,failover")
    parser.add_argument("--concurrency", type=int, nargs="*", default=CONCURRENCY)
    args = parser.parse_args()
    workloads = args.only.split(",")
    sys.path.insert(0, ROOT)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from tests.cluster.localcluster import LocalCluster

    cells: List[tuple] = []
    if "setget" in workloads:
        cells += [("setget", n) for n in args.concurrency]
    if "mget" in workloads:
        cells.append(("mget", 1))
    cells += [(w, 1000) for w in ("reshard", "failover") if w in workloads]
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    with LocalCluster(node_timeout=2000, extra=("--maxclients", "30000")) as cluster:
        version = cluster.nodes[0].call("INFO", "server")["redis_version"]
        for round_ in range(args.rounds):
            for workload, n in cells:
                seconds = args.seconds if workload in ("setget", "mget") else max(
                    3 * args.seconds, 6.0)  # long enough to see the cluster heal
                for config in CONFIGS:
                    fault = _fault(cluster, workload, round_)
                    cell = run_cell(config, workload, n, seconds, cluster, fault)
                    results.setdefault(f"{workload}@{n}", {}).setdefault(config, []).append(cell)
                    if "stderr" in cell:
                        print(f"  {config} {workload}@{n}: failed: {cell['stderr']}",
                              file=sys.stderr)  # fmt: skip
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    report(results, args, version)


def _fault(cluster: Any, workload: str, round_: int) -> Any:
    if workload == "reshard":
        def reshard() -> None:
            from redis.crc import key_slot

            primaries = cluster.primaries()
            src, dst = primaries[round_ % 3], primaries[(round_ + 1) % 3]
            served = {s for shard in cluster.shards()
                      if any(n["id"] == src.node_id for n in shard["nodes"])
                      for start, end in shard["slots"] for s in range(start, end + 1)}
            used = {key_slot(str(i).encode()) for i in range(1000)}  # the bench keys' tags
            for slot in sorted(used & served)[:20]:
                cluster.migrate_slot(slot, dst, batch=1)
        return reshard
    if workload == "failover":
        def failover() -> None:
            from tests.conftest import free_port

            victim = cluster.primaries()[round_ % 3]
            cluster.kill(victim)
            cluster.wait_ok()
            cluster.restart(victim, free_port())
        return failover
    return None


def report(results: Dict[str, Dict[str, List[Dict[str, Any]]]], args: Any, version: str) -> None:
    print(f"\ngeredis.RedisCluster vs redis.RedisCluster, median of {args.rounds} x"
          f" {args.seconds:g}s, redis-server {version}, 6-node local cluster,"
          f" {os.cpu_count()} cores, gevent-patched processes")
    header = f"{'workload':>16} | " + " | ".join(f"{c:>20}" for c in CONFIGS)
    header += " | geredis / best redis-py"
    print(header)
    print("-" * len(header))
    summary: Dict[str, Any] = {}
    for cell, per in results.items():
        median = {c: statistics.median(r["ops"] for r in per[c]) for c in CONFIGS}
        best = max(median[c] for c in CONFIGS[1:]) or 1.0
        cells = " | ".join(f"{median[c]:>20,.0f}" for c in CONFIGS)
        print(f"{cell:>16} | {cells} | {median['geredis'] / best:>6.1f}x")
        summary[cell] = median
    print("\nerrors raised to callers, wrong replies, lost acknowledged writes (all rounds):")
    for cell, per in results.items():
        for c in CONFIGS:
            errors: Dict[str, int] = {}
            for r in per[c]:
                for name, n in r.get("errors", {}).items():
                    errors[name] = errors.get(name, 0) + n
            wrong = sum(r.get("wrong", 0) for r in per[c])
            lost = sum(r.get("lost", 0) for r in per[c])
            if errors or wrong or lost or "lost" in per[c][0]:
                print(f"  {cell:>16} {c:>20}: errors {errors or 0}, wrong {wrong}, lost {lost}"
                      f" of {sum(r.get('acked', 0) for r in per[c])} keys")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "cluster.json"), "w") as f:
        json.dump({"median": summary, "raw": results}, f, indent=1, default=str)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, config, workload, n, seconds, host, port = sys.argv
        sys.path.insert(0, ROOT)
        print(json.dumps(worker(config, workload, int(n), float(seconds), host, int(port))))
    else:
        main()
