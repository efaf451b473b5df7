"""examples/webapp runs under gunicorn's gevent worker, with and without
``--preload`` (the client is then built in the master and used after fork)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

from ..conftest import RedisServer, free_port  # noqa: E402
from .conftest import data_connections  # noqa: E402

APP_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "webapp")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read().decode()
    return json.loads(body) if body.startswith("{") else body


@pytest.mark.parametrize("preload", [False, True])
def test_webapp_under_gunicorn_gevent(server: RedisServer, preload: bool) -> None:
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    env = dict(os.environ, REDIS_URL=f"{server.url}/0", WEBAPP_BIND=f"127.0.0.1:{port}")
    args = [gunicorn, "-c", os.path.join(APP_DIR, "gunicorn.conf.py"), "--chdir", APP_DIR]
    process = subprocess.Popen(args + (["--preload"] if preload else []) + ["app:app"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                check = get(f"{base}/check")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert check["client"] == "geredis" and check["redis"] == "ok"
        assert check["pid"] != process.pid  # served by the (forked) worker
        with ThreadPoolExecutor(50) as pool:
            pages = list(pool.map(lambda i: get(f"{base}/?sid={i % 10}"), range(200)))
        assert all("session" in page for page in pages)
        # INCR counts every request; the sessions' read-modify-write races by design.
        assert "; 201 page views in all" in get(f"{base}/?sid=3")
        assert len(data_connections(server.port)) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        process.stderr.close()  # type: ignore[union-attr]
