"""Test fixtures: real redis-server processes on free loopback ports, and the
checks every test gets for free.

* ``redis_server`` (session): one private redis-server for the whole run;
  ``own_server`` (per test) for tests that kill or restart the server.
* ``r``: a geredis client on the session server, database flushed first.
* ``certs`` (session): a throw-away CA and certificates for TLS servers
  (``RedisServer(tls=certs)``, ``tests/test_tls.py``, TLS clusters).
* Every test fails if a background greenlet crashed (gevent's hub reported an
  error), or if it left a greenlet running or a socket open.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import gevent
import pytest
from gevent.greenlet import Greenlet

import geredis
from geredis import speedups
from geredis.connection import BackgroundGreenlet

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


Certs = Dict[str, str]


def pytest_report_header() -> str:
    running = speedups.compiled_modules()
    return "geredis: " + (f"compiled ({', '.join(running)})" if running else "pure Python")


def pytest_sessionstart(session: pytest.Session) -> None:
    # An edited .py beside its compiled module: the tests would run the old code.
    stale = speedups.stale_modules()
    if stale and not speedups.pure_python_requested():
        raise pytest.UsageError(
            f"{', '.join(stale)}: the .py changed after it was compiled; run ./dev build"
            " (or set GEREDIS_PURE_PYTHON=1)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server child process on 127.0.0.1 with no persistence.

    With ``tls`` (the ``certs`` fixture's files) it speaks TLS only:
    ``port`` is its ``tls-port``, the plaintext port is off, and clients must
    show a certificate of the CA (``client_kwargs()`` gives what to pass).
    """

    def __init__(self, port: Optional[int] = None, *extra: str,
                 tls: Optional[Certs] = None) -> None:  # fmt: skip
        self.port = port or free_port()
        self.extra = list(extra)
        self.tls = tls
        self.dir = tempfile.mkdtemp(prefix="geredis-test-")
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    def client_kwargs(self) -> Dict[str, Any]:
        """The ``ssl_*`` arguments (redis-py's and geredis's) for this server."""
        if self.tls is None:
            return {}
        return dict(ssl=True, ssl_ca_certs=self.tls["ca.crt"], ssl_certfile=self.tls["client.crt"],
                    ssl_keyfile=self.tls["client.key"])  # fmt: skip

    def _listen_args(self) -> List[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls["server.crt"], "--tls-key-file", self.tls["server.key"],
                "--tls-ca-cert-file", self.tls["ca.crt"]]  # fmt: skip

    def _probe(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        if self.tls is None:
            return sock
        try:
            context = ssl.create_default_context(cafile=self.tls["ca.crt"])
            context.load_cert_chain(self.tls["client.crt"], self.tls["client.key"])
            return context.wrap_socket(sock, server_hostname="127.0.0.1")
        except BaseException:
            sock.close()
            raise

    def start(self) -> "RedisServer":
        args = [
            REDIS_SERVER, *self._listen_args(), "--bind", "127.0.0.1",
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
                with self._probe() as s:
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


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(d: str, name: str, subject: str, ext: str, ca: str = "ca") -> None:
    """An EC key and a certificate for it, signed by the CA ``ca`` in ``d``."""
    key, csr, crt, extfile = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "crt", "ext"))
    with open(extfile, "w") as f:
        f.write(ext + "\n")
    _openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", csr, "-subj", subject)  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(d, f"{ca}.crt"),
             "-CAkey", os.path.join(d, f"{ca}.key"), "-CAcreateserial", "-out", crt,
             "-days", "2", "-extfile", extfile)  # fmt: skip


def _ca(d: str, name: str, subject: str) -> None:
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", os.path.join(d, f"{name}.key"),
             "-out", os.path.join(d, f"{name}.crt"), "-days", "2", "-subj", subject)  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Paths by file name (``ca.crt``, ``server.crt``/``.key``, ``client.crt``/``.key``,
    ``client-enc.key`` (password ``s3cret``), ``wrong.crt`` (for wrong.invalid),
    ``other-ca.crt`` (a CA that signed none of them)), and ``ca_pem``: the CA's PEM."""
    d = str(tmp_path_factory.mktemp("tls"))
    _ca(d, "ca", "/CN=geredis test CA")
    _ca(d, "other-ca", "/CN=geredis other CA")
    # clientAuth too: cluster nodes show it when they connect to each other.
    _issue(d, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
           "extendedKeyUsage=serverAuth,clientAuth")  # fmt: skip
    _issue(d, "wrong", "/CN=wrong.invalid",
           "subjectAltName=DNS:wrong.invalid\nextendedKeyUsage=serverAuth")  # fmt: skip
    _issue(d, "client", "/CN=geredis-client", "extendedKeyUsage=clientAuth")
    _openssl("pkey", "-in", os.path.join(d, "client.key"), "-aes256",
             "-passout", "pass:s3cret", "-out", os.path.join(d, "client-enc.key"))  # fmt: skip
    files = {name: os.path.join(d, name) for name in os.listdir(d)}
    with open(files["ca.crt"]) as f:
        files["ca_pem"] = f.read()
    return files


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
def patched_redis() -> Iterator[None]:
    """``geredis.patch_redis()`` for one test, undone after it."""
    geredis.patch_redis()
    try:
        yield
    finally:
        geredis.unpatch_redis()


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
