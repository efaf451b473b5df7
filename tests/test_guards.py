"""Backpressure, health checks, the integrity check, fork safety, thread
affinity, and the server states that get their own exceptions."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, List

import gevent
import pytest
import redis
from redis.exceptions import BusyLoadingError, MasterDownError, ReadOnlyError

import geredis
from geredis import ProtocolError, State
from geredis.guards import ThreadAffinityError

from .conftest import RedisServer, free_port
from .fakeserver import FakeServer, Peer


def test_in_flight_limit_makes_callers_wait(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_in_flight=10, socket_timeout=10) as c:
        c.ping()
        conn = c._connection
        seen: List[int] = []
        sampler_running = [True]

        def sample() -> None:
            while sampler_running[0]:
                seen.append(conn.pending)
                gevent.sleep(0.001)

        sampler = gevent.spawn(sample)
        slow = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.2")
        gevent.sleep(0.01)
        workers = [gevent.spawn(c.incr, "bp") for _ in range(200)]
        gevent.joinall([slow, *workers], raise_error=True)
        sampler_running[0] = False
        sampler.join()
        assert max(seen) <= 10
        assert c.get("bp") == b"200"


def test_in_flight_limit_wait_is_bounded_by_socket_timeout(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_in_flight=1, socket_timeout=0.1) as c:
        c.ping()
        slow = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "1")
        while c._connection.pending < 1:  # the slow command holds the only place
            gevent.sleep(0.001)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError, match="in flight"):
            c.get("k")
        assert time.monotonic() - started < 0.8  # gave up long before the server woke
        slow.join()
        gevent.sleep(1)
        assert c.get("k") is None


def test_health_check_replaces_a_silent_connection() -> None:
    pings: List[int] = []

    def script(peer: Peer) -> None:
        peer.command()
        peer.send(b"+OK\r\n")
        while True:  # then silence: a dead peer that keeps the TCP connection
            cmd = peer.command()
            if cmd[0] == b"PING":
                pings.append(1)

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=30, health_check_interval=0.1))
        assert c.set("k", "v") is True
        first = c._connection
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="health check"):
            c.get("k")
        assert time.monotonic() - started < 1.5
        assert first.state is State.CLOSED and pings
        c.close(timeout=0.1)


def test_health_check_pings_an_idle_connection(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, health_check_interval=0.05) as c:
        c.client_setname("health")
        gevent.sleep(0.4)
        info = c.client_info()
        assert info["name"] == "health"
        # PINGs went out while idle: the server saw more commands than we sent.
        stats = c.info("commandstats")
        assert stats["cmdstat_ping"]["calls"] >= 2
        assert c._connection.state is State.OPEN


_connections: List[Peer] = []


def _desync_script(peer: Peer) -> None:
    # On the first connection, answers the first command with one reply too
    # many, as if a reply had been injected into the stream: every later
    # reply is shifted by one. Later connections behave.
    _connections.append(peer)
    if len(_connections) == 1:
        peer.command()
        peer.send(b"$5\r\nOTHER\r\n$4\r\nmine\r\n")
    while True:
        cmd = peer.command()
        if cmd[0] == b"ECHO":
            peer.send(b"$%d\r\n%s\r\n" % (len(cmd[1]), cmd[1]))
        else:
            peer.send(b"$4\r\nmine\r\n")


def test_without_integrity_check_a_desync_misleads_callers() -> None:
    _connections.clear()
    with FakeServer(_desync_script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3))
        assert c.get("mine") == b"OTHER"  # someone else's reply, delivered
        c.close()


def test_integrity_check_fails_the_batch_instead_of_misdelivering() -> None:
    _connections.clear()
    with FakeServer(_desync_script) as server:
        c = geredis.Redis(**server.client_kwargs(socket_timeout=3, integrity_check=True))
        with pytest.raises(ProtocolError, match="desynchronised"):
            c.get("mine")
        assert c.get("mine") == b"mine"  # a new connection, markers intact
        c.close()


def test_integrity_check_against_a_real_server(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, integrity_check=True, decode_responses=True) as c:
        workers = [gevent.spawn(lambda i=i: (c.set(f"i{i}", i), c.get(f"i{i}"))[1]) for i in range(500)]
        gevent.joinall(workers, raise_error=True)
        assert [w.value for w in workers] == [str(i) for i in range(500)]
        assert c.dump("i1") is not None  # undecoded replies keep their place


def test_fork_child_opens_its_own_connection(r: geredis.Redis) -> None:
    r.set("parent", "p")
    parent_conn = r._connection
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            ok = r.set("child", "c") and r.get("child") == b"c" and r.get("parent") == b"p"
            code = 0 if ok and r._connection is not parent_conn else 2
        finally:
            os._exit(code)
    for i in range(50):
        assert r.get("parent") == b"p"
        r.set("parent", "p")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert r._connection is parent_conn and parent_conn.state is State.OPEN
    assert r.get("child") == b"c"


def _raised_in_another_thread(call: Callable[[], object]) -> BaseException:
    errors: List[BaseException] = []

    def use() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: B902
            errors.append(exc)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert len(errors) == 1, errors
    return errors[0]


def test_use_from_another_os_thread_is_refused(r: geredis.Redis) -> None:
    r.ping()
    assert isinstance(_raised_in_another_thread(lambda: r.get("k")), ThreadAffinityError)
    assert r._connection.pending == 0
    assert r.ping() is True


def test_loading_reply_raises_busy_loading() -> None:
    def script(peer: Peer) -> None:
        while True:
            peer.command()
            peer.send(b"-LOADING Redis is loading the dataset in memory\r\n")

    with FakeServer(script) as server:
        c = geredis.Redis(**server.client_kwargs())
        with pytest.raises(BusyLoadingError):
            c.get("k")
        c.close()


def test_max_clients_reached(redis_server: RedisServer) -> None:
    server = RedisServer(None, "--maxclients", "1").start()
    try:
        first = geredis.Redis(port=server.port)
        first.ping()
        # Other settings (a name), so not the first client's shared connection.
        second = geredis.Redis(port=server.port, retry=None, client_name="second")
        with pytest.raises(redis.ConnectionError, match="max number of clients"):
            second.ping()
        second.close()
        first.close()
    finally:
        server.cleanup()


def test_readonly_replica_and_masterdown(own_server: RedisServer) -> None:
    replica = RedisServer(None, "--replicaof", "127.0.0.1", str(own_server.port)).start()
    stale = RedisServer(
        None, "--replicaof", "127.0.0.1", str(free_port()), "--replica-serve-stale-data", "no"
    ).start()
    try:
        with geredis.Redis(port=replica.port) as c:
            with pytest.raises(ReadOnlyError):
                c.set("k", "v")
        with geredis.Redis(port=stale.port, protocol=2) as c:
            with pytest.raises(MasterDownError):
                c.get("k")
    finally:
        replica.cleanup()
        stale.cleanup()


def test_futures_respect_the_in_flight_limit_and_thread(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, max_in_flight=5, socket_timeout=10) as c:
        c.ping()
        slow = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.1")
        gevent.sleep(0.01)
        senders = [gevent.spawn(c.execute_async, "INCR", "fut") for _ in range(20)]
        gevent.sleep(0.01)
        assert c._connection.pending <= 5
        gevent.joinall([slow, *senders], raise_error=True)
        assert sorted(s.value.get(timeout=5) for s in senders) == list(range(1, 21))
        error = _raised_in_another_thread(lambda: c.execute_async("GET", "k"))
        assert isinstance(error, ThreadAffinityError)


def test_tcp_keepalive_defaults(r: geredis.Redis) -> None:
    import socket

    r.ping()
    sock = r._connection._sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
