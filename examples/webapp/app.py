"""A Flask app as gevent web apps are written, on geredis.

Run it (a private redis-server, gunicorn with gevent workers):

    ./dev webapp              # http://127.0.0.1:8000/?sid=42
    ./dev webapp --preload    # the app imported once in the master, then forked

or against your own server: ``REDIS_URL=redis://host:6379/0 gunicorn -c
examples/webapp/gunicorn.conf.py --chdir examples/webapp app:app``.

Each request to ``/`` does what a typical page does with Redis, 6 commands:
read the visitor's session (GET), count the page view (INCR), read three
cached HTML fragments (GET each, rendered and stored with SETEX on a miss) and
store the session back (SETEX). Every request checks that what it read is its
own (the session holds its id), so a reply delivered to the wrong request
would show up as a 500.

The client is built once, at import, like any module-level client: geredis
opens its connection lazily, in the worker, and reopens it after a fork, so
this works with and without ``--preload``; all the worker's greenlets share
that one connection. ``WEBAPP_CLIENT=redis-py`` runs the same app on redis-py
with a ``BlockingConnectionPool`` of 50 (the usual setup) for comparison
(``bench/web.py``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict

from flask import Flask, abort, request

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENT = os.environ.get("WEBAPP_CLIENT", "geredis")

if CLIENT == "geredis":
    import geredis

    r: Any = geredis.Redis.from_url(REDIS_URL, decode_responses=True)
elif CLIENT == "redis-py":
    import gevent.queue
    import redis

    r = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=50, timeout=20, queue_class=gevent.queue.LifoQueue,
        decode_responses=True,
    ))
else:
    raise SystemExit(f"WEBAPP_CLIENT must be geredis or redis-py, not {CLIENT!r}")

app = Flask(__name__)
FRAGMENTS = ("header", "nav", "footer")


def fragment(name: str) -> str:
    """A cached HTML fragment, rendered and cached for 60 s on a miss."""
    html = r.get(f"fragment:{name}")
    if html is None:
        html = f"<div class='{name}'>{name.title()} rendered at {time.time():.0f}</div>"
        r.setex(f"fragment:{name}", 60, html)
    return html  # type: ignore[no-any-return]


@app.route("/")
def index() -> Any:
    sid = request.args.get("sid") or request.cookies.get("sid") or "anonymous"
    raw = r.get(f"session:{sid}")
    session: Dict[str, Any] = json.loads(raw) if raw else {"sid": sid, "visits": 0}
    if session.get("sid") != sid:
        abort(500, "a session that is not this request's")  # never happens
    session["visits"] += 1
    views = r.incr("counter:views")
    body = "".join(fragment(name) for name in FRAGMENTS)
    r.setex(f"session:{sid}", 1800, json.dumps(session))
    return (f"<html><body>{body}<p>session {sid}: visit {session['visits']};"
            f" {views} page views in all</p></body></html>")


@app.route("/check")
def check() -> Any:
    """For health checks and tests: the client in use and a round trip."""
    key = f"check:{os.getpid()}"
    r.set(key, "ok")
    return {"client": CLIENT, "pid": os.getpid(), "redis": r.get(key)}
