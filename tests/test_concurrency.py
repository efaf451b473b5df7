"""Many greenlets on one connection: every reply reaches its own caller, and
callers that time out or are killed leave without disturbing anyone."""

from __future__ import annotations

import random
from typing import List

import gevent
import pytest
import redis

import geredis
from geredis import State

from .conftest import RedisServer


def test_2000_greenlets_get_their_own_values(r: geredis.Redis) -> None:
    def work(i: int) -> bool:
        key, value = f"key:{i}", f"value:{i}:{random.random()}"
        assert r.set(key, value) is True
        assert r.get(key) == value.encode()
        assert r.incr(f"n:{i}") == 1
        return True

    workers = [gevent.spawn(work, i) for i in range(2000)]
    gevent.joinall(workers, raise_error=True)
    assert all(w.value for w in workers)
    assert r._connection.pending == 0


def test_commands_coalesce_into_few_sends(r: geredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    r.ping()
    conn = r._connection
    sends: List[int] = []
    real_send = conn._writer._raw_send

    def counting_send(data: bytes) -> int:
        sends.append(len(data))
        return int(real_send(data))

    monkeypatch.setattr(conn._writer, "_raw_send", counting_send)
    gevent.joinall([gevent.spawn(r.get, f"k{i}") for i in range(500)], raise_error=True)
    assert 1 <= len(sends) <= 5, sends


def test_socket_timeout_leaves_the_slot_and_the_connection(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, socket_timeout=0.1) as c:
        c.set("after", "mine")
        conn = c._connection
        with pytest.raises(redis.TimeoutError):
            c.execute_command("DEBUG", "SLEEP", "0.3")
        gevent.sleep(0.3)  # the server wakes up and answers the abandoned slot
        # The late +OK of DEBUG SLEEP is dropped; this GET gets its own reply.
        assert c.get("after") == b"mine"
        assert c._connection is conn and conn.state is State.OPEN
        assert conn.pending == 0


def test_gevent_timeout_then_next_caller_gets_its_own_reply(r: geredis.Redis) -> None:
    r.set("a", "A")
    r.set("b", "B")
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            r.execute_command("DEBUG", "SLEEP", "0.2")
    assert r.get("a") == b"A"
    assert r.get("b") == b"B"


def test_killed_caller_mid_flight(r: geredis.Redis) -> None:
    r.set("mine", "1")
    victim = gevent.spawn(r.execute_command, "DEBUG", "SLEEP", "0.2")
    victim2 = gevent.spawn(r.get, "mine")
    gevent.sleep(0.05)
    victim.kill()
    victim2.kill()
    assert r.get("mine") == b"1"
    r.set("mine", "2")
    assert r.get("mine") == b"2"
    assert r._connection.pending == 0


def test_random_timeouts_and_kills_never_swap_replies(r: geredis.Redis) -> None:
    wrong: List[str] = []
    done = [0]

    def work(i: int) -> None:
        for j in range(20):
            value = f"{i}:{j}"
            try:
                with gevent.Timeout(random.choice([None, 0.0001, 0.001, 0.01])):
                    r.set(f"k{i}", value)
                    got = r.get(f"k{i}")
                if got != value.encode():
                    wrong.append(f"{value} got {got!r}")
                done[0] += 1
            except gevent.Timeout:
                pass

    workers = [gevent.spawn(work, i) for i in range(300)]
    gevent.sleep(0.02)
    for w in random.sample(workers, 30):
        w.kill(block=False)
    gevent.joinall(workers)
    assert not wrong
    assert done[0] > 0
    # Drain: every abandoned slot still got its reply and left the FIFO.
    assert r.ping() is True
    assert r._connection.pending == 0


def test_future_form_fan_out(r: geredis.Redis) -> None:
    futures = [r.execute_async("INCRBY", "fan", i) for i in range(1, 1001)]
    assert futures[-1].get(timeout=10) == sum(range(1, 1001))
    assert all(f.get(timeout=10) > 0 for f in futures)


def test_works_under_monkey_patching_subprocess(redis_server: RedisServer) -> None:
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent, geredis\n"
        f"r = geredis.Redis(port={redis_server.port})\n"
        "gs = [gevent.spawn(lambda i: (r.set(f'p{i}', i), r.get(f'p{i}'))[1], i) for i in range(200)]\n"
        "gevent.joinall(gs, raise_error=True)\n"
        "assert [g.value for g in gs] == [str(i).encode() for i in range(200)]\n"
        "r.close(); print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_timed_out_callers_that_queue_again_at_once(redis_server: RedisServer) -> None:
    # Callers resumed by the deadline timer queue new commands before the
    # timer has finished with the others; nothing may be skipped or broken.
    with geredis.Redis(port=redis_server.port, socket_timeout=0.1) as c:
        c.ping()
        conn = c._connection
        sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.3")
        gevent.sleep(0.01)
        outcomes: List[str] = []

        def caller() -> None:
            try:
                c.get("a")
            except redis.TimeoutError:
                try:
                    c.get("b")
                except redis.TimeoutError:
                    outcomes.append("timeout twice")

        callers = [gevent.spawn(caller) for _ in range(20)]
        gevent.joinall([sleeper, *callers])
        assert outcomes == ["timeout twice"] * 20
        gevent.sleep(0.4)
        assert c.get("a") is None
        assert c._connection is conn and conn.pending == 0


def test_an_empty_batch_sends_nothing_and_counts_nothing(r: geredis.Redis) -> None:
    r.ping()
    conn = r._connection
    before = r.stats()
    conn.submit_batch(b"", [])
    assert conn.pending == 0 and not conn._out and conn._writer.extra == 0
    assert r.get("nothing") is None
    after = r.stats()
    assert (after.batches, after.batched) == (before.batches + 1, before.batched + 1)
