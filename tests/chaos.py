"""The chaos run: many greenlets hammer one geredis client through a
fault-injecting proxy while timeouts, kills, cuts, blackholes, refusals and
server restarts rain down; then the invariants are checked and counted.

    python -m tests.chaos --seconds 60 --greenlets 1000
    python -m tests.chaos --cluster --seconds 60 --greenlets 1000   # a 6-node cluster

How this works: each worker greenlet owns two keys, ``<run>:<i>:s`` (SET/GET)
and ``<run>:<i>:n`` (INCR), and writes values unique to each operation
(``"<i>:<op>:<random>"``). It records what the server acknowledged and what
may or may not have happened (a write whose reply was lost to a timeout, a
kill or a broken connection is *unknown*). Meanwhile a chaos greenlet steers
the :class:`~tests.chaosproxy.ChaosProxy`, a killer kills random workers (they
are respawned with their bookkeeping), and a watchdog flags any operation
still running after its deadline (its own ``gevent.Timeout``, else the most
the client's timeouts and retries allow) plus a slack, plus any time the event
loop could not run at all since the operation started (a process starved of
CPU on a loaded machine answers nobody; such stalls are reported). The server
runs with
``--appendonly yes --appendfsync always``: Redis fsyncs before it replies, so
acknowledged writes survive a restart (``kill -9``) and need no epochs.

Invariants (each a count that must be zero): WRONG replies (a reply of the
wrong shape, a GET value this greenlet never wrote to this key, an INCR reply
outside ``[acked + 1, acked + unknown + 1]``); STUCK (an operation past its
deadline + slack); LOST writes (at the end a key holds neither its last
acknowledged value nor an unknown one, or a counter is outside ``[acked,
acked + unknown]``); BACKGROUND CRASHES (a geredis greenlet or hub callback
failed); NOT RECOVERED (after healing, and after the client's connection was
left half-open, 100 fresh commands must succeed within ``RECOVERY_SECONDS``).

An *older* unknown write seen after a newer acknowledged one is counted as
``stale``, not as a bug: its bytes sat in the network (a held proxy link) and
reached the server after the client had moved to a new connection.

Caching mode (``--cache``): the client caches its reads (RESP3, CLIENT
TRACKING), so every GET above also checks read-your-writes through the
cache; a third of the operations go to hot counters shared by all workers,
written by another client (straight to the server) and by this one, and
every read of them is checked with ``tests/chaoscache.py``'s invariant
(STALE hot reads: a read older than what was acknowledged before the
cached client's last completed round trip).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import gevent
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import geredis
from geredis.cache import CacheConfig
from geredis.connection import BackgroundGreenlet
from geredis.settings import ConnectionSettings

from .chaoscache import CacheInvariant
from .chaosproxy import ChaosProxy
from .conftest import RedisServer

SOCKET_TIMEOUT = 0.5
HEALTH_CHECK_INTERVAL = 1.0
RETRIES = 3
BACKOFF_CAP = 0.2
SLACK = 0.5
RECOVERY_SECONDS = 5.0
AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


@dataclasses.dataclass
class Worker:
    """One worker's keys and what the server is known to hold."""

    index: int
    run: str
    tag: str = ""  # a hash tag: the cluster mode puts workers on chosen slots
    greenlet: Any = None
    ops: int = 0
    acked_set: Optional[bytes] = None
    acked_set_op: int = -1
    unknown_sets: Dict[bytes, int] = dataclasses.field(default_factory=dict)  # value -> op
    acked_incrs: int = 0
    unknown_incrs: int = 0
    history: Set[bytes] = dataclasses.field(default_factory=set)  # every acked value

    @property
    def skey(self) -> str:
        if self.tag:
            return f"{self.run}:{{{self.tag}}}:{self.index}:s"
        return f"{self.run}:{self.index}:s"

    @property
    def nkey(self) -> str:
        if self.tag:
            return f"{self.run}:{{{self.tag}}}:{self.index}:n"
        return f"{self.run}:{self.index}:n"

    def classify(self, value: Any) -> str:
        """'ok', 'stale' or 'wrong' for a value read from this worker's key."""
        if value is None:
            return "ok" if self.acked_set is None else "wrong"
        if not isinstance(value, bytes):
            return "wrong"
        if value == self.acked_set:
            return "ok"
        op = self.unknown_sets.get(value)
        if op is None:
            return "wrong"
        return "ok" if op > self.acked_set_op else "stale"


