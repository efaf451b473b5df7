"""Instructions per command, counted by valgrind's callgrind: a measure of the
client's own cost that the load on a shared machine cannot disturb.

    REDIS_URL=redis://127.0.0.1:6379/0 python bench/instructions.py \
        [--trees DIR ...] [--rounds 2000 20] [--greenlets 1 1000]

For each geredis tree (default: this one; ``--base-rev main`` adds that
revision, exported with ``git archive``) and each greenlet count, a
gevent-patched process runs ``rounds`` rounds of GETs (each of ``greenlets``
greenlets issuing one GET per round) under ``valgrind --tool=callgrind``,
then the same with twice the rounds; the difference in user-space
instructions divided by the extra commands is the cost of one command, with
start-up and warm-up cancelled out. Needs ``valgrind``; slow (a minute or so
per run).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from observability import export_revision  # noqa: E402


def workload(rounds: int, greenlets: int, url: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    import geredis

    client = geredis.Redis.from_url(url, socket_timeout=60)
    client.set("instructions:k", "v")
    for _ in range(rounds):
        gevent.joinall([gevent.spawn(client.get, "instructions:k") for _ in range(greenlets)])
    client.close()


def count(tree: str, rounds: int, greenlets: int, url: str) -> int:
    """User-space instructions of one workload run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, __file__, "--worker", str(rounds), str(greenlets), url],
            capture_output=True, text=True, cwd=tree, env=dict(os.environ, PYTHONPATH=tree),
            timeout=3600,
        )  # fmt: skip
    match = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run failed: {out.stderr[-2000:]}")
    return int(match.group(1))


def run_all(trees: List[Tuple[str, str]], rounds_per: List[int], greenlet_counts: List[int],
            url: str, results: Dict[Tuple[str, int], float]) -> None:
    for name, tree in trees:
        for rounds, greenlets in zip(rounds_per, greenlet_counts):
            once = count(tree, rounds, greenlets, url)
            twice = count(tree, 2 * rounds, greenlets, url)
            results[(name, greenlets)] = (twice - once) / (rounds * greenlets)
            print(f"{name:>12} | {greenlets:>5} greenlets | "
                  f"{results[(name, greenlets)]:>10,.0f} instructions per GET", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-rev", default="", help="also count this revision (git archive)")
    parser.add_argument("--rev", default="", help="count this revision, not the work tree")
    parser.add_argument("--rounds", type=int, nargs=2, default=[2000, 20],
                        help="rounds for the first and second greenlet counts")
    parser.add_argument("--greenlets", type=int, nargs=2, default=[1, 1000])
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    trees: List[Tuple[str, str]] = []
    if args.base_rev:
        trees.append((args.base_rev, export_revision(args.base_rev)))
    trees.append((args.rev or "work tree", export_revision(args.rev) if args.rev else
                  os.path.dirname(HERE)))
    results: Dict[Tuple[str, int], float] = {}
    try:
        run_all(trees, args.rounds, args.greenlets, url, results)
    finally:
        for _, tree in trees:
            if tree.startswith(tempfile.gettempdir()):
                subprocess.run(["rm", "-rf", tree], check=False)
    if args.base_rev:
        for greenlets in args.greenlets:
            base = results[(args.base_rev, greenlets)]
            this = results[(args.rev or "work tree", greenlets)]
            print(f"{greenlets:>5} greenlets: {this / base:.4f} x {args.base_rev}"
                  f" ({this - base:+,.0f} instructions per GET)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        workload(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
