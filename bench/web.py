"""The example web app under load: geredis vs redis-py, same run, same server.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/web.py [--seconds 10] [--rounds 1]
    ./dev bench web                      # a private redis-server, wrk installed if missing

For each client (geredis; redis-py on a ``BlockingConnectionPool`` of 50 with
gevent's LifoQueue, the usual setup) and each number of keep-alive HTTP
connections (10, 100, 1,000), it starts ``examples/webapp`` under gunicorn
with ONE gevent worker on a free port, warms it up, then drives it with
``wrk`` (two threads, a random ``?sid=`` per request from 10,000 visitors,
6 Redis commands a request) and records:

* requests/s, p50 and p99 latency (wrk's ``--latency`` distribution);
* errors: non-2xx responses plus wrk's socket errors (connect, read, write,
  timeout); the app answers 500 if it ever read another request's session;
* Redis connections used: the peak of ``connected_clients`` during the run,
  minus what was there before the worker started;
* the worker's CPU per request (its utime+stime from ``/proc``), and, in a
  second run of the same cell with ``py-spy`` attached, the share of the
  worker's busy samples spent in the client library's code (frames under
  ``geredis/`` or ``redis/``): what the client itself costs per request.

Rounds interleave the clients; medians are printed with geredis/redis-py
ratios. Results go to ``bench/results/web.json``. The machine is shared and
noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(os.path.dirname(HERE), "examples", "webapp")
CLIENTS = ["geredis", "redis-py"]
CONNECTIONS = [10, 100, 1000]
#: A py-spy frame ("func (path/file.py:line)") in the client library.
LIBRARY_FRAME = {"geredis": re.compile(r"[(/]geredis/"), "redis-py": re.compile(r"[(/]redis/")}
#: Leaf frames that are a socket call (the kernel's share: loopback TCP).
SOCKET_CALLS = re.compile(r"(^|[.;])(recv_into|recv|send|sendall|Writer\.flush|Writer\._drain) \(")
WRK_SCRIPT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/?sid=" .. math.random(1, 10000))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class App:
    """examples/webapp under gunicorn, one gevent worker."""

    def __init__(self, client: str, url: str) -> None:
        self.port = free_port()
        env = dict(os.environ, REDIS_URL=url, WEBAPP_CLIENT=client,
                   WEBAPP_BIND=f"127.0.0.1:{self.port}", WEBAPP_WORKERS="1")
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        self.process = subprocess.Popen(
            [gunicorn, "-c", os.path.join(APP_DIR, "gunicorn.conf.py"), "--chdir", APP_DIR,
             "app:app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.worker_pid = self._wait_ready()

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/check", timeout=2) as f:
                    return int(json.load(f)["pid"])
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
                time.sleep(0.1)
        raise RuntimeError("the app did not start within 30 s")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.worker_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def connected_clients(host: str, port: int) -> int:
    """``connected_clients`` from INFO, over a plain socket (the sampler's
    own connection counts; it is in the baseline too)."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"INFO clients\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1:data.index(b"\r\n")]) + 3:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(re.search(rb"connected_clients:(\d+)", data).group(1))  # type: ignore[union-attr]


