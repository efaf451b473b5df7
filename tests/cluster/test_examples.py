"""``examples/cluster_fanout.py`` against a real cluster."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from .localcluster import LocalCluster

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "cluster_fanout.py"


def test_cluster_fanout_uses_one_connection_per_primary(cluster: LocalCluster) -> None:
    cluster.wait_ok()
    host, port = cluster.startup
    env = dict(os.environ, REDIS_CLUSTER_URL=f"redis://{host}:{port}")
    done = subprocess.run([sys.executable, str(EXAMPLE), "300"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "300 reads correct" in out and "300 values, in the order asked: True" in out, out
    per_primary = [int(n) for n in re.findall(
        r"primary \S+: (\d+) connection\(s\) from this program", out)]
    assert len(per_primary) == 3 and all(n == 1 for n in per_primary), out
