"""The client against a real redis-server: commands, encoding, errors, refusals,
handshake options, close, repr and the future form."""

from __future__ import annotations

from typing import Any, Dict
from unittest import mock

import gevent
import pytest
import redis
from redis.exceptions import AuthenticationError, DataError, ResponseError

import geredis
from geredis import ClientClosedError, SharedConnectionError, State

from .conftest import RedisServer


def test_set_get_and_isinstance(r: geredis.Redis) -> None:
    assert isinstance(r, redis.Redis)
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.get("missing") is None
    assert r.ping() is True


def test_decode_responses(rd: geredis.Redis) -> None:
    rd.set("k", "é")
    assert rd.get("k") == "é"
    rd.hset("h", mapping={"a": "1", "b": "2"})
    assert rd.hgetall("h") == {"a": "1", "b": "2"}


def test_encoding_latin1(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port, encoding="latin-1", decode_responses=True) as c:
        c.set("latin", "é")
        assert c.execute_command("STRLEN", "latin") == 1
        assert c.get("latin") == "é"


def test_invalid_utf8_fails_only_its_caller(r: geredis.Redis, redis_server: RedisServer) -> None:
    r.set("bad", b"\xff\xfe")
    r.set("good", "ok")
    with geredis.Redis(port=redis_server.port, decode_responses=True) as c:
        with pytest.raises(UnicodeDecodeError):
            c.get("bad")
        assert c.get("good") == "ok"


def test_never_decode_option(rd: geredis.Redis) -> None:
    rd.set("k", "v")
    dumped = rd.dump("k")  # redis-py passes NEVER_DECODE for DUMP
    assert isinstance(dumped, bytes)
    rd.restore("k2", 0, dumped)
    assert rd.get("k2") == "v"


def test_error_reply_goes_to_its_caller_only(r: geredis.Redis) -> None:
    r.set("s", "x")
    conn_before = r._connection
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.lpush("s", "a")
    assert r.get("s") == b"x"
    assert r._connection is conn_before and conn_before.state is State.OPEN


def test_noscript_maps_to_redis_py_class(r: geredis.Redis) -> None:
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha("0" * 40, 0)


@pytest.mark.parametrize("value", [None, True, object(), [1], {"a": 1}])
def test_bad_argument_type_is_refused_before_sending(r: geredis.Redis, value: object) -> None:
    r.ping()
    with pytest.raises(DataError):
        r.set("k", value)  # type: ignore[arg-type]
    assert r._connection.pending == 0
    assert r.exists("k") == 0


def test_bad_argument_on_a_fresh_client_opens_nothing(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    with pytest.raises(DataError):
        c.set("k", None)  # type: ignore[arg-type]
    assert c._connection is None
    c.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.select(1),
        lambda c: c.execute_command("MULTI"),
        lambda c: c.execute_command("watch", "k"),
        lambda c: c.execute_command("SUBSCRIBE", "ch"),
        lambda c: c.execute_command("MONITOR"),
        lambda c: c.client_reply("OFF"),
        lambda c: c.execute_command("CLIENT", "REPLY", "SKIP"),
        lambda c: c.execute_command(b"hello", 3),
        lambda c: c.execute_command("AUTH", "x"),
        lambda c: c.execute_command("QUIT"),
    ],
)
def test_commands_that_cannot_share_are_refused(r: geredis.Redis, call) -> None:  # type: ignore[no-untyped-def]
    r.ping()
    with pytest.raises(SharedConnectionError) as info:
        call(r)
    assert "geredis" in str(info.value) or "use" in str(info.value) or "pass" in str(info.value)
    assert r._connection.pending == 0
    assert r.ping() is True


def test_xread_without_block_is_fine(r: geredis.Redis) -> None:
    r.xadd("s", {"f": "v"})
    assert len(r.xread({"s": 0})[0][1]) == 1


def test_client_setname_applies_to_new_connections(r: geredis.Redis) -> None:
    r.client_setname("first")
    assert r.client_getname() == "first"
    r._connection.close()  # next command opens a new connection
    assert r.client_getname() == "first"


def test_password_db_and_name_handshake(redis_server: RedisServer) -> None:
    server = RedisServer(None, "--requirepass", "s3cret").start()
    try:
        for protocol in (2, 3):
            url = f"redis://:s3cret@127.0.0.1:{server.port}/2"
            with geredis.from_url(url, protocol=protocol, client_name="gx") as c:
                c.set("k", "in-db-2")
                assert redis.utils.str_if_bytes(c.client_getname()) == "gx"
                assert "s3cret" not in repr(c)
                info = c.client_info()
                assert info["db"] == 2
            raw = redis.Redis(port=server.port, password="s3cret", db=2, protocol=2)
            assert raw.get("k") == b"in-db-2"
            raw.close()
        bad = geredis.Redis(port=server.port, password="wrong")
        with pytest.raises(AuthenticationError):
            bad.ping()
        assert "wrong" not in repr(bad)
        bad.close()
        noauth = geredis.Redis(port=server.port, protocol=2)
        with pytest.raises(AuthenticationError):
            noauth.ping()
        noauth.close()
    finally:
        server.cleanup()


