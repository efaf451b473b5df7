"""RQ on geredis: enqueue from 200 greenlets and run the jobs, the scheduler
(which rebuilds its client from ``connection_pool``), the worker's
``connection_kwargs`` update, and ``send_shutdown_command``."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Iterator

import gevent
import pytest

rq = pytest.importorskip("rq")

from rq import Queue, SimpleWorker, Worker  # noqa: E402
from rq.worker import SpawnWorker  # noqa: E402
from rq.command import send_shutdown_command  # noqa: E402
from rq.job import JobStatus  # noqa: E402
from rq.scheduler import RQScheduler  # noqa: E402

import geredis  # noqa: E402

from ..conftest import RedisServer  # noqa: E402
from .conftest import in_flight_together  # noqa: E402
from .jobs import double, greet  # noqa: E402


@pytest.fixture
def conn(server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
def signals_restored() -> Iterator[None]:
    # Workers install SIGINT/SIGTERM handlers in this (pytest's) process.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_jobs_from_200_greenlets_run_with_their_own_results(
    server: RedisServer, conn: geredis.Redis,
) -> None:
    queue = Queue("default", connection=conn)
    jobs = {}

    def enqueue(i: int) -> None:
        jobs[i] = queue.enqueue(double, i, job_id=f"job-{i}")

    seen = in_flight_together(enqueue, server.port)
    assert len(seen) == 1, seen
    assert len(queue) == 200
    SimpleWorker([queue], connection=conn).work(burst=True)
    for i, job in jobs.items():
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() == 2 * i


def test_worker_raises_socket_timeout_through_connection_kwargs(conn: geredis.Redis) -> None:
    pool = conn.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 5
    worker = Worker(["default"], connection=conn)
    # RQ updates connection_pool.connection_kwargs in place: it must stick
    # and reach the client (redis-py applies it to new connections).
    assert pool.connection_kwargs["socket_timeout"] == worker.connection_timeout
    assert conn.settings.socket_timeout == worker.connection_timeout
    assert conn.ping() is True


def test_scheduler_rebuilds_its_client_from_the_pool(conn: geredis.Redis) -> None:
    queue = Queue("scheduled", connection=conn)
    job = queue.enqueue_in(timedelta(milliseconds=100), greet, "world")
    assert job.get_status() == JobStatus.SCHEDULED
    scheduler = RQScheduler([queue], connection=conn)
    assert isinstance(scheduler.connection, geredis.Redis)
    assert scheduler.connection.settings.port == conn.settings.port
    assert scheduler.acquire_locks() == {"scheduled"}
    deadline = time.monotonic() + 10
    while job.get_status() != JobStatus.QUEUED and time.monotonic() < deadline:
        gevent.sleep(0.1)
        scheduler.enqueue_scheduled_jobs()
    assert job.get_status() == JobStatus.QUEUED
    scheduler.release_locks()
    SimpleWorker([queue], connection=conn).work(burst=True)
    assert job.return_value() == "hello world"
    scheduler.connection.close()


def test_send_shutdown_command_stops_a_worker(
    conn: geredis.Redis, signals_restored: None,
) -> None:
    # RQ's pub/sub handler sends its own process SIGINT; the signal handler's
    # StopRequested must reach the worker's main loop (blocked in BRPOP here).
    worker = Worker(["idle"], connection=conn, name="shutdown-test")
    sender = gevent.spawn_later(1.0, send_shutdown_command, conn, worker.name)
    started = time.monotonic()
    worker.work(burst=False, max_idle_time=20)
    assert time.monotonic() - started < 10
    sender.get(timeout=1)
    assert conn.ping() is True


@pytest.mark.parametrize("worker_class", [Worker, SpawnWorker])
def test_workers_that_run_jobs_in_child_processes(
    conn: geredis.Redis, signals_restored: None, worker_class: type,
) -> None:
    # Worker forks (the child goes on with the parent's client: geredis's
    # fork safety); SpawnWorker starts a fresh interpreter that builds
    # redis.Redis(**connection_kwargs): they must be valid redis-py arguments.
    queue = Queue("forking", connection=conn)
    job = queue.enqueue(double, 21)
    worker_class([queue], connection=conn).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 42
