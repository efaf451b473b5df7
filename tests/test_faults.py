"""Broken streams: every pending caller fails at once with a ConnectionError,
nothing hangs, and the next command opens a new connection."""

from __future__ import annotations

import time
from typing import List

import gevent
import pytest
import redis

import geredis
from geredis import ProtocolError, State

from .conftest import RedisServer
from .fakeserver import FakeServer, Peer, echo_ok_forever


def _spawn_gets(c: geredis.Redis, n: int) -> List[gevent.Greenlet]:
    return [gevent.spawn(c.get, f"k{i}") for i in range(n)]


def test_server_killed_with_commands_pending(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, socket_timeout=10, retry=None)
    c.set("k", "v")
    sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "5")
    gevent.sleep(0.05)
    waiting = _spawn_gets(c, 200)
    gevent.sleep(0.05)
    assert c._connection.pending == 201
    started = time.monotonic()
    own_server.stop()
    gevent.joinall([sleeper, *waiting], timeout=3)
    assert time.monotonic() - started < 2
    for g in [sleeper, *waiting]:
        assert isinstance(g.exception, redis.ConnectionError), g.exception
    assert c._connection.state is State.CLOSED
    # No server: the next command fails fast too.
    with pytest.raises(redis.ConnectionError):
        c.get("k")
    # The server is back: the client recovers by itself.
    own_server.start()
    assert c.set("k", "again") is True
    assert c.get("k") == b"again"
    c.close()


def test_connection_killed_by_server(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port, retry=None)
    c.client_setname("victim")
    admin = redis.Redis(port=redis_server.port)
    admin.client_kill_filter(_type="normal", skipme=True)
    admin.close()
    with pytest.raises(redis.ConnectionError):
        for _ in range(100):  # the EOF may land just after a command
            c.get("x")
            gevent.sleep(0.01)
    assert c.get("x") is None  # new connection
    c.close()


def test_reads_are_retried_across_a_restart_writes_are_not(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, socket_timeout=10)
    c.set("k", "v")
    sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "5")
    gevent.sleep(0.05)
    reader = gevent.spawn(c.get, "k")
    writer = gevent.spawn(c.incr, "n")
    gevent.sleep(0.05)
    own_server.stop()
    gevent.sleep(0.2)
    own_server.start()  # empty: persistence is off
    gevent.joinall([sleeper, reader, writer], timeout=8)
    assert isinstance(sleeper.exception, redis.ConnectionError)  # not read-only
    assert isinstance(writer.exception, redis.ConnectionError)  # never replayed
    assert reader.successful() and reader.value is None  # retried on the new server
    assert c.get("n") is None  # the INCR was not replayed
    c.close()


def test_retry_writes_opt_in(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, socket_timeout=10, retry_writes=True)
    c.ping()
    sleeper = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "5")
    gevent.sleep(0.05)
    writer = gevent.spawn(c.incr, "n")
    gevent.sleep(0.05)
    own_server.stop()
    gevent.sleep(0.2)
    own_server.start()
    gevent.joinall([sleeper, writer], timeout=8)
    assert writer.value == 1
    c.close()


def test_refused_connection_fails_fast() -> None:
    from .conftest import free_port

    c = geredis.Redis(port=free_port(), socket_connect_timeout=1, retry=None)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="connecting to"):
        c.ping()
    assert time.monotonic() - started < 1
    c.close()
    # With redis-py's default retry (10 attempts, 10 ms doubling, capped at
    # 1 s), a refused command is retried with backoff, then fails.
    c = geredis.Redis(port=free_port(), socket_connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="connecting to"):
        c.set("k", "v")  # a write that never left the client is safe to retry
    assert 0.05 < time.monotonic() - started < 10
    c.close()


def test_garbage_fails_all_pending_with_protocol_error() -> None:
    def script(peer: Peer) -> None:
        peer.command()
        peer.send(b"+OK\r\n")
        for _ in range(3):
            peer.command()
        peer.send(b"?garbage\r\n")
        gevent.sleep(5)

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3))
        assert c.set("a", 1) is True
        gets = _spawn_gets(c, 3)
        gevent.joinall(gets, timeout=2)
        for g in gets:
            assert isinstance(g.exception, ProtocolError), g.exception
            assert isinstance(g.exception, redis.ConnectionError)
        c.close()


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_garbage_hiredis_raises_odd_errors_on_is_a_protocol_error(parser: str) -> None:
    # A map with an aggregate key: hiredis raises TypeError (the frame handler
    # calls its gets directly), the Python reader gives a tuple key. Either
    # way no caller gets another's reply and the hub reports no crash.
    def script(peer: Peer) -> None:
        for _ in range(3):
            peer.command()
        peer.send(b"$1\r\na\r\n%1\r\n*1\r\n:1\r\n:2\r\n$1\r\nc\r\n")
        gevent.sleep(5)

    if parser == "hiredis":
        pytest.importorskip("hiredis")
    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3), parser=parser)
        gets = _spawn_gets(c, 3)
        gevent.joinall(gets, timeout=2)
        assert gets[0].value == b"a"
        if parser == "hiredis":
            for g in gets[1:]:
                assert isinstance(g.exception, ProtocolError), g.exception
                assert "unparsable reply (TypeError" in str(g.exception)
        else:
            assert gets[1].value == {(1,): 2} and gets[2].value == b"c"
        c.close()


def test_half_reply_then_close() -> None:
    def script(peer: Peer) -> None:
        peer.command()
        peer.send(b"$10\r\nabc")
        peer.close()

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3))
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="closed"):
            c.get("k")
        assert time.monotonic() - started < 1
        c.close()


def test_reply_nobody_asked_for_closes_and_next_command_reconnects() -> None:
    connections = []

    def script(peer: Peer) -> None:
        connections.append(peer)
        if len(connections) == 1:
            peer.command()
            peer.send(b"+OK\r\n+SURPRISE\r\n")
            gevent.sleep(5)
        else:
            echo_ok_forever(peer)

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3))
        assert c.set("a", 1) is True
        first = c._connection
        gevent.sleep(0.1)
        assert first.state is State.CLOSED
        assert isinstance(first.error, ProtocolError)
        assert c.set("a", 2) is True
        assert c._connection is not first
        c.close()


def test_stalled_server_times_out_each_caller() -> None:
    def script(peer: Peer) -> None:
        while True:
            peer.command()  # never answers

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=0.1))
        started = time.monotonic()
        gets = _spawn_gets(c, 20)
        gevent.joinall(gets, timeout=2)
        assert time.monotonic() - started < 1
        assert all(isinstance(g.exception, redis.TimeoutError) for g in gets)
        c.close(timeout=0.1)
        assert c._connection.state is State.CLOSED


def test_connect_timeout_on_a_server_that_never_handshakes() -> None:
    def script(peer: Peer) -> None:
        gevent.sleep(5)

    with FakeServer(script) as server:
        c = geredis.Redis(port=server.port, socket_connect_timeout=0.2, protocol=3, retry=None)
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            c.ping()
        assert time.monotonic() - started < 1.5
        c.close()


def test_late_reply_for_abandoned_caller_is_dropped() -> None:
    def script(peer: Peer) -> None:
        peer.command()  # GET slow
        gevent.sleep(0.3)
        peer.send(b"$4\r\nslow\r\n")
        while True:
            cmd = peer.command()
            peer.send(b"$%d\r\n%s\r\n" % (len(cmd[1]), cmd[1]))

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3))
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.1):
                c.get("slow")
        fast = gevent.spawn(c.get, "fast")  # queued behind the abandoned one
        fast.join(timeout=2)
        assert fast.value == b"fast"
        c.close()