class Chaos:
    """One chaos run against ``server`` (started with ``AOF_ARGS``), which is
    restarted ``restarts`` times, evenly spread over the run."""

    def __init__(self, server: RedisServer, seconds: float, greenlets: int, seed: int = 0,
                 restarts: int = 1, faults: bool = True, cache: bool = False) -> None:  # fmt: skip
        self.server = server
        self.cache = cache
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.restarts = restarts
        self.faults = faults
        self.counts: Dict[str, int] = collections.Counter()
        self.errors: Dict[str, int] = collections.Counter()
        self.examples: List[str] = []
        # worker -> op, name, start, deadline, loop lag so far when it started
        self.inflight: Dict[int, Tuple[int, str, float, float, float]] = {}
        self.flagged: Set[Tuple[int, int]] = set()  # (worker, op) counted as stuck
        self.stopping = False
        self.client: Any = self._client()
        self.bound = (RETRIES + 1) * 2 * SOCKET_TIMEOUT + RETRIES * BACKOFF_CAP
        run = f"chaos{self.rng.getrandbits(32):08x}"
        self.workers = [Worker(i, run) for i in range(greenlets)]
        self.hot_keys: Optional[CacheInvariant] = None
        if cache:  # hot keys, and "another client" writing them straight to the server
            self.hot_keys = CacheInvariant(self.client, run)
            self.hot_writer = geredis.Redis(host="127.0.0.1", port=server.port,
                                            socket_timeout=SOCKET_TIMEOUT)
        self.max_watchdog_lag = 0.0
        #: Seconds the event loop could not run at all (a starved process):
        #: no caller can be answered then, so it extends their deadlines.
        self.lag_total = 0.0
        self.ops_per_second = 0.0

    def _client(self) -> geredis.Redis:
        self.proxy = ChaosProxy(self.server.port)
        kwargs: Dict[str, Any] = dict(
            host="127.0.0.1", port=self.proxy.port, socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=BACKOFF_CAP, base=0.02), RETRIES),
        )  # fmt: skip
        if self.cache:
            kwargs.update(protocol=3, cache_config=CacheConfig(ttl=10))
        if "health_check_interval" in ConnectionSettings.__dataclass_fields__:
            kwargs["health_check_interval"] = HEALTH_CHECK_INTERVAL
        else:
            self.counts["no health_check_interval in geredis"] = 1
        return geredis.Redis(**kwargs)

    # -- the workers ---------------------------------------------------------

    def _note(self, text: str) -> None:
        if len(self.examples) < 12:
            self.examples.append(text)

    def _op(self, w: Worker) -> None:
        rng, c = self.rng, self.client
        w.ops += 1
        op = w.ops
        kind = rng.choices(("SET", "GET", "INCR", "HOT"), (4, 4, 2, 5 if self.hot_keys else 0))[0]
        value = f"{w.index}:{op}:{rng.getrandbits(32):x}".encode()
        limit = rng.uniform(0.01, 1.0) if rng.random() < 0.3 else None
        start = time.monotonic()
        bound = 2 * self.bound if kind == "HOT" else self.bound  # two commands at most
        self.inflight[w.index] = (op, kind, start, start + (limit or bound), self.lag_total)
        done = False
        if kind == "SET":
            w.unknown_sets[value] = op  # until acknowledged
        try:
            with gevent.Timeout(limit):
                if kind == "HOT" and self.hot_keys is not None:
                    self.hot_keys.op(rng, self.hot_writer)
                    done = True
                    return
                if kind == "SET":
                    reply: Any = c.set(w.skey, value)
                elif kind == "GET":
                    reply = c.get(w.skey)
                else:
                    reply = c.incr(w.nkey)
            done = True
            self._check(w, op, kind, value, reply)
        except gevent.Timeout:
            self.counts["gevent.Timeout (own)"] += 1
        except redis.TimeoutError:
            self.counts["redis.TimeoutError"] += 1
        except redis.ConnectionError as exc:
            self.counts["redis.ConnectionError"] += 1
            self.errors[type(exc).__name__ + ": " + str(exc)[:60]] += 1
        except redis.RedisError as exc:
            self.counts["other RedisError"] += 1
            self.errors[type(exc).__name__ + ": " + str(exc)[:60]] += 1
        except gevent.GreenletExit:
            self.counts["killed mid-op"] += 1
            raise
        finally:
            self.inflight.pop(w.index, None)
            if not done and kind == "INCR":
                w.unknown_incrs += 1
            if not done and kind not in ("GET", "HOT"):
                self.counts[f"unknown {kind}"] += 1

    def _check(self, w: Worker, op: int, kind: str, value: bytes, reply: Any) -> None:
        if kind == "SET":
            if reply is not True:
                self.counts["WRONG replies"] += 1
                self._note(f"SET by {w.index} got {reply!r}")
                return
            del w.unknown_sets[value]
            w.acked_set, w.acked_set_op = value, op
            w.history.add(value)
        elif kind == "GET":
            verdict = w.classify(reply)
            if verdict == "wrong":
                self.counts["WRONG replies"] += 1
                self._note(f"GET by {w.index} got {reply!r}, last acked {w.acked_set!r}")
                return
            if verdict == "stale":
                self.counts["stale GETs (late network bytes)"] += 1
        else:
            low, high = w.acked_incrs + 1, w.acked_incrs + w.unknown_incrs + 1
            if type(reply) is not int or not low <= reply <= high:
                self.counts["WRONG replies"] += 1
                self._note(f"INCR by {w.index} got {reply!r}, expected {low}..{high}")
                return
            w.acked_incrs += 1  # unknown ones stay unknown: they may still land
        self.counts["ops ok"] += 1

    def _work(self, w: Worker) -> None:
        while not self.stopping:
            self._op(w)
            if self.rng.random() < 0.5:
                gevent.sleep(self.rng.random() * 0.005)

    def _spawn(self, w: Worker) -> None:
        w.greenlet = gevent.spawn(self._work, w)

    # -- the chaos -------------------------------------------------------------

    def _killer(self) -> None:
        while not self.stopping:
            gevent.sleep(self.rng.uniform(0.01, 0.1))
            w = self.rng.choice(self.workers)
            w.greenlet.kill(block=True, timeout=1)
            if not self.stopping and w.greenlet.dead:
                self._spawn(w)

    def _watchdog(self) -> None:
        last = time.monotonic()
        while True:
            gevent.sleep(0.02)
            now = time.monotonic()
            lag = now - last - 0.02
            self.max_watchdog_lag = max(self.max_watchdog_lag, lag)
            if lag > 0.1:
                self.lag_total += lag
            last = now
            for index, (op, kind, start, deadline, lag0) in list(self.inflight.items()):
                excused = self.lag_total - lag0
                if now > deadline + SLACK + excused and (index, op) not in self.flagged:
                    self.flagged.add((index, op))
                    self.counts["STUCK past deadline"] += 1
                    self._note(f"{kind} by {index} running {now - start:.2f}s,"
                               f" deadline was {deadline - start:.2f}s")  # fmt: skip

    def _restart_server(self) -> None:
        pool = gevent.get_hub().threadpool  # start() blocks: keep the loop running
        pool.apply(self.server.stop)
        gevent.sleep(self.rng.uniform(0.1, 0.5))
        pool.apply(self.server.start)
        self.counts["server restarts"] += 1

    def _chaos(self, started: float) -> None:
        rng, proxy = self.rng, self.proxy
        until = started + self.seconds
        restart_at = [started + self.seconds * (k + 1) / (self.restarts + 1)
                      for k in range(self.restarts)]  # fmt: skip
        while time.monotonic() < until:
            if restart_at and time.monotonic() > restart_at[0]:
                restart_at.pop(0)
                self._restart_server()
                continue
            action = rng.choices(
                ("latency", "cut", "cut now", "blackhole", "refuse", "strand", "calm"),
                (15, 25, 10, 12, 12, 8, 18),
            )[0]
            self.counts[f"proxy: {action}"] += 1
            if action == "latency":
                proxy.set_latency(rng.uniform(0.001, 0.05))
            elif action == "cut":
                proxy.cut_randomly(rng)
            elif action == "cut now":
                proxy.cut(0)
            elif action == "strand":
                proxy.strand()
            elif action in ("blackhole", "refuse"):
                getattr(proxy, action)()
                gevent.sleep(rng.uniform(0.2, 1.2))
                proxy.heal()
            gevent.sleep(rng.uniform(0.1, 0.6))
            if rng.random() < 0.3:
                proxy.heal()

    # -- the run -------------------------------------------------------------

    def run(self) -> Dict[str, int]:
        hub = gevent.get_hub()
        original = hub.handle_error

        def handle_error(context: Any, type_: Any, value: Any, tb: Any) -> None:
            # geredis's own greenlets and hub callbacks must never fail.
            if isinstance(context, BackgroundGreenlet) or not isinstance(context, gevent.Greenlet):
                self.counts["BACKGROUND CRASHES"] += 1
                self._note(f"crash in {context!r}: {type_.__name__}: {value}")
            original(context, type_, value, tb)

        hub.handle_error = handle_error
        try:
            return self._run()
        finally:
            hub.handle_error = original

    def _run(self) -> Dict[str, int]:
        started = time.monotonic()
        for w in self.workers:
            self._spawn(w)
        helpers = [gevent.spawn(self._watchdog)]
        if self.hot_keys is not None:
            helpers.append(gevent.spawn(self.hot_keys.track))
        if self.faults:
            helpers.append(gevent.spawn(self._killer))
            self._chaos(started)
        else:
            gevent.sleep(self.seconds)
        self.stopping = True
        if self.hot_keys is not None:
            self.hot_keys.stopping = True
        self._heal()
        gevent.killall(helpers[1:])
        gevent.joinall([w.greenlet for w in self.workers], timeout=self.bound + 2 * SLACK)
        leftover = [w.greenlet for w in self.workers if not w.greenlet.dead]
        self.counts["workers still running at the end"] = len(leftover)
        gevent.killall(leftover, timeout=1)
        helpers[0].kill()
        self.ops_per_second = self.counts["ops ok"] / (time.monotonic() - started)
        if self.faults:
            self._final_fault()
        self._recover()
        self._verify()
        if self.hot_keys is not None:
            self.counts.update(self.hot_keys.report())
            self.examples += self.hot_keys.examples
            self.hot_writer.close(timeout=1)
        self.client.close(timeout=1)
        self._shutdown()
        self.counts["seconds"] = int(time.monotonic() - started)
        return dict(self.counts)

    def _heal(self) -> None:
        self.proxy.heal()

    def _final_fault(self) -> None:
        # The client's connection goes silent for good (a half-open TCP
        # connection); it has to notice that by itself.
        self.counts["proxy: strand (final)"] = self.proxy.strand()

    def _shutdown(self) -> None:
        self.proxy.stop()

    def _recover(self) -> None:
        """After healing: 100 fresh commands must succeed, without help."""
        def fresh(i: int) -> bool:
            try:
                return self.client.set(f"{self.workers[0].run}:fresh:{i}", i) is True
            except redis.RedisError:
                return False

        started = time.monotonic()
        while time.monotonic() - started < RECOVERY_SECONDS:
            batch = [gevent.spawn(fresh, i) for i in range(100)]
            gevent.joinall(batch, timeout=RECOVERY_SECONDS)
            if all(g.value is True for g in batch):
                self.counts["recovery ms"] = int((time.monotonic() - started) * 1000)
                return
            gevent.killall(batch)
            gevent.sleep(0.05)
        self.counts["NOT RECOVERED after healing"] = 1

    def _verify(self) -> None:
        """Read every key straight from the server (not through the proxy)."""
        with redis.Redis(host="127.0.0.1", port=self.server.port, socket_timeout=10) as direct:
            for chunk in range(0, len(self.workers), 500):
                ws = self.workers[chunk : chunk + 500]
                strings = direct.mget([w.skey for w in ws])
                counters = direct.mget([w.nkey for w in ws])
                for w, value, counter in zip(ws, strings, counters):
                    verdict = w.classify(value)
                    if verdict == "wrong":
                        self.counts["LOST writes"] += 1
                        self._note(f"{w.skey} = {value!r}, last acked {w.acked_set!r}")
                    elif verdict == "stale":
                        self.counts["stale final values (late network bytes)"] += 1
                    n = int(counter or 0)
                    if not w.acked_incrs <= n <= w.acked_incrs + w.unknown_incrs:
                        self.counts["LOST writes"] += 1
                        self._note(f"{w.nkey} = {n}, acked {w.acked_incrs}"
                                   f" + unknown {w.unknown_incrs}")  # fmt: skip
                    self.counts["acknowledged INCRs"] += w.acked_incrs

    def report(self) -> str:
        lines = [f"  {name:<45} {value}" for name, value in sorted(self.counts.items())]
        lines.append(f"  {'watchdog max lag ms':<45} {self.max_watchdog_lag * 1000:.0f}")
        lines.append(f"  {'loop stalls (total ms, excused)':<45} {self.lag_total * 1000:.0f}")
        lines.append(f"  {'ops ok per second':<45} {self.ops_per_second:.0f}")
        for error, n in sorted(self.errors.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"    {n:>7} x {error}")
        lines += [f"  example: {text}" for text in self.examples]
        return "\n".join(lines)

    @property
    def violations(self) -> Dict[str, int]:
        names = ("WRONG replies", "STUCK past deadline", "LOST writes", "BACKGROUND CRASHES",
                 "NOT RECOVERED after healing", "workers still running at the end",
                 "STALE hot reads")  # fmt: skip
        return {name: self.counts.get(name, 0) for name in names}


