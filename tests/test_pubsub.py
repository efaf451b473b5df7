"""Pub/sub against a real redis-server: subscriptions with handlers, unsubscribe
bookkeeping, get_message/listen, RESP2 and RESP3, many publishers, handler
errors, the bounded queue, reconnects and run_in_thread."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any, Dict, Iterator, List, Tuple

import gevent
import pytest
import redis
from gevent.event import Event
from redis.exceptions import ConnectionError, PubSubError, ResponseError

import geredis
from geredis.pubsub import PubSub, ReconnectInfo, SubscriberState

from .conftest import RedisServer

Message = Dict[str, Any]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def client(redis_server: RedisServer, protocol: int) -> Iterator[geredis.Redis]:
    c = geredis.Redis(port=redis_server.port, host="127.0.0.1", protocol=protocol)
    yield c
    c.close()


def msg(type_: str, channel: Any, data: Any, pattern: Any = None) -> Message:
    return {"type": type_, "pattern": pattern, "channel": channel, "data": data}


def drain(p: PubSub, timeout: float = 0.05) -> List[Message]:
    out = []
    while (m := p.get_message(timeout=timeout)) is not None:
        out.append(m)
    return out


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.005)


def test_handlers_for_channels_patterns_and_shard_channels(client: geredis.Redis) -> None:
    got: List[Message] = []
    with client.pubsub() as p:
        p.subscribe("plain", **{"with-handler": got.append})
        p.psubscribe(**{"news.*": got.append})
        p.ssubscribe(shard=got.append)
        assert p.state is SubscriberState.OPEN and p.subscribed
        assert p.channels == {b"plain": None, b"with-handler": got.append}
        assert p.patterns == {b"news.*": got.append}
        assert p.shard_channels == {b"shard": got.append}
        assert drain(p) == [
            msg("subscribe", b"plain", 1), msg("subscribe", b"with-handler", 2),
            msg("psubscribe", b"news.*", 3), msg("ssubscribe", b"shard", 1),
        ]  # fmt: skip
        assert client.publish("with-handler", "a") == 1
        assert client.publish("news.eu", "b") == 1
        assert client.spublish("shard", "c") == 1
        assert client.publish("plain", "d") == 1
        assert p.get_message(timeout=2) == msg("message", b"plain", b"d")
        wait_until(lambda: len(got) == 3)
        assert got == [
            msg("message", b"with-handler", b"a"),
            msg("pmessage", b"news.eu", b"b", pattern=b"news.*"),
            msg("smessage", b"shard", b"c"),
        ]


def test_decoded_messages(redis_server: RedisServer, protocol: int) -> None:
    with geredis.Redis(port=redis_server.port, decode_responses=True, protocol=protocol) as c:
        with c.pubsub(ignore_subscribe_messages=True) as p:
            p.subscribe("é")
            p.psubscribe(b"p*")
            assert p.channels == {"é": None} and p.patterns == {"p*": None}
            c.publish("é", "ü")
            c.publish("px", "1")
            assert p.get_message(timeout=2) == msg("message", "é", "ü")
            assert p.get_message(timeout=2) == msg("pmessage", "px", "1", pattern="p*")
            p.ping()
            assert p.get_message(timeout=2) == msg("pong", None, "")


def test_python_parser(redis_server: RedisServer, protocol: int) -> None:
    with geredis.Redis(port=redis_server.port, protocol=protocol, parser="python") as c:
        got: List[Message] = []
        with c.pubsub() as p:
            p.subscribe(a=got.append)
            p.psubscribe("p*")
            c.publish("a", "1")
            c.publish("pz", "2")
            assert drain(p)[-1] == msg("pmessage", b"pz", b"2", pattern=b"p*")
            assert got == [msg("message", b"a", b"1")]
            p.unsubscribe()
            p.punsubscribe()
            assert not p.subscribed


def test_undecodable_message_is_dropped(
    redis_server: RedisServer, protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    with geredis.Redis(port=redis_server.port, protocol=protocol, decode_responses=True) as c:
        with c.pubsub(ignore_subscribe_messages=True) as p:
            p.subscribe("u")
            c.publish("u", b"\xff\xfe")
            c.publish("u", "fine")
            assert p.get_message(timeout=2) == msg("message", "u", "fine")
            assert "cannot decode" in caplog.text


def test_messages_have_redis_py_shapes(redis_server: RedisServer, client: geredis.Redis) -> None:
    def script(p: Any, publish: Any) -> List[Message]:
        p.subscribe("a", "b")
        p.psubscribe("p*")
        p.ssubscribe("s")
        out = [p.get_message(timeout=2) for _ in range(4)]
        publish("PUBLISH", "a", "1")
        publish("PUBLISH", "px", "2")
        publish("SPUBLISH", "s", "3")
        p.ping("hello")
        out += [p.get_message(timeout=2) for _ in range(4)]
        p.unsubscribe("a")
        p.punsubscribe()
        p.sunsubscribe("s")
        p.unsubscribe()
        out += [p.get_message(timeout=2) for _ in range(4)]
        return out

    reference = redis.Redis(port=redis_server.port, protocol=client.settings.protocol)
    with reference.pubsub() as rp:
        expected = script(rp, reference.execute_command)
    reference.close()
    with client.pubsub() as p:
        assert script(p, client.execute_command) == expected
    assert None not in expected


def test_unsubscribe_bookkeeping(client: geredis.Redis) -> None:
    with client.pubsub() as p:
        p.subscribe("a", "b", c=lambda m: None)
        p.psubscribe("x*")
        p.ssubscribe("s")
        drain(p)
        p.unsubscribe("a")
        assert set(p.channels) == {b"b", b"c"} and p.subscribed
        p.unsubscribe()  # all channels
        assert p.channels == {} and p.subscribed
        p.punsubscribe("x*")
        assert p.patterns == {} and p.subscribed
        p.sunsubscribe()
        assert p.shard_channels == {} and not p.subscribed
        confirmations = drain(p)
        assert confirmations[0] == msg("unsubscribe", b"a", 3)
        # An all-unsubscribe confirms in the server's order; counts go down
        # (shard channels are counted on their own).
        assert {m["channel"] for m in confirmations[1:3]} == {b"b", b"c"}
        assert [m["data"] for m in confirmations] == [3, 2, 1, 0, 0]
        assert [m["type"] for m in confirmations[3:]] == ["punsubscribe", "sunsubscribe"]
        # Nothing subscribed: the server still answers an UNSUBSCRIBE.
        p.unsubscribe()
        assert p.get_message(timeout=2) == msg("unsubscribe", None, 0)
        assert list(p.listen()) == []


def test_unsubscribe_counts_reach_zero(client: geredis.Redis) -> None:
    with client.pubsub() as p:
        p.subscribe("a", "b")
        p.psubscribe("p*")
        drain(p)
        p.unsubscribe("a", "b")
        p.punsubscribe("p*")
        assert [(m["channel"], m["data"]) for m in drain(p)] == [(b"a", 2), (b"b", 1), (b"p*", 0)]
        assert not p.subscribed
        assert p.state is SubscriberState.OPEN  # the connection stays for reuse
        p.subscribe("again")
        assert p.get_message(timeout=2) == msg("subscribe", b"again", 1)


def test_get_message_timeouts(client: geredis.Redis) -> None:
    with client.pubsub() as p:
        started = time.monotonic()
        assert p.get_message() is None  # not subscribed, no wait
        assert p.get_message(timeout=0.1) is None
        assert 0.08 <= time.monotonic() - started < 2
        p.subscribe("t")
        assert p.get_message(timeout=1) == msg("subscribe", b"t", 1)
        started = time.monotonic()
        assert p.get_message() is None
        assert p.get_message(timeout=0.2) is None
        assert 0.18 <= time.monotonic() - started < 2
        gevent.spawn_later(0.05, client.publish, "t", "late")
        started = time.monotonic()
        assert p.get_message(timeout=None) == msg("message", b"t", b"late")
        assert time.monotonic() - started < 3
        client.publish("t", "x")
        wait_until(lambda: p._delivery.inbox)
        assert p.get_message(timeout=0) == msg("message", b"t", b"x")


def test_ignore_subscribe_messages(client: geredis.Redis) -> None:
    with client.pubsub(ignore_subscribe_messages=True) as p:
        p.subscribe("i")
        client.publish("i", "1")
        assert p.get_message(timeout=2) == msg("message", b"i", b"1")
    with client.pubsub() as p:
        p.subscribe("i")
        client.publish("i", "2")
        expected = msg("message", b"i", b"2")
        assert p.get_message(ignore_subscribe_messages=True, timeout=2) == expected


def test_listen_ends_when_unsubscribed(client: geredis.Redis) -> None:
    with client.pubsub() as p:
        p.subscribe("l")

        def later() -> None:
            client.publish("l", "1")
            gevent.sleep(0.05)
            p.unsubscribe("l")

        g = gevent.spawn(later)
        assert list(p.listen()) == [
            msg("subscribe", b"l", 1), msg("message", b"l", b"1"), msg("unsubscribe", b"l", 0)
        ]
        g.join()


def test_handler_exception_does_not_stop_delivery(client: geredis.Redis) -> None:
    got: List[bytes] = []
    errors: List[Tuple[BaseException, Message]] = []

    def handler(m: Message) -> None:
        if m["data"] == b"boom":
            raise ValueError("boom")
        got.append(m["data"])

    with client.pubsub(on_handler_error=lambda e, m: errors.append((e, m))) as p:
        p.subscribe(h=handler)
        for data in ("1", "boom", "2"):
            client.publish("h", data)
        wait_until(lambda: len(got) == 2)
        assert got == [b"1", b"2"]
        assert len(errors) == 1 and isinstance(errors[0][0], ValueError)
        assert errors[0][1] == msg("message", b"h", b"boom")


def test_handler_exception_default_report(
    client: geredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    hub = gevent.get_hub()
    reported: List[Any] = []
    watching = hub.handle_error  # the crash detector's; restored below
    hub.handle_error = lambda context, *exc_info: reported.append((context, exc_info[1]))
    got: List[bytes] = []

    def handler(m: Message) -> None:
        if m["data"] == b"boom":
            raise KeyError("boom")
        got.append(m["data"])

    try:
        with caplog.at_level(logging.ERROR, logger="geredis.pubsub"):
            with client.pubsub() as p:
                p.subscribe(d=handler)
                client.publish("d", "boom")
                client.publish("d", "after")
                wait_until(lambda: got == [b"after"])
    finally:
        hub.handle_error = watching
    assert len(reported) == 1 and isinstance(reported[0][1], KeyError)
    assert "b'd'" in reported[0][0]
    assert any("raised" in r.message and r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.timeout(60)
def test_many_publishers_nothing_lost_order_kept(client: geredis.Redis) -> None:
    publishers, each = 1000, 10
    seen: Dict[int, List[int]] = {i: [] for i in range(publishers)}

    def handler(m: Message) -> None:
        i, j = m["data"].split(b":")
        seen[int(i)].append(int(j))

    with client.pubsub() as p:
        p.subscribe(fanout=handler)
        p.ssubscribe(sfanout=handler)

        def publish(i: int) -> None:
            for j in range(each):
                command = client.publish if j % 2 else client.spublish
                assert command("sfanout" if j % 2 == 0 else "fanout", f"{i}:{j}") == 1

        gevent.joinall([gevent.spawn(publish, i) for i in range(publishers)], raise_error=True)
        wait_until(lambda: sum(map(len, seen.values())) == publishers * each, timeout=30)
        # Both kinds share one connection: per publisher, arrival is send order.
        assert all(v == list(range(each)) for v in seen.values())
        assert p.dropped == 0


def test_slow_handler_bounded_queue_drops_oldest(
    client: geredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    release, started = Event(), Event()
    got: List[int] = []

    def slow(m: Message) -> None:
        started.set()
        release.wait()
        got.append(int(m["data"]))

    with caplog.at_level(logging.WARNING, logger="geredis.pubsub"):
        with client.pubsub(max_queued=10) as p:
            p.subscribe(slow=slow)
            client.publish("slow", 0)
            started.wait(5)
            for i in range(1, 101):
                client.publish("slow", i)
            client.publish("other", "x")
            p.ping()  # the reader kept draining: its pong came through
            wait_until(lambda: p.dropped == 90)
            release.set()
            wait_until(lambda: len(got) == 11)
            assert got == [0, *range(91, 101)]
    warnings = [r for r in caplog.records if "dropping the oldest" in r.message]
    assert len(warnings) == 1  # one per overflow episode


def test_get_message_queue_is_bounded_too(client: geredis.Redis) -> None:
    with pytest.raises(ValueError):
        client.pubsub(max_queued=0)
    with client.pubsub(max_queued=5, ignore_subscribe_messages=True) as p:
        p.subscribe("q")
        for i in range(20):
            client.publish("q", i)
        p.ping()  # its pong is queued last: every message was read before it
        assert p.dropped == 16
        assert [m["data"] for m in drain(p)] == [b"16", b"17", b"18", b"19", b""]


def test_main_client_not_blocked_by_slow_handler(client: geredis.Redis) -> None:
    release = Event()
    with client.pubsub() as p:
        p.subscribe(stuck=lambda m: release.wait())
        client.publish("stuck", "x")
        client.set("k", "v")
        started = time.monotonic()
        for _ in range(100):
            assert client.get("k") == b"v"
        client.publish("stuck", "y")
        assert time.monotonic() - started < 2
        p.ping()  # the subscription connection answers too
        release.set()


def test_error_reply_goes_to_the_caller_and_rolls_back(redis_server: RedisServer) -> None:
    admin = geredis.Redis(port=redis_server.port)
    admin.execute_command("ACL", "SETUSER", "ps-test", "reset", "on", ">pw", "+@all", "~*", "&ok*")
    try:
        with geredis.Redis(port=redis_server.port, username="ps-test", password="pw") as c:
            with c.pubsub(ignore_subscribe_messages=True) as p:
                p.subscribe(ok1=None)
                with pytest.raises(ResponseError, match="no permissions"):  # NOPERM
                    p.subscribe("ok2", "forbidden")
                assert p.channels == {b"ok1": None}
                admin.publish("ok1", "still")
                assert p.get_message(timeout=2) == msg("message", b"ok1", b"still")
    finally:
        admin.execute_command("ACL", "DELUSER", "ps-test")
        admin.close()


def test_first_connection_failure_raises_and_forgets() -> None:
    from .conftest import free_port

    c = geredis.Redis(port=free_port(), host="127.0.0.1")
    p = c.pubsub()
    with pytest.raises(ConnectionError):
        p.subscribe("a", b=lambda m: None)
    assert p.channels == {} and not p.subscribed and p.state is SubscriberState.IDLE
    p.close()
    c.close()


def test_server_restart_resubscribes_and_reports_gap(
    own_server: RedisServer, protocol: int
) -> None:
    c = geredis.Redis(port=own_server.port, host="127.0.0.1", protocol=protocol, socket_timeout=0.3)
    got: List[Message] = []
    notices: List[ReconnectInfo] = []
    p = c.pubsub(on_reconnect=notices.append, reconnect_backoff=(0.01, 0.1))
    p.subscribe(ch=got.append)
    p.psubscribe(**{"pat*": got.append})
    p.ssubscribe(sh=got.append)
    drain(p)
    own_server.stop()
    wait_until(lambda: p.state is SubscriberState.RECONNECTING)
    with pytest.raises(redis.TimeoutError):  # stays wanted; made on reconnect
        p.subscribe(late=got.append)
    own_server.start()
    wait_until(lambda: notices, timeout=10)
    assert p.state is SubscriberState.OPEN and p.reconnects == 1
    info = notices[0]
    assert isinstance(info.error, ConnectionError) and info.down_for > 0 and info.attempts >= 1
    messages = drain(p)
    # The notice follows the resubscribe confirmations: from here on, nothing is missed.
    assert messages[-1] == msg("reconnect", None, info)
    assert sorted(m["channel"] for m in messages[:-1]) == [b"ch", b"late", b"pat*", b"sh"]
    for channel in ("ch", "pattern", "late"):
        assert c.publish(channel, channel) == 1
    assert c.spublish("sh", "sh") == 1
    wait_until(lambda: len(got) == 4)
    assert [m["data"] for m in got] == [b"ch", b"pattern", b"late", b"sh"]
    p.close()
    c.close()


def test_health_check_detects_a_silent_server(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, host="127.0.0.1")
    notices: List[ReconnectInfo] = []
    with c.pubsub(
        on_reconnect=notices.append, health_check_interval=0.1, reconnect_backoff=(0.01, 0.05)
    ) as p:
        p.subscribe("hc")
        g = gevent.spawn(c.execute_command, "DEBUG", "SLEEP", "0.6")  # the server goes silent
        wait_until(lambda: notices, timeout=10)
        assert "pong" in str(notices[0].error)
        g.join()
        c.publish("hc", "back")
        assert p.get_message(ignore_subscribe_messages=True, timeout=2)["type"] == "reconnect"
        expected = msg("message", b"hc", b"back")
        assert p.get_message(ignore_subscribe_messages=True, timeout=2) == expected
    c.close()


def test_unsubscribe_all_while_reconnecting_goes_idle(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, host="127.0.0.1")
    p = c.pubsub(reconnect_backoff=(0.05, 0.05))
    p.subscribe("a")
    own_server.stop()
    wait_until(lambda: p.state is SubscriberState.RECONNECTING)
    p.unsubscribe()
    assert not p.subscribed
    wait_until(lambda: p.state is SubscriberState.IDLE)
    own_server.start()
    p.subscribe("b")  # a fresh connection
    assert p.state is SubscriberState.OPEN and p.reconnects == 0
    p.close()
    c.close()


def test_run_in_thread(client: geredis.Redis) -> None:
    got: List[bytes] = []
    errors: List[Any] = []
    p = client.pubsub()
    p.subscribe("no-handler")
    with pytest.raises(PubSubError):
        p.run_in_thread()
    p.unsubscribe("no-handler")

    def handler(m: Message) -> None:
        if m["data"] == b"bad":
            raise RuntimeError("bad")
        got.append(m["data"])

    p.subscribe(w=handler)
    worker = p.run_in_thread(
        sleep_time=0.01, exception_handler=lambda e, ps, w: errors.append((e, ps, w))
    )
    assert worker.is_alive()
    for data in ("1", "bad", "2"):
        client.publish("w", data)
    wait_until(lambda: got == [b"1", b"2"])
    assert len(errors) == 1 and errors[0][1] is p and errors[0][2] is worker
    worker.stop()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert p.state is SubscriberState.CLOSED and not p.subscribed


def test_close_reuse_and_repr(client: geredis.Redis) -> None:
    p = client.pubsub()
    assert "IDLE" in repr(p)
    p.subscribe("a")
    assert "OPEN channels=1" in repr(p)
    p.close()
    assert "CLOSED" in repr(p) and p.channels == {} and not p.subscribed
    assert p.get_message() is None
    p.subscribe("b")  # like redis-py after reset()
    assert p.get_message(timeout=2) == msg("subscribe", b"b", 1)
    p.reset()
    client.close()
    assert p.state is SubscriberState.CLOSED


def test_close_from_a_handler(client: geredis.Redis) -> None:
    closed = Event()
    p = client.pubsub()

    def handler(m: Message) -> None:
        p.close()
        closed.set()

    p.subscribe(c=handler)
    client.publish("c", "x")
    assert closed.wait(5)
    assert p.state is SubscriberState.CLOSED


def test_garbage_collected_pubsub_closes(client: geredis.Redis) -> None:
    p = client.pubsub()
    p.subscribe(g=lambda m: None)
    client.publish("g", "x")
    reader = p._subscriber._greenlet
    del p
    gc.collect()
    gevent.sleep(0.01)
    assert reader is not None and reader.dead


def test_execute_command_and_ping(client: geredis.Redis) -> None:
    with client.pubsub() as p:
        assert p.ping() is True  # connects
        assert p.get_message(timeout=2) == msg("pong", None, b"")
        p.execute_command("SUBSCRIBE", "e")
        p.execute_command("PING", "m")
        assert drain(p) == [msg("subscribe", b"e", 1), msg("pong", None, b"m")]
        with pytest.raises(PubSubError):
            p.execute_command("GET", "k")


def test_keyspace_expiry_notifications(own_server: RedisServer) -> None:
    c = geredis.Redis(port=own_server.port, host="127.0.0.1", decode_responses=True)
    c.config_set("notify-keyspace-events", "Ex")
    expired: List[str] = []
    with c.pubsub() as p:
        p.subscribe(**{"__keyevent@0__:expired": lambda m: expired.append(m["data"])})
        c.set("soon", "x", px=20)
        wait_until(lambda: expired == ["soon"])
    c.close()
