"""React to keys expiring, with keyspace notifications and a handler.

    REDIS_URL=redis://localhost:6379/0 python examples/keyspace_expiry.py [keys] [timeout-seconds]

Enables expiry notifications (``CONFIG SET notify-keyspace-events Ex``; the
previous setting is restored at the end), subscribes a handler to
``__keyevent@<db>__:expired``, then sets keys with TTLs from 100 ms to 1 s.
Each expiry is printed as the server reports it. Ends after every key expired,
or after the timeout. Redis expires keys in a background cycle (10 times a
second by default), so a notice can come a little after the TTL.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict

from gevent.event import Event

import geredis


def main() -> None:
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    r = geredis.from_url(url, decode_responses=True)
    db = r.settings.db
    previous = r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    r.config_set("notify-keyspace-events", "Ex")

    prefix = f"expiry-demo:{os.getpid()}:"
    set_at: Dict[str, float] = {}
    expired: Dict[str, float] = {}
    all_expired = Event()

    def on_expired(message: Dict[str, Any]) -> None:
        key = message["data"]
        if not key.startswith(prefix):
            return  # some other key of this database
        expired[key] = time.monotonic()
        ttl_ms = int(key.rsplit(":", 1)[1])
        late = (expired[key] - set_at[key]) * 1000 - ttl_ms
        print(f"expired: {key} (ttl {ttl_ms} ms, reported {late:.0f} ms after the ttl)")
        if len(expired) == keys:
            all_expired.set()

    try:
        with r.pubsub(ignore_subscribe_messages=True) as p:
            p.subscribe(**{f"__keyevent@{db}__:expired": on_expired})
            for i in range(keys):
                ttl_ms = 100 + (900 * i) // max(keys - 1, 1)
                key = f"{prefix}{i}:{ttl_ms}"
                set_at[key] = time.monotonic()
                r.set(key, "x", px=ttl_ms)
            print(f"set {keys} keys with TTLs from 100 to 1000 ms; waiting for their expiry")
            all_expired.wait(timeout)
    finally:
        r.config_set("notify-keyspace-events", previous)
        r.close()
    print(f"{len(expired)}/{keys} expiries seen")
    if len(expired) != keys:
        raise SystemExit(f"not every key expired within {timeout} s")


if __name__ == "__main__":
    main()
