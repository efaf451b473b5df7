"""Pipelines and transactions: redis-py's API and results, one contiguous
batch on the shared connection, WATCH on dedicated connections, big batches
off the shared connection."""

from __future__ import annotations

import time
from typing import Any, List

import gevent
import pytest
import redis
from redis.exceptions import ExecAbortError, ResponseError, WatchError

import geredis
import geredis.pipeline
from geredis import ClientClosedError, SharedConnectionError, State

from .conftest import RedisServer


def test_transaction_pipeline_chaining_and_results(r: geredis.Redis) -> None:
    with r.pipeline() as pipe:
        assert isinstance(pipe, redis.client.Pipeline)
        pipe.set("a", 1).incr("a").get("a").hset("h", "f", "v").hgetall("h")
        assert len(pipe) == 5
        assert pipe.execute() == [True, 2, b"2", 1, {b"f": b"v"}]
        assert len(pipe) == 0
        assert pipe.execute() == []  # empty pipelines send nothing
    assert r._dedicated.in_use == 0 and not r._dedicated._idle  # all on the shared one


def test_non_transaction_pipeline_matches_redis_py(rd: geredis.Redis, redis_server: RedisServer) -> None:
    ref = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        results = []
        for client in (rd, ref):
            client.delete("s", "z", "l")
            pipe = client.pipeline(transaction=False)
            pipe.set("s", "x").zadd("z", {"m": 1.5}).zrange("z", 0, -1, withscores=True)
            pipe.mget([]).lpush("l", 1).exists("s", "nope").dump("s").get("nope")
            results.append(pipe.execute())
        assert results[0] == results[1]
        assert isinstance(results[0][6], bytes)  # NEVER_DECODE read raw
        assert results[0][3] == []  # EMPTY_RESPONSE
    finally:
        ref.close()


def _error_pipeline(client: redis.Redis, transaction: bool, raise_on_error: bool) -> Any:
    client.delete("s", "n")
    client.set("s", "text")
    pipe = client.pipeline(transaction=transaction)
    pipe.incr("n").lpush("s", "a").incr("n")
    try:
        return pipe.execute(raise_on_error=raise_on_error)
    except ResponseError as exc:
        return exc


@pytest.mark.parametrize("transaction", [False, True])
def test_errors_inside_pipelines_like_redis_py(r: geredis.Redis, redis_server: RedisServer,
                                               transaction: bool) -> None:
    ref = redis.Redis(port=redis_server.port)
    try:
        mine = _error_pipeline(r, transaction, True)
        theirs = _error_pipeline(ref, transaction, True)
        assert type(mine) is type(theirs)
        assert str(mine) == str(theirs)
        assert str(mine).startswith("Command # 2 (LPUSH s a) of pipeline caused error: WRONGTYPE")
        assert r.get("n") == b"2"  # the other commands ran
        mine = _error_pipeline(r, transaction, False)
        theirs = _error_pipeline(ref, transaction, False)
        assert mine[0] == theirs[0] == 1 and mine[2] == theirs[2] == 2
        assert type(mine[1]) is type(theirs[1]) and str(mine[1]) == str(theirs[1])
    finally:
        ref.close()


def test_queuing_error_aborts_the_transaction(r: geredis.Redis) -> None:
    pipe = r.pipeline()
    pipe.set("a", 1).execute_command("SET", "only-a-key").set("b", 2)
    with pytest.raises(ExecAbortError) as info:
        pipe.execute()
    assert isinstance(info.value, ResponseError)
    assert "Command # 2 (SET only-a-key) of pipeline caused error" in str(info.value)
    assert r.exists("a", "b") == 0  # nothing applied
    assert r.ping() is True


def test_100_concurrent_transactions_never_interleave(r: geredis.Redis) -> None:
    def work(i: int) -> List[Any]:
        pipe = r.pipeline()
        pipe.incr("counter").incr("counter").get("counter")
        pipe.rpush("log", f"{i}a", f"{i}b")
        return pipe.execute()  # type: ignore[no-any-return]

    workers = [gevent.spawn(work, i) for i in range(100)]
    gevent.joinall(workers, raise_error=True)
    for w in workers:
        first, second, now, _ = w.value
        assert second == first + 1 and int(now) == second
    assert r.get("counter") == b"200"
    log = r.lrange("log", 0, -1)
    for a, b in zip(log[::2], log[1::2]):
        assert a[:-1] == b[:-1] and (a[-1:], b[-1:]) == (b"a", b"b")


