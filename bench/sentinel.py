"""Failover recovery: geredis vs redis-py's Sentinel under gevent, same run.

    python bench/sentinel.py [--rounds 3] [--greenlets 50] [--after 15]

Starts its own deployment (``tests/sentinel/topology.py``: a primary, a
replica, three sentinels with quorum 2, ``down-after-milliseconds`` 1000,
``failover-timeout`` 2000) and, for each round, scenario and client, runs a
fresh gevent-patched process with ``--greenlets`` greenlets writing through
the client's ``master_for`` with its defaults (geredis: retries on; redis-py:
the pool's connections retry nothing), each pausing ``--error-sleep`` after
an error. Every write is one ``EVAL`` that appends a sequence number to the
greenlet's list and returns the value of a key that only the replica holds
(written there before the run, never replicated): so each acknowledged write
says whether it ran on the old primary or on the new one.

Scenarios: ``failover`` (``SENTINEL FAILOVER``), ``kill`` (SIGKILL of the
primary) and ``hang`` (SIGSTOP of the primary: it accepts connections and
bytes but answers nothing, as a primary cut off or stalled; SIGCONT 3 s after
the sentinels agree on the new one, so it returns as a stale primary).
Measured from the trigger:

* ``sentinels switched``: seconds to the first ``+switch-master`` (the
  failover itself, the same for every client; it varies from run to run);
* ``first new``: seconds to the first write acknowledged by the new primary,
  and the same counted from the switch (what the client adds);
* ``last old``: seconds to the last write acknowledged by the old primary
  (after a manual failover the old primary stays a primary until the
  sentinels convert it, ten seconds later: what a client writes there is lost);
* ``lost``: acknowledged writes missing from the new primary at the end;
* throughput (writes/s) over the 2 s before the trigger and the last 2 s.

Clients and scenarios interleave; medians of the rounds are printed, with the
ratio redis-py / geredis of the recovery time. Results also go to
``bench/results/sentinel.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CONFIGS = ["geredis", "redis-py"]
SCENARIOS = ["failover", "kill", "hang"]
SERVICE = "mymaster"
MARKER = "bench:where"
SCRIPT = "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[2])"
BUCKET = 0.1  # seconds per throughput bucket


def worker(config: str, greenlets: int, error_sleep: float, ports: List[int]) -> None:
    """Run the load until ``stop <t0> <new port>`` arrives on stdin; print a
    JSON line with what was measured."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import redis
    from gevent.socket import wait_read

    sentinels = [("127.0.0.1", port) for port in ports]
    if config == "geredis":
        from geredis.sentinel import Sentinel

        manager: Any = Sentinel(sentinels, socket_timeout=5)
    else:
        from redis.sentinel import Sentinel as RedisSentinel
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE
        manager = RedisSentinel(sentinels, socket_timeout=5)
    client = manager.master_for(SERVICE, socket_timeout=5)
    started = time.time()
    state: Dict[str, Any] = {"stop": False, "errors": 0, "first_new": None, "last_old": 0.0}
    acked: List[List[Tuple[int, float]]] = [[] for _ in range(greenlets)]
    buckets: Dict[int, int] = {}

    def loop(i: int) -> None:
        n = 0
        keys = (f"bench:log:{i}", MARKER)
        while not state["stop"]:
            n += 1
            try:
                where = client.eval(SCRIPT, 2, *keys, n)
            except redis.RedisError:
                state["errors"] += 1
                gevent.sleep(error_sleep)
                continue
            now = time.time()
            acked[i].append((n, now))
            bucket = int((now - started) / BUCKET)
            buckets[bucket] = buckets.get(bucket, 0) + 1
            if where is None:
                state["last_old"] = max(state["last_old"], now)
            elif state["first_new"] is None or now < state["first_new"]:
                state["first_new"] = now

    workers = [gevent.spawn(loop, i) for i in range(greenlets)]
    gevent.sleep(1.5)
    print("ready", flush=True)
    wait_read(sys.stdin.fileno())  # cooperatively: the load runs meanwhile
    _, t0_text, new_port = sys.stdin.readline().split()
    t0 = float(t0_text)
    state["stop"] = True
    gevent.joinall(workers)
    end = time.time()
    check = redis.Redis(port=int(new_port), socket_timeout=30)
    lost = 0
    for i, writes in enumerate(acked):
        present = {int(x) for x in check.lrange(f"bench:log:{i}", 0, -1)}
        lost += sum(1 for n, _ in writes if n not in present)
    check.close()

    def rate(start: float, stop: float) -> float:
        first, last = int((start - started) / BUCKET), int((stop - started) / BUCKET)
        return sum(buckets.get(b, 0) for b in range(first, last)) / (stop - start)

    print(json.dumps({
        "first_new": None if state["first_new"] is None else state["first_new"] - t0,
        "last_old": max(state["last_old"] - t0, 0.0),
        "lost": lost,
        "acked": sum(len(w) for w in acked),
        "errors": state["errors"],
        "before": rate(t0 - 2, t0),
        "after": rate(end - 2.2, end - 0.2),
    }), flush=True)
    client.close()
    manager.close()