def test_acl_user(redis_server: RedisServer) -> None:
    admin = redis.Redis(port=redis_server.port)
    admin.acl_setuser("alice", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    admin.close()
    with geredis.Redis(port=redis_server.port, username="alice", password="pw") as c:
        assert c.acl_whoami() == "alice"
    bad = geredis.Redis(port=redis_server.port, username="alice", password="nope")
    with pytest.raises(AuthenticationError):
        bad.ping()
    bad.close()


def test_unix_socket_and_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "redis.sock")
    server = RedisServer(None, "--unixsocket", path).start()
    try:
        with geredis.from_url(f"unix://{path}?db=3") as c:
            c.set("k", "v")
            assert c.get("k") == b"v"
            assert c.client_info()["db"] == 3
            assert path in repr(c)
    finally:
        server.cleanup()


@pytest.mark.parametrize("protocol", [None, 2, 3])
def test_protocol_shapes_match_redis_py(redis_server: RedisServer, protocol) -> None:  # type: ignore[no-untyped-def]
    with geredis.Redis(port=redis_server.port, protocol=protocol) as g:
        ref = redis.Redis(port=redis_server.port, protocol=protocol)
        try:
            g.delete("h", "z")
            g.hset("h", mapping={"a": 1})
            g.zadd("z", {"m": 1.5})
            assert g.hgetall("h") == ref.hgetall("h")
            assert g.zrange("z", 0, -1, withscores=True) == ref.zrange("z", 0, -1, withscores=True)
            hello = g.connection_pool.connection_kwargs["protocol"]
            assert hello == protocol
        finally:
            ref.close()


def test_constructor_refuses_what_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="ssl_validate_ocsp"):
        geredis.Redis(ssl_validate_ocsp=True)
    with pytest.raises(ValueError, match="single_connection_client"):
        geredis.Redis(single_connection_client=True)
    with pytest.raises(TypeError, match="bogus"):
        geredis.Redis(bogus=1)
    with pytest.raises(ValueError):
        geredis.from_url("http://localhost")
    with pytest.raises(ValueError, match="bogus"):
        geredis.from_url("redis://localhost/0?bogus=1")
    geredis.Redis(retry_on_timeout=False, max_connections=None).close()  # defaults are fine


@pytest.mark.parametrize("option", [
    {"parser": "bogus"}, {"max_dedicated": 0}, {"max_dedicated": "many"},
    {"dedicated_timeout": -1}, {"dedicated_timeout": "soon"},
    {"pipeline_threshold": "x"}, {"pipeline_threshold": -1}, {"pipeline_threshold": True},
])
def test_geredis_options_are_checked_when_the_client_is_built(option: Dict[str, Any]) -> None:
    [name] = option
    with pytest.raises(ValueError, match=f"invalid {name}="):
        geredis.Redis(**option)


def test_geredis_options_given_as_strings_are_read() -> None:
    c = geredis.Redis(parser="python", max_dedicated="3", dedicated_timeout="1.5",
                      pipeline_threshold="10")
    pool = c.connection_pool
    assert (pool.parser, pool.max_dedicated, pool.dedicated_timeout, c.pipeline_threshold) == (
        "python", 3, 1.5, 10)
    c.close()


def test_repr_shows_address_state_and_pending(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port, password=None)
    assert f"127.0.0.1:{redis_server.port}" in repr(c) or f"localhost:{redis_server.port}" in repr(c)
    assert "IDLE" in repr(c)
    c.ping()
    assert "OPEN pending=0" in repr(c)
    slow = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.2")
    gevent.sleep(0.05)
    assert "OPEN pending=1" in repr(c)
    assert "pending=1" in repr(c._connection)
    slow.join()
    c.close()
    assert "CLOSED" in repr(c)


def test_close_lets_queued_commands_finish_then_the_next_command_reconnects(
    redis_server: RedisServer,
) -> None:
    c = geredis.Redis(port=redis_server.port)
    c.ping()
    first = c._connection
    workers = [gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.1")] + [
        gevent.spawn(c.incr, "closing-counter") for _ in range(50)
    ]
    gevent.sleep(0)  # all 51 are queued
    c.close()
    gevent.joinall(workers)
    assert all(w.successful() for w in workers), [w.exception for w in workers]
    assert first is not None and first.state is State.CLOSED
    assert c.get("closing-counter") == b"50"  # as redis-py: a new connection
    assert c._connection is not first
    c.close()


