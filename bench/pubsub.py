"""Pub/sub delivery rate: geredis vs redis-py under gevent, same server, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/pubsub.py [--messages 200000] [--rounds 3]

What is measured: messages per second delivered to a handler that counts
them. Every cell runs in a fresh process that calls ``gevent.monkey.patch_all()``
first, subscribes one channel with the handler, then, with the gevent hub
blocked, pipelines N ``PUBLISH`` commands over a raw blocking socket: the server
buffers them for the subscriber. Then the hub runs again and the clock starts;
it stops when the handler has seen all N. So the number is the client's
read-parse-dispatch rate, not the server's PUBLISH rate. Configurations:

* ``geredis``: ``r.pubsub()`` with the handler (reader greenlet + dispatcher);
  ``geredis resp2``: the same with ``protocol=2``;
* ``redis-py thread``: redis-py's ``run_in_thread`` (a greenlet once patched);
* ``redis-py loop``: a ``get_message(timeout=1)`` loop calling the handler.

redis-py uses its hiredis parser (checked) and its default protocol. The
subscriber's ``client-output-buffer-limit pubsub`` is lifted for the run and
restored afterwards. Rounds interleave the configurations; the median of the
rounds is printed with geredis's ratio to the best redis-py setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, List
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ["geredis", "geredis resp2", "redis-py thread", "redis-py loop"]
PAYLOADS = [16, 1024]


def publish_backlog(url: str, channel: str, payload: bytes, count: int) -> None:
    """PUBLISH ``count`` times over a blocking socket, holding the gevent hub."""
    import _socket

    import hiredis

    parsed = urlparse(url)
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.connect((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    expected = 0
    if parsed.password:
        user = (parsed.username,) if parsed.username else ()
        auth = ("AUTH", *user, parsed.password)
        sock.sendall(hiredis.pack_command(auth))
        expected += 1
    command = hiredis.pack_command(("PUBLISH", channel, payload))
    batch = 1000
    for start in range(0, count, batch):
        sock.sendall(command * min(batch, count - start))
    expected += count
    seen = 0
    while seen < expected:  # every reply is one short line (":1", "+OK")
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("server closed the publisher's connection")
        seen += data.count(b"\n")
    sock.close()


def worker(config: str, payload_size: int, count: int, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import time

    import gevent
    from gevent.event import Event

    channel = f"bench:pubsub:{os.getpid()}"
    payload = b"x" * payload_size
    seen = [0]
    done = Event()

    def handler(message: Dict[str, Any]) -> None:
        seen[0] += 1
        if seen[0] == count:
            done.set()

    dropped: Any = None
    if config.startswith("geredis"):
        import geredis

        client: Any = geredis.Redis.from_url(url, protocol=2 if "resp2" in config else 3)
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{channel: handler})
    else:
        import redis
        from redis.utils import HIREDIS_AVAILABLE

        assert HIREDIS_AVAILABLE, "redis-py must use hiredis for this benchmark"
        client = redis.Redis.from_url(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{channel: handler})
        while pubsub.get_message(timeout=1) is not None:  # the confirmation
            pass
    publish_backlog(url, channel, payload, count)  # hub blocked meanwhile
    started = time.perf_counter()
    if config == "redis-py thread":
        thread = pubsub.run_in_thread(sleep_time=1.0)
        done.wait(120)
        elapsed = time.perf_counter() - started
        thread.stop()
        thread.join(5)
    elif config == "redis-py loop":
        deadline = started + 120
        while seen[0] < count and time.perf_counter() < deadline:
            pubsub.get_message(timeout=1.0)
        elapsed = time.perf_counter() - started
    else:
        done.wait(120)
        elapsed = time.perf_counter() - started
        dropped = pubsub.dropped
    pubsub.close()
    client.close()
    gevent.sleep(0)
    return {"rate": seen[0] / elapsed, "delivered": seen[0], "dropped": dropped}


def run_cell(config: str, payload: int, count: int, url: str) -> Dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", config, str(payload), str(count), url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        return {"rate": 0.0, "delivered": 0, "dropped": None, "stderr": out.stderr[-800:]}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000, help="per cell (16 B payload)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    import redis

    admin = redis.Redis.from_url(url)
    version = admin.info("server")["redis_version"]
    old_limit = admin.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    pubsub_limit = " ".join(old_limit.split()[old_limit.split().index("pubsub"):][:4])
    admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    counts = {16: args.messages, 1024: max(args.messages // 4, 1000)}
    rates: Dict[str, Dict[int, List[float]]] = {c: {p: [] for p in PAYLOADS} for c in CONFIGS}
    notes: List[str] = []
    try:
        for round_ in range(args.rounds):
            for payload in PAYLOADS:
                for config in CONFIGS:
                    cell = run_cell(config, payload, counts[payload], url)
                    rates[config][payload].append(cell["rate"])
                    if cell["delivered"] != counts[payload] or cell.get("dropped"):
                        notes.append(f"{config} @ {payload} B: {cell}")
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        admin.config_set("client-output-buffer-limit", pubsub_limit)
        admin.close()

    median = {c: {p: statistics.median(v) for p, v in per.items()} for c, per in rates.items()}
    print(f"\npub/sub messages/s delivered to a handler, median of {args.rounds} rounds,"
          f" redis-server {version}, {os.cpu_count()} cores, gevent-patched processes")
    header = f"{'payload':>8} | {'messages':>8} | " + " | ".join(f"{c:>15}" for c in CONFIGS)
    header += " | geredis / best redis-py"
    print(header)
    print("-" * len(header))
    for payload in PAYLOADS:
        row = [median[c][payload] for c in CONFIGS]
        best = max(row[2:]) or 1.0
        cells = " | ".join(f"{v:>15,.0f}" for v in row)
        print(f"{payload:>6} B | {counts[payload]:>8} | {cells} | {row[0] / best:>6.1f}x")
    for note in notes:
        print(f"note: incomplete cell: {note}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "pubsub.json"), "w") as f:
        json.dump({"median": median, "raw": rates, "counts": counts}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, config, payload, count, url = sys.argv
        print(json.dumps(worker(config, int(payload), int(count), url)))
    else:
        main()