def test_non_transaction_batches_are_contiguous(r: geredis.Redis) -> None:
    def work(i: int) -> None:
        pipe = r.pipeline(transaction=False)
        for j in range(20):
            pipe.rpush("seq", f"{i}:{j}")
        pipe.execute()

    gevent.joinall([gevent.spawn(work, i) for i in range(50)], raise_error=True)
    items = [x.decode() for x in r.lrange("seq", 0, -1)]
    for start in range(0, len(items), 20):
        block = items[start:start + 20]
        owner = block[0].split(":")[0]
        assert block == [f"{owner}:{j}" for j in range(20)]


def test_watch_runs_commands_at_once_then_multi(r: geredis.Redis) -> None:
    r.set("w", 10)
    with r.pipeline() as pipe:
        pipe.watch("w")
        assert pipe.watching
        value = int(pipe.get("w"))  # immediate, on the WATCH connection
        pipe.multi()
        pipe.set("w", value + 1)
        assert pipe.execute() == [True]
    assert r.get("w") == b"11"
    assert r._dedicated.in_use == 0
    [conn] = r._dedicated._idle  # returned clean
    assert conn.state is State.OPEN and conn.pending == 0


def test_watch_conflict_raises_watch_error(r: geredis.Redis) -> None:
    r.set("w", 1)
    pipe = r.pipeline()
    pipe.watch("w")
    r.set("w", 2)  # another connection changes the key
    pipe.multi()
    pipe.set("w", 3)
    with pytest.raises(WatchError):
        pipe.execute()
    assert r.get("w") == b"2"
    assert r._dedicated.in_use == 0 and len(r._dedicated._idle) == 1


def test_reset_unwatches_and_returns_the_connection(r: geredis.Redis) -> None:
    pipe = r.pipeline()
    pipe.watch("x")
    conn = pipe._lease
    pipe.reset()
    assert r._dedicated._idle == [conn] and r._dedicated.in_use == 0
    # The connection no longer watches "x": a transaction on it goes through.
    pipe.watch("y")
    assert pipe._lease is conn
    r.set("x", "changed")
    pipe.multi()
    pipe.set("y", 1)
    assert pipe.execute() == [True]


def test_transaction_retries_until_success(r: geredis.Redis) -> None:
    r.set("balance", 0)
    attempts = [0]

    def deposit(pipe: Any) -> None:
        attempts[0] += 1
        current = int(pipe.get("balance"))
        gevent.sleep(0.001)  # let the others change it meanwhile
        pipe.multi()
        pipe.set("balance", current + 1)

    workers = [gevent.spawn(r.transaction, deposit, "balance") for _ in range(30)]
    gevent.joinall(workers, raise_error=True)
    assert r.get("balance") == b"30"
    assert attempts[0] > 30, "no WATCH conflict happened"
    assert all(w.value == [True] for w in workers)
    assert r._dedicated.in_use == 0
    value = r.transaction(lambda pipe: pipe.get("balance"), "balance", value_from_callable=True)
    assert value == b"30"


def test_commands_that_cannot_share_are_refused_in_pipelines(r: geredis.Redis) -> None:
    for transaction in (False, True):
        pipe = r.pipeline(transaction=transaction)
        pipe.set("never", 1).execute_command("SELECT", 1)
        with pytest.raises(SharedConnectionError, match="SELECT"):
            pipe.execute()
        assert len(pipe) == 0
    assert r.exists("never") == 0


def test_blocking_command_in_a_pipeline(r: geredis.Redis) -> None:
    pipe = r.pipeline()  # inside MULTI a blocking command does not block
    assert pipe.blpop(["q"], 5).execute() == [None]
    started = time.monotonic()
    ticks = gevent.spawn(lambda: [r.ping() for _ in range(20)])
    pipe = r.pipeline(transaction=False)  # outside, it runs on a dedicated connection
    assert pipe.set("k", 1).blpop(["q"], 0.3).execute() == [True, None]
    assert 0.25 < time.monotonic() - started < 3
    assert ticks.get(timeout=1)


