"""Load rows into Redis hashes through geredis pipelines, with a progress bar.

    REDIS_URL=redis://localhost:6379/0 python examples/etl_load.py [data.csv]
        [--rows N] [--batch 10000] [--prefix etl:row:]

With a CSV file (first line: column names), each row becomes a hash
``<prefix><n>`` holding its columns (``<n>`` is the row number, or the value
of ``--key-column``). Without a file, ``--rows`` rows (default 100,000) are
generated. Rows are sent in non-transactional pipelines of ``--batch``
commands; above geredis's ``pipeline_threshold`` (2,000) each batch runs on a
dedicated connection, so other greenlets sharing the client would keep their
latency. A plain-text progress bar shows rows done and the rate.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from typing import Any, Dict, Iterator, Optional, TextIO

import geredis

BAR_WIDTH = 30


def generated_rows(count: int) -> Iterator[Dict[str, str]]:
    for i in range(count):
        yield {"id": str(i), "name": f"user-{i}", "email": f"user{i}@example.com",
               "score": str(i % 1000)}


def csv_rows(path: str) -> Iterator[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 1, 0)  # minus the header


class Progress:
    """``[#########---------]  45.0%  450,000/1,000,000 rows  123,456 rows/s``"""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.out = out
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        fraction = min(done / self.total, 1.0)
        filled = int(BAR_WIDTH * fraction)
        rate = done / max(now - self.started, 1e-9)
        self.out.write(
            f"\r[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:5.1f}%"
            f"  {done:,}/{self.total:,} rows  {rate:,.0f} rows/s"
        )
        self.out.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        self.out.write("\n")


def load(r: geredis.Redis, rows: Iterator[Dict[Any, Any]], total: int, batch: int,
         prefix: str, key_column: Optional[str]) -> int:
    progress = Progress(total)
    done = 0
    pipe = r.pipeline(transaction=False)
    for number, row in enumerate(rows):
        key = f"{prefix}{row[key_column] if key_column else number}"
        pipe.hset(key, mapping=row)
        if len(pipe) >= batch:
            pipe.execute()
            done += batch
            progress.update(done)
    if len(pipe):
        done += len(pipe)
        pipe.execute()
    progress.finish(done)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="?", help="CSV file to load (default: generated rows)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to generate")
    parser.add_argument("--batch", type=int, default=10_000, help="commands per pipeline")
    parser.add_argument("--prefix", default="etl:row:", help="key prefix")
    parser.add_argument("--key-column", help="CSV column that names each row's key")
    args = parser.parse_args()

    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    with geredis.from_url(url, decode_responses=True) as r:
        if args.csv:
            total, rows = count_lines(args.csv), csv_rows(args.csv)
            source = args.csv
        else:
            total, rows = args.rows, generated_rows(args.rows)
            source = "generated rows"
        print(f"loading {total:,} rows from {source} into {url} (keys {args.prefix}*)")
        started = time.perf_counter()
        done = load(r, rows, total, args.batch, args.prefix, args.key_column)
        took = time.perf_counter() - started
        print(f"loaded {done:,} rows in {took:.2f} s ({done / max(took, 1e-9):,.0f} rows/s)")


if __name__ == "__main__":
    main()
