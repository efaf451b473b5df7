"""Who owns the connections: clients with equal settings share one
ServerConnections; ``connection_pool`` (a geredis pool, or a redis-py pool
read for its settings) and its ``disconnect()``; ``close()`` as in redis-py;
typed arguments given as strings; ``patch_redis()``."""

from __future__ import annotations

import os
import ssl

import gevent
import pytest
import redis

import geredis
import geredis.server
from geredis.compat import RedisPy
from geredis.connection import State

from .conftest import RedisServer


def test_clients_with_equal_settings_share_one_connection(redis_server: RedisServer) -> None:
    a = geredis.Redis(port=redis_server.port, db=1)
    b = geredis.Redis(port=redis_server.port, db=1)
    other = geredis.Redis(port=redis_server.port, db=2)
    try:
        a.set("k", "a")
        assert b.get("k") == b"a"
        assert a._shared is b._shared and a._connection is b._connection
        other.ping()
        assert other._shared is not a._shared
        assert a._shared.users == 2
    finally:
        for c in (a, b, other):
            c.close()


def test_close_releases_and_the_last_client_closes(redis_server: RedisServer) -> None:
    a = geredis.Redis(port=redis_server.port, db=3)
    b = geredis.Redis(port=redis_server.port, db=3)
    a.ping()
    conn = a._connection
    assert conn is not None
    a.close()
    assert conn.state is State.OPEN and b.ping() is True  # b still uses it
    b.close()
    assert conn.state is State.CLOSED
    assert a.ping() is True and a._connection is not conn  # reconnects, as redis-py
    a.close(final=True)
    with pytest.raises(geredis.ClientClosedError):
        a.ping()
    b.close()


def test_a_redis_py_pool_is_read_for_its_settings(redis_server: RedisServer) -> None:
    pool = redis.BlockingConnectionPool.from_url(
        f"{redis_server.url}/4?socket_timeout=3", max_connections=50, decode_responses=True
    )
    clients = [geredis.Redis(connection_pool=pool) for _ in range(20)]
    try:
        views = {id(c.connection_pool) for c in clients}
        assert len(views) == 1  # one geredis pool per redis-py pool
        view = clients[0].connection_pool
        assert view.connection_kwargs["db"] == 4 and view.connection_kwargs["socket_timeout"] == 3
        assert view.connection_class is redis.Connection
        assert isinstance(view.get_encoder(), redis._parsers.encoders.Encoder)
        gevent.joinall([gevent.spawn(c.set, f"k{i}", i) for i, c in enumerate(clients)],
                       raise_error=True)
        assert [c.get(f"k{i}") for i, c in enumerate(clients)] == [str(i) for i in range(20)]
        assert len({id(c._connection) for c in clients}) == 1
        assert not pool._connections  # redis-py's own pool stays unused
    finally:
        for c in clients:
            c.close()


def test_pool_classes_map_to_unix_and_tls_settings() -> None:
    unix = geredis.Redis(connection_pool=redis.ConnectionPool.from_url("unix:///tmp/r.sock?db=2"))
    assert unix.settings.unix_socket_path == "/tmp/r.sock" and unix.settings.db == 2
    assert unix.connection_pool.connection_class is redis.UnixDomainSocketConnection
    assert unix.connection_pool.connection_kwargs["path"] == "/tmp/r.sock"
    tls = geredis.Redis(connection_pool=redis.ConnectionPool.from_url(
        "rediss://example.invalid:6390/0?ssl_cert_reqs=none"))
    assert tls.settings.ssl and tls.settings.verify_mode is ssl.CERT_NONE
    assert tls.connection_pool.connection_class is redis.SSLConnection
    # What RQ's scheduler does: rebuild a client from class and kwargs.
    rebuilt = geredis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=tls.connection_pool.connection_class,
        **tls.connection_pool.connection_kwargs))
    assert rebuilt.settings.ssl and rebuilt.settings.host == "example.invalid"
    for c in (unix, tls, rebuilt):
        c.close()


def test_what_cannot_be_served_is_refused_clearly() -> None:
    sentinel_pool = redis.sentinel.SentinelConnectionPool("mymaster", redis.sentinel.Sentinel([]))
    with pytest.raises(ValueError, match="SentinelManagedConnection"):
        geredis.Redis(connection_pool=sentinel_pool)
    with pytest.raises(ValueError, match="set db on the pool"):
        geredis.Redis(connection_pool=redis.ConnectionPool(), db=3)
    c = geredis.Redis(connection_pool=redis.ConnectionPool(), max_dedicated=5)
    assert c.connection_pool.max_connections == 6
    with pytest.raises(NotImplementedError, match="no redis-py Connection objects"):
        c.connection_pool.get_connection()
    c.close()


def test_disconnect_lets_commands_in_flight_finish_and_reconnects(r: geredis.Redis) -> None:
    r.ping()
    old = r._connection
    assert old is not None
    slow = gevent.spawn(r.execute_command, "DEBUG", "SLEEP", "0.2")
    incrs = [gevent.spawn(r.incr, "d") for _ in range(50)]
    gevent.sleep(0.05)
    r.connection_pool.disconnect()
    assert r.get("fresh") is None  # a new connection, while the old one drains
    assert r._connection is not old
    gevent.joinall([slow] + incrs, raise_error=True)
    assert sorted(g.value for g in incrs) == list(range(1, 51))
    gevent.sleep(0.05)
    assert old.state is State.CLOSED
    r.connection_pool.reset()
    assert r.get("d") == b"50"