def prepare(topo: Any) -> None:
    """Empty the data; the marker key only on the replica (set there while
    writable, after the primary's delete has replicated)."""
    primary = topo.primary_port()
    (replica,) = topo.replica_ports()
    topo.call(primary, "FLUSHALL")
    topo.call(primary, "WAIT", 1, 5000)
    topo.call(replica, "CONFIG", "SET", "replica-read-only", "no")
    topo.call(replica, "SET", MARKER, "new")
    topo.call(replica, "CONFIG", "SET", "replica-read-only", "yes")


class SwitchWatch:
    """When the first sentinel announced ``+switch-master`` (wall clock)."""

    def __init__(self, topo: Any) -> None:
        import geredis

        self.at: Optional[float] = None
        self.clients = [geredis.Redis(host="127.0.0.1", port=s.port, socket_timeout=5)
                        for s in topo.sentinels]
        self.pubsubs = [c.pubsub() for c in self.clients]
        for pubsub in self.pubsubs:
            pubsub.subscribe(**{"+switch-master": self._on_switch})

    def _on_switch(self, message: Dict[str, Any]) -> None:
        if self.at is None:
            self.at = time.time()

    def close(self) -> None:
        for closable in self.pubsubs + self.clients:
            closable.close()


def run_cell(topo: Any, config: str, scenario: str, args: argparse.Namespace) -> Dict[str, Any]:
    import gevent

    topo.wait_ready(timeout=90)
    prepare(topo)
    watch = SwitchWatch(topo)
    ports = [str(s.port) for s in topo.sentinels]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", config, str(args.greenlets),
         str(args.error_sleep), *ports],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{config} worker did not start")
        gevent.sleep(2.2)  # the "before" window
        old = topo.primary_port()
        t0 = time.time()
        if scenario == "kill":
            topo.kill(old)
        elif scenario == "hang":
            topo.pause(old)
        else:
            topo.failover()
        new = topo.wait_primary_change(old, timeout=60)
        if scenario == "hang":
            gevent.sleep(3)
            topo.resume(old)  # back, as a stale primary
            gevent.sleep(max(args.after - 3, 0))
        else:
            gevent.sleep(args.after)
        proc.stdin.write(f"stop {t0} {new}\n")
        proc.stdin.flush()
        result: Dict[str, Any] = json.loads(proc.stdout.readline())
        proc.wait(60)
        result["switch"] = None if watch.at is None else watch.at - t0
    finally:
        watch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if scenario == "kill":
        topo.restart(old, "--replicaof", "127.0.0.1", str(new))
    elif topo.role(old) == "master":
        topo.demote(old, new)  # the sentinels had not converted it yet
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--greenlets", type=int, default=50)
    parser.add_argument("--error-sleep", type=float, default=0.01)
    parser.add_argument("--after", type=float, default=15.0,
                        help="seconds to keep writing after the sentinels agree")
    parser.add_argument("--scenarios", nargs="*", default=SCENARIOS)
    args = parser.parse_args()

    from tests.sentinel.topology import Topology

    topo = Topology(replicas=1, sentinels=3, quorum=2, down_after_ms=1000,
                    failover_timeout_ms=2000).start()
    raw: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
        s: {c: [] for c in CONFIGS} for s in args.scenarios
    }
    try:
        version = topo.call(topo.primary_port(), "INFO", "server")["redis_version"]
        for round_ in range(args.rounds):
            configs = CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]
            for scenario in args.scenarios:
                for config in configs:
                    cell = run_cell(topo, config, scenario, args)
                    raw[scenario][config].append(cell)
                    print(f"round {round_ + 1} {scenario:8} {config:8} {cell}", file=sys.stderr)
    finally:
        topo.cleanup()

    def med(cells: List[Dict[str, Any]], key: str) -> float:
        values = [c[key] for c in cells if c[key] is not None]
        return statistics.median(values) if values else float("nan")

    print(f"\nSentinel failover, {args.greenlets} greenlets writing, median of {args.rounds},"
          f" redis-server {version}, down-after 1000 ms, {os.cpu_count()} cores, gevent-patched")
    print("| scenario | client | sentinels switched | first write on new primary | after the switch"
          " | last write on old primary | lost writes | errors | writes/s before | writes/s after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in args.scenarios:
        for config in CONFIGS:
            cells = raw[scenario][config]
            for cell in cells:
                cell["lag"] = (None if cell["first_new"] is None or cell["switch"] is None
                               else cell["first_new"] - cell["switch"])
            print(f"| {scenario} | {config} | {med(cells, 'switch'):.2f} s"
                  f" | {med(cells, 'first_new'):.2f} s | {med(cells, 'lag'):.2f} s"
                  f" | {med(cells, 'last_old'):.2f} s | {med(cells, 'lost'):,.0f}"
                  f" | {med(cells, 'errors'):,.0f} | {med(cells, 'before'):,.0f}"
                  f" | {med(cells, 'after'):,.0f} |")
        ratio = med(raw[scenario]["redis-py"], "first_new") / med(raw[scenario]["geredis"], "first_new")
        print(f"| {scenario} | redis-py / geredis | | {ratio:.1f}x | | | | | | |")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "sentinel.json"), "w") as f:
        json.dump(raw, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), [int(p) for p in sys.argv[5:]])
    else:
        main()
