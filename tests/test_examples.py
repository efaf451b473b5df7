"""The examples users copy run as documented, against a real server."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from .conftest import RedisServer

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, server: RedisServer, *args: str) -> str:
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{server.port}/0")
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_feature_flags_sees_every_change(redis_server: RedisServer) -> None:
    out = run_example("feature_flags.py", redis_server, "50", "1.6")
    hits = int(re.search(r"cache: ([\d,]+) hits", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert hits > 1000, out
    assert re.search(r"[1-9]\d* flag changes, each seen", out), out
    final = re.search(r"final value of \S+: '(.*)' \(server: '(.*)'\)", out)
    assert final is not None and final.group(1) == final.group(2), out


def test_fanout_demo_runs(redis_server: RedisServer) -> None:
    assert run_example("fanout.py", redis_server).strip()