def run_once(seconds: float, greenlets: int, seed: int, restarts: int = 1,
             cache: bool = False) -> Chaos:
    """One chaos run on a fresh server (started with ``AOF_ARGS``, then
    removed); returns the run, its counts and report ready."""
    server = RedisServer(None, *AOF_ARGS).start()
    try:
        chaos = Chaos(server, seconds, greenlets, seed=seed, restarts=restarts, cache=cache)
        chaos.run()
    finally:
        server.cleanup()
    return chaos


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--greenlets", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cluster", action="store_true",
                        help="a 6-node cluster: live migrations, failovers, killed primaries")
    parser.add_argument("--migrations", type=int, default=None,
                        help="cluster mode: slot migrations (default: one per 5 s)")
    parser.add_argument("--failovers", type=int, default=None,
                        help="cluster mode: manual failovers (default: one per 20 s)")
    parser.add_argument("--kills", type=int, default=None,
                        help="cluster mode: SIGKILLed primaries (default: one per 30 s)")
    parser.add_argument("--cache", action="store_true",
                        help="client-side caching on, with the hot-key invariant")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    chaos: Chaos
    if args.cluster:
        from .cluster.chaos import run_cluster_chaos

        per = max(1, int(args.seconds))
        chaos = run_cluster_chaos(
            args.seconds, args.greenlets, seed,
            kills=args.kills if args.kills is not None else max(1, per // 30),
            migrations=args.migrations if args.migrations is not None else max(1, per // 5),
            failovers=args.failovers if args.failovers is not None else max(1, per // 20),
        )  # fmt: skip
    else:
        chaos = run_once(args.seconds, args.greenlets, seed, args.restarts, args.cache)
    mode = "cluster " if args.cluster else ""
    print(f"{mode}chaos run: {args.greenlets} greenlets, {args.seconds}s, seed {seed}")
    print(chaos.report())
    bad = {name: n for name, n in chaos.violations.items() if n}
    print("INVARIANTS HOLD" if not bad else f"INVARIANTS BROKEN: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
