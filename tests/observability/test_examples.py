"""The observability examples run against a real server."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_otel_metrics_example(redis_server: RedisServer) -> None:
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "otel_metrics.py")],
        env=dict(os.environ, REDIS_URL=f"{redis_server.url}/9"),
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "span 'INCRBY EXPIRE'" in out.stdout
    assert "db.client.operation.duration" in out.stdout and "INCRBY   count=200" in out.stdout
    assert "error reply: ResponseError" in out.stdout
    assert "Stats(commands=206" in out.stdout
