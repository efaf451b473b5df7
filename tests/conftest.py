"""Test fixtures: real redis-server processes on free loopback ports, and the
checks every test gets for free.

* ``redis_server`` (session): one private redis-server for the whole run;
  ``own_server`` (per test) for tests that kill or restart the server.
* ``r``: a geredis client on the session server, database flushed first.
* Every test fails if a background greenlet crashed (gevent's hub reported an
  error), or if it left a greenlet running or a socket open.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List, Optional

import gevent
import pytest
from gevent.greenlet import Greenlet

import geredis
from geredis.connection import BackgroundGreenlet

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server child process on 127.0.0.1 with no persistence."""

    def __init__(self, port: Optional[int] = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="geredis-test-")
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--enable-debug-command", "local", "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64)[:1] in (b"+", b"-"):  # PONG, or NOAUTH with requirepass
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()  # never leave a half-started server behind
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis(port=redis_server.port, host="127.0.0.1")
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def rd(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis(port=redis_server.port, host="127.0.0.1", decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def _live_greenlets() -> List[Greenlet]:
    # type(), not isinstance(): lazy objects (Django's settings) may raise
    # when asked for their __class__.
    return [
        g for g in gc.get_objects()
        if issubclass(type(g), Greenlet) and not g.dead
    ]  # fmt: skip


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture(autouse=True)
def _no_crashes_or_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test on a background greenlet's crash or anything left behind."""
    hub = gevent.get_hub()
    errors: List[str] = []
    original = hub.handle_error

    def handle_error(context: object, type_: type, value: BaseException, tb: object) -> None:
        # A test's own greenlets may fail on purpose (the test checks them);
        # geredis's greenlets and hub callbacks must never fail.
        if isinstance(context, BackgroundGreenlet) or not isinstance(context, Greenlet):
            errors.append(f"{context!r}: {type_.__name__}: {value}")
        original(context, type_, value, tb)

    hub.handle_error = handle_error  # type: ignore[method-assign]
    greenlets_before = set(map(id, _live_greenlets()))
    sockets_before = _open_sockets()
    yield
    # Autouse fixtures are set up first, so this runs after the test's own
    # fixtures (clients) were torn down: what is left now was leaked.
    gevent.sleep(0)
    hub.handle_error = original  # type: ignore[method-assign]
    assert not errors, f"background greenlet crashed: {errors}"
    gc.collect()
    leaked = [g for g in _live_greenlets() if id(g) not in greenlets_before]
    assert not leaked, f"greenlets left running: {leaked}"
    assert _open_sockets() <= sockets_before, "sockets left open"
