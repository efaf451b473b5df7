"""What observability costs: the throughput bench's SET+GET loop with each
observability mode, against the same loop on another revision, same run.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/observability.py \
        [--base-rev main] [--rev REV] [--modes base off metrics slowlog traced] \
        [--concurrency 1 1000] [--seconds 2] [--rounds 5]

Modes (each cell is a fresh gevent-patched process running
``bench/throughput.py``'s geredis worker after the mode is set up):

* ``base``: the code of ``--base-rev`` (exported with ``git archive`` to a
  temporary directory and put first on ``PYTHONPATH``), nothing enabled;
* ``off``: this tree (or ``--rev``, exported like the base, so that the
  work tree may change while the bench runs), nothing enabled (the "off
  means off" check);
* ``metrics``: ``geredis.observability.enable_metrics()`` on an SDK
  ``MeterProvider`` with an in-memory reader;
* ``counters``: the same with ``histograms=False`` (counters and gauges only);
* ``slowlog``: ``geredis.observability.enable_slow_log(1.0)`` (every command
  timed, none slow enough to log);
* ``traced``: ``RedisInstrumentor().instrument()`` on an SDK
  ``TracerProvider`` whose processor drops the finished spans (the cost of
  making them, not of exporting them).

Rounds interleave every mode at every concurrency, so load changes on a
shared machine hit all modes alike; the median of the rounds and each mode's
ratio to ``base`` are printed, for ops/s and for the client process's CPU
time per operation (what the client's own code costs: far steadier than
ops/s when other work shares the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ["base", "off", "metrics", "counters", "slowlog", "traced"]


def setup_mode(mode: str) -> Any:
    """Turn on what ``mode`` measures (in the worker process); returns what
    must stay referenced for the run."""
    if mode in ("base", "off"):
        return None
    import geredis.observability as obs

    if mode in ("metrics", "counters"):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        obs.enable_metrics(meter_provider=provider, histograms=mode == "metrics")
        return provider
    if mode == "slowlog":
        obs.enable_slow_log(1.0)
        return None
    if mode == "traced":
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        provider = TracerProvider()
        provider.add_span_processor(SpanProcessor())  # the base class drops every span
        RedisInstrumentor().instrument(tracer_provider=provider)
        return provider
    raise ValueError(f"unknown mode {mode!r}")


def worker(mode: str, greenlets: int, seconds: float, url: str) -> Dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    sys.path.insert(0, HERE)
    import geredis
    from throughput import worker as loop_worker

    keep = setup_mode(mode)
    result = loop_worker("geredis", greenlets, seconds, url)
    result["geredis"] = os.path.dirname(geredis.__file__)
    del keep
    return result


def run_cell(mode: str, tree: str, greenlets: int, seconds: float, url: str) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, str(greenlets), str(seconds), url],
        capture_output=True, text=True, timeout=seconds * 10 + 60, env=env, cwd=tree,
    )
    if out.returncode != 0:
        return {"ops": 0.0, "errors": -1, "stderr": out.stderr[-800:]}
    cell: Dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    expected = os.path.join(os.path.realpath(tree), "geredis")
    if os.path.realpath(cell["geredis"]) != expected:
        raise RuntimeError(f"{mode}: ran {cell['geredis']}, not {expected}")
    return cell


def export_revision(rev: str) -> str:
    tmp = tempfile.mkdtemp(prefix="geredis-base-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-rev", default="main")
    parser.add_argument("--rev", default="", help="measure this revision, not the work tree")
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 1000])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    base_tree = export_revision(args.base_rev) if "base" in args.modes else ""
    this_tree = export_revision(args.rev) if args.rev else ROOT

    ops: Dict[str, Dict[int, List[float]]] = {m: {n: [] for n in args.concurrency} for m in args.modes}
    cpu: Dict[str, Dict[int, List[float]]] = {m: {n: [] for n in args.concurrency} for m in args.modes}
    try:
        for round_ in range(args.rounds):
            for n in args.concurrency:
                for mode in args.modes:
                    tree = base_tree if mode == "base" else this_tree
                    cell = run_cell(mode, tree, n, args.seconds, url)
                    if "stderr" in cell:
                        print(f"  {mode} @ {n}: failed: {cell['stderr']}", file=sys.stderr)
                    ops[mode][n].append(cell["ops"])
                    if cell.get("cpu_us"):
                        cpu[mode][n].append(cell["cpu_us"])
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for tree in (base_tree, this_tree):
            if tree and tree != ROOT:
                subprocess.run(["rm", "-rf", tree], check=False)

    print(f"\nmedian of {args.rounds} x {args.seconds:g}s (base = {args.base_rev},"
          f" this = {args.rev or 'work tree'}); ratio to base in brackets")
    for title, table, fmt in (("SET+GET ops/s", ops, "{:>10,.0f}"),
                              ("client CPU us per op", cpu, "{:>10.2f}")):
        print(f"\n{title}\n{'greenlets':>9} | " + " | ".join(f"{m:>18}" for m in args.modes))
        for n in args.concurrency:
            base = statistics.median(table["base"][n]) if table.get("base", {}).get(n) else 0.0
            cells = []
            for mode in args.modes:
                values = table[mode][n]
                value = statistics.median(values) if values else 0.0
                ratio = f" ({value / base:.3f})" if base else ""
                cells.append(fmt.format(value) + f"{ratio:>8}")
            print(f"{n:>9} | " + " | ".join(cells))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "observability.json"), "w") as f:
        json.dump({"ops": ops, "cpu_us_per_op": cpu, "base_rev": args.base_rev}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, mode, n, seconds, url = sys.argv
        print(json.dumps(worker(mode, int(n), float(seconds), url)))
    else:
        main()
