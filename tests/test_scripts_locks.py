"""Scripts (EVAL, EVALSHA with NOSCRIPT fallback, also in pipelines),
functions, locks that wait cooperatively, and the SCAN iterators."""

from __future__ import annotations

import time
from typing import List

import gevent
import pytest
import redis
import redis.lock
from redis.exceptions import LockError, LockNotOwnedError, NoScriptError

import geredis
import geredis.lock

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_eval_and_evalsha(r: geredis.Redis) -> None:
    assert r.eval("return {KEYS[1], ARGV[1]}", 1, "k", "a") == [b"k", b"a"]
    sha = r.script_load(INCR_BY)
    assert r.script_exists(sha) == [True]
    assert r.evalsha(sha, 1, "n", 5) == 5
    r.script_flush()
    with pytest.raises(NoScriptError):
        r.evalsha(sha, 1, "n", 5)


def test_registered_script_survives_script_flush(r: geredis.Redis) -> None:
    incr_by = r.register_script(INCR_BY)
    assert incr_by(keys=["n"], args=[2]) == 2
    r.script_flush()
    assert incr_by(keys=["n"], args=[3]) == 5  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA


@pytest.mark.parametrize("transaction", [False, True])
def test_registered_script_in_a_pipeline_after_flush(r: geredis.Redis, transaction: bool) -> None:
    incr_by = r.register_script(INCR_BY)
    r.script_flush()
    pipe = r.pipeline(transaction=transaction)
    pipe.set("n", 10)
    incr_by(keys=["n"], args=[5], client=pipe)
    incr_by(keys=["n"], args=[1], client=pipe)
    assert pipe.execute() == [True, 15, 16]
    assert r.script_exists(incr_by.sha) == [True]


def test_functions_load_and_fcall(r: geredis.Redis) -> None:
    library = (
        "#!lua name=geredis_test\n"
        "redis.register_function('double', function(keys, args)"
        " return redis.call('INCRBY', keys[1], redis.call('GET', keys[1]) or 0) end)\n"
        "redis.register_function{function_name='echo_ro', callback=function(keys, args)"
        " return args[1] end, flags={'no-writes'}}"
    )
    assert r.function_load(library, replace=True) == b"geredis_test"
    r.set("f", 21)
    assert r.fcall("double", 1, "f") == 42
    assert r.fcall_ro("echo_ro", 0, "hi") == b"hi"
    pipe = r.pipeline()
    pipe.fcall("double", 1, "f").fcall_ro("echo_ro", 0, "x")
    assert pipe.execute() == [84, b"x"]
    r.function_delete("geredis_test")


def test_lock_is_geredis_lock_with_redis_py_api(r: geredis.Redis) -> None:
    lock = r.lock("res", timeout=5)
    assert isinstance(lock, geredis.lock.Lock) and isinstance(lock, redis.lock.Lock)
    assert lock.acquire(blocking=False)
    assert lock.locked() and lock.owned()
    assert not r.lock("res").acquire(blocking=False)
    assert lock.extend(5)
    lock.release()
    assert not lock.locked()
    with pytest.raises(LockError):
        lock.release()
    custom = r.lock("res", lock_class=redis.lock.Lock)
    assert type(custom) is redis.lock.Lock


def test_lock_contention_from_50_greenlets_is_exact(r: geredis.Redis) -> None:
    r.set("count", 0)
    ticks = [0]
    stop = [False]

    def ticker() -> None:
        while not stop[0]:
            ticks[0] += 1
            gevent.sleep(0.005)

    def work() -> None:
        with r.lock("counter-lock", timeout=10, sleep=0.002):
            value = int(r.get("count"))  # a non-atomic read-modify-write
            gevent.sleep(0.001)
            r.set("count", value + 1)

    tick = gevent.spawn(ticker)
    started = time.monotonic()
    workers = [gevent.spawn(work) for _ in range(50)]
    gevent.joinall(workers, raise_error=True, timeout=30)
    elapsed = time.monotonic() - started
    stop[0] = True
    tick.join()
    assert r.get("count") == b"50"
    # The waiters slept cooperatively: the ticker kept running all along.
    assert ticks[0] >= elapsed / 0.005 / 3, (ticks[0], elapsed)
    assert not r.exists("counter-lock")


def test_lock_blocking_timeout(r: geredis.Redis) -> None:
    holder = r.lock("busy")
    assert holder.acquire()
    started = time.monotonic()
    assert r.lock("busy", sleep=0.01).acquire(blocking_timeout=0.1) is False
    assert 0.05 < time.monotonic() - started < 2
    with pytest.raises(LockError, match="Unable to acquire lock"):
        with r.lock("busy", sleep=0.01, blocking_timeout=0.05):
            pass
    holder.release()


def test_lock_token_is_greenlet_local(r: geredis.Redis) -> None:
    shared = r.lock("gl", timeout=5)
    assert shared.acquire()
    other = gevent.spawn(shared.release)
    other.join()
    assert isinstance(other.exception, LockError)  # not the owner in that greenlet
    assert shared.owned()
    shared.release()
    unshared = r.lock("gl2", thread_local=False)
    assert unshared.acquire()
    gevent.spawn(unshared.release).get()  # token shared on purpose
    assert not unshared.locked()


def test_released_lock_not_owned(r: geredis.Redis) -> None:
    lock = r.lock("short", timeout=0.05)
    assert lock.acquire()
    gevent.sleep(0.1)
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_scan_iterators(r: geredis.Redis) -> None:
    r.mset({f"key:{i}": i for i in range(250)})
    r.hset("hash", mapping={f"f{i}": i for i in range(300)})
    r.sadd("set", *[f"m{i}" for i in range(300)])
    r.zadd("zset", {f"z{i}": i for i in range(300)})
    assert len(set(r.scan_iter(match="key:*", count=50))) == 250
    assert sorted(r.scan_iter(match="key:1?", count=1000)) == [f"key:{i}".encode() for i in range(10, 20)]
    assert len(list(r.scan_iter(_type="hash"))) == 1
    assert dict(r.hscan_iter("hash", count=40)) == {f"f{i}".encode(): str(i).encode() for i in range(300)}
    assert set(r.sscan_iter("set", match="m1*")) == {f"m{i}".encode() for i in range(300) if str(i).startswith("1")}
    zs: List[tuple] = list(r.zscan_iter("zset", count=30))
    assert sorted(zs, key=lambda p: p[1]) == [(f"z{i}".encode(), float(i)) for i in range(300)]
