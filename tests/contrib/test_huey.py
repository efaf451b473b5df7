"""huey on geredis: 200 greenlets enqueue tasks, greenlet workers run them
(blocking dequeues on dedicated connections), every caller gets its own
result, and the data traffic stays on one connection."""

from __future__ import annotations

from typing import Any, Dict

import gevent
import pytest

pytest.importorskip("huey")

from geredis.contrib.huey import PriorityRedisHuey, RedisHuey  # noqa: E402
import geredis  # noqa: E402

from ..conftest import RedisServer  # noqa: E402
from .conftest import data_connections, in_flight_together  # noqa: E402


def run_workers(huey: Any, count: int, tasks: int) -> None:
    """``count`` greenlet workers running ``tasks`` tasks between them."""
    done = [0]

    def worker() -> None:
        while done[0] < tasks:
            task = huey.dequeue()  # BRPOP with huey's read_timeout
            if task is not None:
                huey.execute(task)
                done[0] += 1

    gevent.joinall([gevent.spawn(worker) for _ in range(count)], raise_error=True, timeout=60)


def test_tasks_from_200_greenlets(server: RedisServer) -> None:
    huey = RedisHuey("geredis-test", url=f"{server.url}/0", read_timeout=0.2)
    storage_client = huey.storage.conn
    assert isinstance(storage_client, geredis.Redis)

    @huey.task()
    def add(a: int, b: int) -> int:
        return a + b

    results: Dict[int, Any] = {}
    seen = in_flight_together(lambda i: results.__setitem__(i, add(i, 1000)), server.port)
    assert len(seen) == 1, seen
    assert huey.pending_count() == 200
    run_workers(huey, 20, 200)
    assert {i: r.get() for i, r in results.items()} == {i: i + 1000 for i in range(200)}
    assert len(data_connections(server.port)) == 1
    storage_client.close()


def test_priority_huey(server: RedisServer) -> None:
    huey = PriorityRedisHuey("geredis-priority", url=f"{server.url}/1", read_timeout=0.2)

    @huey.task()
    def echo(value: str) -> str:
        return value

    low = echo.s("low")
    high = echo.s("high", priority=10)
    huey.enqueue(low)
    huey.enqueue(high)
    first = huey.dequeue()
    assert first is not None and first.id == high.id
    huey.storage.conn.close()
