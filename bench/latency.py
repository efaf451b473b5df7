"""Lone-caller latency: one greenlet doing GET in a loop, through a raw gevent
socket (the limit), geredis and redis-py, same server, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/latency.py [--count 20000] [--rounds 5]

What is measured: one greenlet (the only one in its process) does ``count``
``GET bench:latency`` round trips in a loop, each timed with
``perf_counter``; the process reports round trips per second (wall time),
client CPU per round trip (``time.process_time``: user + system time of the
client process only; the user part alone is printed too) and the p50/p99 of a
lone GET. Configurations, each in a fresh process that calls
``gevent.monkey.patch_all()`` first:

* ``raw socket``: a ``gevent.socket`` with TCP_NODELAY: ``sendall`` the packed
  GET, then ``recv_into`` until the reply's line end; nothing else (the
  limit a client on gevent can reach);
* ``geredis``: ``geredis.Redis().get`` (hiredis parser; the hot path
  compiled, ``./dev build``: the bench says so when it is not);
* ``geredis python``: the same with ``parser="python"``;
* ``geredis uncompiled``: the same code interpreted (``GEREDIS_PURE_PYTHON=1``);
* ``redis-py``: ``redis.Redis().get`` (hiredis parser, checked).

Rounds interleave the configurations and the median of the rounds is
printed, with each one's ratio to the raw socket (round trips/s: higher is
better; CPU per round trip: lower is better). On a 2-core VM the wake-up of an
idle vCPU dominates a lone round trip, so absolute numbers swing with the
machine's load: compare within one run only.

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
from typing import Any, Dict, List

CONFIGS = ["raw socket", "geredis", "geredis python", "geredis uncompiled", "redis-py"]
#: Run with GEREDIS_PURE_PYTHON=1: the compiled modules' .py files.
UNCOMPILED = "geredis uncompiled"
BASELINE = " (baseline)"
GET = b"*2\r\n$3\r\nGET\r\n$13\r\nbench:latency\r\n"


def worker(config: str, count: int, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import resource
    import time
    from urllib.parse import urlparse

    import gevent

    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if config == "raw socket":
        from gevent import socket

        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(65536)
        sendall, recv_into = sock.sendall, sock.recv_into

        def get() -> Any:
            sendall(GET)
            n = recv_into(buf)
            while buf[n - 1] != 10:  # the reply is complete at its last line end
                n += recv_into(memoryview(buf)[n:])
            return n

        close = sock.close
    elif config.startswith("geredis"):
        import geredis

        client: Any = geredis.Redis(
            host=host, port=port, parser="python" if "python" in config else "auto"
        )
        get, close = (lambda: client.get("bench:latency")), client.close
        if UNCOMPILED not in config and not getattr(geredis, "COMPILED", True):
            print(f"note: {config} runs uncompiled (run ./dev build)", file=sys.stderr)
    else:
        import redis
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE, "redis-py must use hiredis for this benchmark"
        client = redis.Redis(host=host, port=port)
        get, close = (lambda: client.get("bench:latency")), client.close
    times = [0.0] * count

    def run() -> Dict[str, Any]:
        for _ in range(min(2000, count)):  # warm up: connect, caches
            get()
        perf = time.perf_counter
        user0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        cpu0, wall0 = time.process_time(), perf()
        for i in range(count):
            t0 = perf()
            get()
            times[i] = perf() - t0
        wall, cpu = perf() - wall0, time.process_time() - cpu0
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - user0
        times.sort()
        return {
            "rps": count / wall,
            "cpu_us": cpu / count * 1e6,
            "user_us": user / count * 1e6,  # the part spent outside the kernel
            "p50_us": times[count // 2] * 1e6,
            "p99_us": times[int(count * 0.99)] * 1e6,
        }

    result: Dict[str, Any] = gevent.spawn(run).get()
    close()
    return result


def run_cell(config: str, count: int, url: str, baseline: str = "") -> Dict[str, Any]:
    env = dict(os.environ)
    if config.endswith(BASELINE):  # another geredis tree, for before/after in one run
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
        config = config[: -len(BASELINE)]
    if config == UNCOMPILED:
        env["GEREDIS_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", config, str(count), url],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        return {"stderr": out.stderr[-800:]}
    if "note:" in out.stderr:
        print(out.stderr.strip(), file=sys.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", nargs="*", default=CONFIGS)
    parser.add_argument("--baseline", default="", help="a directory holding another geredis"
                        " package: its geredis configs run too, for before/after in one run")
    args = parser.parse_args()
    if args.baseline:
        args.configs += [c + BASELINE for c in args.configs if c.startswith("geredis")]
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    import redis

    admin = redis.Redis.from_url(url)
    admin.set("bench:latency", "x" * 16)
    version = admin.info("server")["redis_version"]
    admin.close()

    cells: Dict[str, List[Dict[str, Any]]] = {c: [] for c in args.configs}
    for round_ in range(args.rounds):
        for config in args.configs:
            cell = run_cell(config, args.count, url, args.baseline)
            if "stderr" in cell:
                print(f"  {config}: failed: {cell['stderr']}", file=sys.stderr)
                continue
            cells[config].append(cell)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    def median(config: str, key: str) -> float:
        values = [cell[key] for cell in cells[config]]
        return statistics.median(values) if values else float("nan")

    print(f"\nOne greenlet, GET in a loop ({args.count} round trips), median of {args.rounds}"
          f" rounds, redis-server {version}, {os.cpu_count()} cores, gevent-patched processes")
    header = (f"{'client':>26} | {'round trips/s':>13} | {'vs raw':>6} | {'CPU us/rt':>9}"
              f" | {'vs raw':>6} | {'user us':>7} | {'p50 us':>7} | {'p99 us':>7}")
    print(header)
    print("-" * len(header))
    raw = "raw socket" if "raw socket" in cells else args.configs[0]
    for config in args.configs:
        rps, cpu = median(config, "rps"), median(config, "cpu_us")
        print(f"{config:>26} | {rps:>13,.0f} | {rps / median(raw, 'rps'):>5.2f}x"
              f" | {cpu:>9.1f} | {cpu / median(raw, 'cpu_us'):>5.2f}x"
              f" | {median(config, 'user_us'):>7.1f} | {median(config, 'p50_us'):>7.1f}"
              f" | {median(config, 'p99_us'):>7.1f}")
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latency.json")
    with open(path, "w") as f:
        json.dump(cells, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, config, count, url = sys.argv
        print(json.dumps(worker(config, int(count), url)))
    else:
        main()