def test_close_final_refuses_new_commands(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    c.ping()
    c.close(final=True)
    with pytest.raises(ClientClosedError):
        c.get("k")
    with pytest.raises(ClientClosedError):
        c.pubsub()
    assert "CLOSED" in repr(c)


def test_close_before_first_connect_and_twice(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port)
    c.close()
    c.close()
    assert c.ping() is True
    c.close(final=True)
    c.close()
    with pytest.raises(redis.ConnectionError):  # ClientClosedError is one
        c.ping()


def test_context_manager(redis_server: RedisServer) -> None:
    with geredis.Redis(port=redis_server.port) as c:
        c.set("cm", 1)
    assert c._connection.state is State.CLOSED


def test_execute_async_and_futures(r: geredis.Redis) -> None:
    results = [r.execute_async("SET", f"f{i}", i) for i in range(100)]
    assert all(res.get(timeout=5) is True for res in results)
    gets = [r.futures.get(f"f{i}") for i in range(100)]
    assert [g.get(timeout=5) for g in gets] == [str(i).encode() for i in range(100)]
    hgetall = r.futures.hgetall("nope")
    assert hgetall.get(timeout=5) == {}
    err = r.futures.lpush("f1", "x")
    with pytest.raises(ResponseError):
        err.get(timeout=5)


def test_mixin_helpers(r: geredis.Redis) -> None:
    assert r.mget([]) == []  # EMPTY_RESPONSE: the server error becomes []
    r.mset({"a": 1, "b": 2})
    assert r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert sorted(r.scan_iter(match="[ab]")) == [b"a", b"b"]
    assert "redis_version" in r.info()


def test_a_slot_keeps_its_timeout_when_the_late_reply_comes(redis_server: RedisServer) -> None:
    # Each slot is resolved exactly once: the TimeoutError at the deadline
    # stands, and the late reply, when the reader pops the slot, is dropped.
    from geredis.slots import BatchSlot, FutureSlot

    with geredis.Redis(port=redis_server.port, socket_timeout=0.2) as c:
        c.ping()
        conn = c._connection
        assert conn is not None
        single, batch = FutureSlot(), BatchSlot(1)
        conn.submit(c._packer.pack(("DEBUG", "SLEEP", "0.4")), single, False)
        conn.submit(c._packer.pack(("ECHO", "late")), batch, False)
        with pytest.raises(redis.TimeoutError):
            single.get()
        with pytest.raises(redis.TimeoutError):
            batch.result.get()
        gevent.sleep(0.5)  # the late replies arrive and pop their slots
        assert conn.pending == 0
        assert isinstance(single.exception, redis.TimeoutError)
        assert isinstance(batch.result.exception, redis.TimeoutError)
        assert c.ping()


def test_max_connections_bounds_the_dedicated_connections(redis_server: RedisServer) -> None:
    c = geredis.Redis(port=redis_server.port, max_connections="3")
    assert c.connection_pool.max_connections == 3 and c.connection_pool.max_dedicated == 2
    c.close()
    c = geredis.Redis(port=redis_server.port, max_connections=3, max_dedicated=7)
    assert c.connection_pool.max_dedicated == 7
    c.close()
    with pytest.raises(ValueError, match="invalid max_connections=1"):
        geredis.Redis(max_connections=1)


# -- get/set skip execute_command only while nothing replaced it --------------------


def test_plain_get_set_pack_every_argument_type(r: geredis.Redis) -> None:
    # get()/set() pack str arguments with hiredis directly; the rest take Packer.pack.
    r.set(b"bk", 1.5)
    assert r.get("bk") == b"1.5"
    r.set("ik", 7)
    assert r.get(b"ik") == b"7"
    r.set("é", "ü")
    assert r.get("é") == "ü".encode()
    r.set(memoryview(b"xxkxx")[::2], bytearray(b"v"))  # non-contiguous: b"xkx"
    assert r.get("xkx") == b"v"
    assert r.get(7) is None
    for bad in (None, True, {"a": 1}):
        with pytest.raises(DataError):
            r.set("k", bad)
        with pytest.raises(DataError):
            r.get(bad)
    assert r.get("missing") is None and r.ping()  # nothing half-sent


def test_plain_get_set_through_a_replaced_execute_command(r: geredis.Redis,
                                                           redis_server: RedisServer) -> None:
    seen: list = []

    class Prefixed(geredis.Redis):  # a subclass that rewrites keys, as some apps do
        def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(args[0])
            return super().execute_command(args[0], "p:" + args[1], *args[2:], **options)

    with Prefixed(port=redis_server.port) as c:
        assert c.set("k", "v") is True and c.get("k") == b"v"
    assert seen == ["SET", "GET"] and r.get("p:k") == b"v"

    with mock.patch.object(r, "execute_command", return_value=b"mocked") as patched:
        assert r.get("k") == b"mocked"  # an instance patch, as tests do
        assert r.set("k", "w") == b"mocked"
    assert [c.args for c in patched.call_args_list] == [("GET", "k"), ("SET", "k", "w")]

    with mock.patch.object(geredis.Redis, "execute_command", autospec=True,
                           side_effect=geredis.Redis.execute_command) as patched:
        assert r.set("k", "x") is True and r.get("k") == b"x"  # a class patch
    assert [c.args[1:] for c in patched.call_args_list] == [("SET", "k", "x"), ("GET", "k")]
    assert r.get("k") == b"x" and r.get("p:k") == b"v"