def test_abortive_disconnect_fails_what_is_in_flight(r: geredis.Redis) -> None:
    waiting = gevent.spawn(r.blpop, ["nothing"], 5)
    slow = gevent.spawn(r.execute_command, "DEBUG", "SLEEP", "0.3")
    gevent.sleep(0.1)
    r._shared.disconnect(abort=True)
    gevent.joinall([waiting, slow])
    assert isinstance(waiting.exception, redis.ConnectionError)
    assert isinstance(slow.exception, redis.ConnectionError)
    assert r.ping() is True and r._dedicated.in_use == 0


def test_connection_kwargs_changes_apply_to_new_connections(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port, db=5)
    c.ping()
    first = c._shared
    c.connection_pool.connection_kwargs.update({"socket_timeout": 42})  # as RQ does
    assert c.connection_pool.connection_kwargs["socket_timeout"] == 42
    assert c.settings.socket_timeout == 42 and c._timeout == 42
    assert c.ping() is True and c._shared is not first
    with pytest.raises(ValueError, match="protocol"):
        c.connection_pool.connection_kwargs["protocol"] = 4
    assert c.connection_pool.connection_kwargs["protocol"] is None  # unchanged
    c.connection_pool.connection_kwargs["db"] = "6"
    c.set("where", "six")
    assert geredis.Redis(port=redis_server.port, db=6).get("where") == b"six"
    geredis.server.close_all()
    c.close()


@pytest.mark.parametrize("protocol", ["2", "3", 2, 3])
def test_protocol_given_as_a_string_behaves_as_the_number(
    redis_server: RedisServer, protocol: object,
) -> None:
    with geredis.Redis(port=redis_server.port, protocol=protocol) as c:
        assert c.connection_pool.get_protocol() == int(protocol)  # type: ignore[call-overload]
        shape = c.config_get("maxmemory", "timeout")
        reference = RedisPy(port=redis_server.port, protocol=int(protocol))  # type: ignore[call-overload]
        assert shape == reference.config_get("maxmemory", "timeout")
        assert set(shape) == {b"maxmemory", b"timeout"} or set(shape) == {"maxmemory", "timeout"}
        reference.close()


def test_typed_arguments_from_settings_files(redis_server: RedisServer) -> None:
    with geredis.Redis(port=str(redis_server.port), db="1", socket_timeout="5",  # type: ignore[arg-type]
                       decode_responses="true") as c:
        assert c.settings.port == redis_server.port and c.settings.db == 1
        assert c.set("s", "v") and c.get("s") == "v"
    for bad in ({"protocol": "4"}, {"decode_responses": "maybe"}, {"db": "one"},
                {"socket_timeout": "soon"}):
        with pytest.raises(ValueError):
            geredis.Redis(**bad)  # type: ignore[arg-type]


def test_patch_redis_makes_redis_build_geredis_clients(redis_server: RedisServer) -> None:
    original = redis.Redis
    geredis.patch_redis()
    try:
        geredis.patch_redis()  # twice is fine
        assert redis.Redis is geredis.Redis and redis.StrictRedis is geredis.Redis
        c = redis.from_url(f"{redis_server.url}/0", protocol=3, legacy_responses=False)
        assert isinstance(c, geredis.Redis)  # built a never-seen callback table: no recursion
        assert c.ping() is True
        d = redis.Redis(connection_pool=redis.ConnectionPool(port=redis_server.port))
        assert isinstance(d, geredis.Redis) and d.ping() is True
        c.close()
        d.close()
    finally:
        geredis.unpatch_redis()
    assert redis.Redis is original and redis.client.Redis is original


def test_fork_child_gets_its_own_dedicated_connections(r: geredis.Redis) -> None:
    assert r.blpop(["f"], 0.01) is None  # an idle dedicated connection now exists
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            r.rpush("f", "x")
            code = 0 if r.blpop(["f"], 1) == (b"f", b"x") else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert r.blpop(["f"], 0.01) is None and r.ping() is True


def test_each_thread_gets_its_own_connection_from_one_pool(redis_server: RedisServer) -> None:
    # A redis-py pool shared by threads (django-redis keeps them process-wide):
    # each thread's clients share that thread's connection (its event loop's).
    import threading

    pool = redis.ConnectionPool(port=redis_server.port, db=7)
    owners: dict = {}

    def use(name: str) -> None:
        clients = [geredis.Redis(connection_pool=pool) for _ in range(3)]
        for i, c in enumerate(clients):
            c.set(f"{name}:{i}", name)
        owners[name] = [c._shared for c in clients]  # kept alive: ids stay unique
        assert all(c.get(f"{name}:{i}") == name.encode() for i, c in enumerate(clients))
        geredis.server.close_all()

    threads = [threading.Thread(target=use, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for name in ("t0", "t1"):
        assert all(owner is owners[name][0] for owner in owners[name])
    assert owners["t0"][0] is not owners["t1"][0]