def test_big_pipeline_leaves_the_shared_connection_free(r: geredis.Redis) -> None:
    r.set("probe", "p")
    pipe = r.pipeline(transaction=False)
    for i in range(50_000):
        pipe.set(f"big:{i}", i)
    latencies: List[float] = []
    done = [False]

    def probe() -> None:
        while not done[0]:
            started = time.perf_counter()
            assert r.get("probe") == b"p"
            latencies.append(time.perf_counter() - started)
            gevent.sleep(0.001)

    prober = gevent.spawn(probe)
    gevent.sleep(0.01)
    started = time.perf_counter()
    results = pipe.execute()
    total = time.perf_counter() - started
    done[0] = True
    prober.get(timeout=5)
    assert len(results) == 50_000 and all(results)
    assert r.get("big:49999") == b"49999"
    # The probes kept getting answers while the pipeline ran: none of them
    # waited behind it (a relative bound, so a loaded machine cannot fail it).
    assert len(latencies) > 5
    assert max(latencies) < total / 2, (max(latencies), total)
    assert len(r._dedicated._idle) == 1  # it ran on a dedicated connection


def test_chunked_pipeline_keeps_replies_in_order(r: geredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geredis.pipeline, "CHUNK", 7)
    r.set("str", "x")
    pipe = r.pipeline(transaction=False, threshold=10)
    for i in range(100):
        if i % 13 == 5:
            pipe.lpush("str", i)  # WRONGTYPE, in place
        else:
            pipe.incr("n")
    results = pipe.execute(raise_on_error=False)
    n = 0
    for i in range(100):
        if i % 13 == 5:
            assert isinstance(results[i], ResponseError)
        else:
            n += 1
            assert results[i] == n
    # A transaction over the threshold: MULTI, chunks of queued commands, EXEC.
    pipe = r.pipeline(threshold=10)
    for _ in range(100):
        pipe.incr("m")
    assert pipe.execute() == list(range(1, 101))
    assert r._dedicated.in_use == 0


def test_timeout_on_a_dedicated_batch_aborts_that_connection(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, socket_timeout=0.2) as c:
        pipe = c.pipeline(transaction=False, threshold=0)
        pipe.set("t", 1).execute_command("DEBUG", "SLEEP", "0.5").get("t")
        with pytest.raises(redis.TimeoutError):
            pipe.execute()
        assert c._dedicated.in_use == 0 and c._dedicated._idle == []
        gevent.sleep(0.4)
        assert c.get("t") == b"1"


def test_pipeline_on_a_closed_client(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    c.close(final=True)
    with pytest.raises(ClientClosedError):
        c.pipeline().set("k", 1).execute()
    with pytest.raises(ClientClosedError):
        c.pipeline().watch("k")


def test_close_lets_a_dedicated_pipeline_finish(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    pipe = c.pipeline(transaction=False, threshold=100)
    for i in range(20_000):
        pipe.set(f"closing:{i}", i)
    running = gevent.spawn(pipe.execute)
    while c._dedicated.in_use == 0:
        gevent.sleep(0.001)
    c.close(final=True)
    assert len(running.get(timeout=5)) == 20_000
    watcher = c.pipeline()
    with pytest.raises(ClientClosedError):
        watcher.watch("k")


def test_forgotten_watching_pipeline_gives_its_connection_back(r: geredis.Redis) -> None:
    pipe = r.pipeline()
    pipe.watch("k")
    assert r._dedicated.in_use == 1
    del pipe
    import gc

    gc.collect()
    assert r._dedicated.in_use == 0 and r._dedicated._idle == []  # aborted, not pooled


def test_a_watched_transaction_whose_outcome_is_unknown_is_not_run_again(
        redis_server: RedisServer) -> None:
    # EXEC's reply comes late (DEBUG SLEEP inside the transaction), so the
    # client times out after the transaction was sent: it may have run.
    # redis-py raises WatchError there, and transaction() runs func again once
    # the server is back (INCR twice); geredis raises the TimeoutError and
    # runs func once.
    with geredis.Redis(port=redis_server.port, socket_timeout=0.4) as c:
        c.set("once", 0)
        calls = []

        def func(pipe: Any) -> None:
            calls.append(1)
            pipe.get("once")
            pipe.multi()
            pipe.incr("once")
            pipe.execute_command("DEBUG", "SLEEP", "0.6")

        with pytest.raises(redis.TimeoutError):
            c.transaction(func, "once")
        assert len(calls) == 1
        gevent.sleep(0.5)
        assert c.get("once") == b"1"
        assert c._dedicated.in_use == 0