class PeakClients(threading.Thread):
    """Samples ``connected_clients`` every 50 ms until stopped."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.peak, self._stop_now = host, port, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_now.wait(0.05):
            self.peak = max(self.peak, connected_clients(self.host, self.port))

    def stop(self) -> int:
        self._stop_now.set()
        self.join()
        return self.peak


def parse_wrk(out: str) -> Dict[str, float]:
    def seconds(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    latency = {p: seconds(v, u) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s|m)\b", out)}
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {"rps": rps, "requests": total, "p50": latency["50"], "p99": latency["99"],
            "errors": errors}


def wrk(port: int, connections: int, seconds: float, script: str) -> Dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s",
         "--latency", "-s", script, f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-1000:])
    return parse_wrk(out.stdout)


def library_share(pid: int, seconds: float, client: str) -> Optional[Tuple[float, float]]:
    """Shares of the worker's busy samples with the client library on the
    stack: all of them, and those whose leaf is a socket call (kernel time)."""
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        done = subprocess.run(
            [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
             "--format", "raw", "--output", out.name, "--nonblocking"],
            capture_output=True, text=True, timeout=seconds + 60,
        )
        if done.returncode != 0:
            return None
        total = mine = io = 0
        for line in open(out.name):
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            if LIBRARY_FRAME[client].search(stack):
                mine += int(count)
                if SOCKET_CALLS.search(stack.rsplit(";", 1)[-1]):
                    io += int(count)
    return (mine / total, io / total) if total else None


def run_cell(client: str, connections: int, seconds: float, url: str, script: str,
             profile: bool) -> Dict[str, Any]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    before = connected_clients(host, int(port))
    app = App(client, url)
    try:
        wrk(app.port, connections, min(3.0, seconds), script)  # warm up
        peak = PeakClients(host, int(port))
        peak.start()
        cpu0 = app.cpu_seconds()
        result: Dict[str, Any] = wrk(app.port, connections, seconds, script)
        cpu = app.cpu_seconds() - cpu0
        result["redis_connections"] = peak.stop() - before
        result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
        result["worker_cpu_busy"] = cpu / seconds
        if profile:
            sampler = threading.Thread(target=lambda: result.__setitem__(
                "library_share", library_share(app.worker_pid, seconds, client)))
            sampler.start()
            wrk(app.port, connections, seconds, script)
            sampler.join()
    finally:
        app.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, nargs="*", default=CONNECTIONS)
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk, or ./dev bench web)")

    cells: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    try:
        for round_ in range(args.rounds):
            for n in args.connections:
                for client in (CLIENTS if round_ % 2 == 0 else CLIENTS[::-1]):
                    cell = run_cell(client, n, args.seconds, url, script,
                                    profile=not args.no_profile and round_ == 0)
                    cells.setdefault((client, n), []).append(cell)
                    print(f"  {client:>8} @ {n:>4}: {cell['rps']:>8,.0f} req/s"
                          f" p99 {cell['p99'] * 1000:7.1f} ms errors {cell['errors']}",
                          file=sys.stderr)
    finally:
        os.unlink(script)

    def med(client: str, n: int, key: str) -> float:
        values = [c[key] for c in cells[(client, n)] if c.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    print(f"\nexamples/webapp, 1 gunicorn gevent worker, wrk -t2, {args.seconds:g}s,"
          f" median of {args.rounds}, {os.cpu_count()} cores")
    print("| connections | client | requests/s | p50 ms | p99 ms | errors | Redis connections"
          " | worker CPU us/request | client library share of worker CPU (in socket calls) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.connections:
        for client in CLIENTS:
            shares = [c["library_share"] for c in cells[(client, n)] if c.get("library_share")]
            share = (f"{shares[0][0]:.0%} ({shares[0][1]:.0%})" if shares else "-")
            print(f"| {n:,} | {client} | {med(client, n, 'rps'):,.0f} |"
                  f" {med(client, n, 'p50') * 1000:.1f} | {med(client, n, 'p99') * 1000:.1f} |"
                  f" {sum(c['errors'] for c in cells[(client, n)])} |"
                  f" {med(client, n, 'redis_connections'):.0f} |"
                  f" {med(client, n, 'cpu_us_per_request'):.0f} | {share} |")
    print("\n| connections | geredis / redis-py requests/s | p99 redis-py / geredis |")
    print("|---:|---:|---:|")
    for n in args.connections:
        print(f"| {n:,} | {med('geredis', n, 'rps') / med('redis-py', n, 'rps'):.2f}x |"
              f" {med('redis-py', n, 'p99') / med('geredis', n, 'p99'):.1f}x |")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "web.json"), "w") as out:
        json.dump({f"{c}@{n}": v for (c, n), v in cells.items()}, out, indent=1)


if __name__ == "__main__":
    main()
