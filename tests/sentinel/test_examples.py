"""``examples/sentinel_writer.py`` through a real ``SENTINEL FAILOVER``."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import gevent

from .topology import SERVICE, Topology

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "sentinel_writer.py"


def test_sentinel_writer_follows_a_failover_and_loses_nothing(topo: Topology) -> None:
    env = dict(os.environ, SERVICE=SERVICE,
               SENTINELS=",".join(f"{h}:{p}" for h, p in topo.sentinel_addresses))
    process = subprocess.Popen([sys.executable, str(EXAMPLE), "20", "7"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        gevent.sleep(2.0)
        old = topo.failover()
        new = topo.wait_primary_change(old)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-2000:]
    ports = [int(p) for p in re.findall(r"writing to [\d.]+:(\d+)", out)]
    assert ports[0] == old and ports[-1] == new, out
    written = re.search(r"([\d,]+) writes acknowledged, (\d+) of them missing", out)
    assert written is not None, out
    assert int(written.group(1).replace(",", "")) > 100 and written.group(2) == "0", out
