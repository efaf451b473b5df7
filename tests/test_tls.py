"""TLS against a real redis-server: rediss:// URLs, redis-py's ssl_* arguments,
certificate and host name checks, client certificates, ACL users, big values.

How this works: the ``certs`` session fixture (``tests/conftest.py``) makes a
throw-away CA, a server certificate for 127.0.0.1/localhost, a second server
certificate for a name we never connect by, and a client certificate (plain
and password-protected key) with the ``openssl`` CLI. Servers listen on a plaintext port (the fixtures'
readiness probe, admin commands) and on a TLS port (what the tests use).
"""

from __future__ import annotations

import os
import ssl
import time
from typing import Callable, Dict, Iterator, List, Optional

import gevent
import pytest
import redis

import geredis
from geredis import network
from geredis.settings import ConnectionSettings, parse_url

from .chaosproxy import ChaosProxy
from .conftest import Certs, RedisServer, free_port


class TLSServer(RedisServer):
    """A redis-server with a TLS port too (``port`` stays plaintext: it is what
    the fixtures' readiness probe and the admin clients use)."""

    def __init__(self, certs: Certs, name: str, auth_clients: str) -> None:
        self.tls_port = free_port()
        super().__init__(
            None, "--tls-port", str(self.tls_port), "--tls-cert-file", certs[f"{name}.crt"],
            "--tls-key-file", certs[f"{name}.key"], "--tls-ca-cert-file", certs["ca.crt"],
            "--tls-auth-clients", auth_clients,
        )  # fmt: skip


def _tls_server(certs: Certs, name: str = "server", auth_clients: str = "optional") -> TLSServer:
    server = TLSServer(certs, name, auth_clients)
    try:
        server.start()
    except RuntimeError:
        server.cleanup()
        pytest.skip("this redis-server was built without TLS support")
    return server


@pytest.fixture(scope="session")
def tls_server(certs: Certs) -> Iterator[TLSServer]:
    server = _tls_server(certs)
    yield server
    server.cleanup()


@pytest.fixture
def tls(tls_server: TLSServer, certs: Certs) -> Iterator[Callable[..., geredis.Redis]]:
    """Factory of clients for the TLS port; closes them after the test."""
    clients: List[geredis.Redis] = []

    def make(**kwargs: object) -> geredis.Redis:
        options: Dict[str, object] = dict(
            host="127.0.0.1", port=tls_server.tls_port, ssl=True,
            ssl_ca_certs=certs["ca.crt"], socket_timeout=5,
        )  # fmt: skip
        options.update(kwargs)
        client = geredis.Redis(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _fails_promptly(client: geredis.Redis, match: Optional[str] = None, within: float = 2.0) -> None:
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match=match):
        client.ping()
    assert time.monotonic() - started < within


def test_rediss_url_and_500_concurrent_greenlets(tls_server: TLSServer, certs: Certs) -> None:
    url = f"rediss://127.0.0.1:{tls_server.tls_port}/0?ssl_ca_certs={certs['ca.crt']}"
    with geredis.from_url(url, socket_timeout=10) as c:
        assert c.settings.ssl is True
        assert "rediss://127.0.0.1" in repr(c)
        assert c.set("tls:k", "v") is True
        assert c.get("tls:k") == b"v"
        assert hasattr(c._connection._sock, "_sslobj")  # really TLS
        assert c.connection_pool.connection_kwargs["ssl_ca_certs"] == certs["ca.crt"]

        def worker(i: int) -> bool:
            for j in range(20):
                value = f"{i}:{j}:{os.urandom(4).hex()}"
                assert c.set(f"tls:{i}", value) is True
                assert c.get(f"tls:{i}") == value.encode()
            return bool(c.incr("tls:count") > 0)

        greenlets = [gevent.spawn(worker, i) for i in range(500)]
        gevent.joinall(greenlets, timeout=30, raise_error=True)
        assert all(g.value is True for g in greenlets)
        assert c.get("tls:count") == b"500"
        c.delete("tls:count", *[f"tls:{i}" for i in range(500)], "tls:k")


def test_by_name_and_ca_data_and_protocol_2(tls: Callable[..., geredis.Redis], certs: Certs) -> None:
    c = tls(host="localhost", ssl_ca_certs=None, ssl_ca_data=certs["ca_pem"], protocol=2)
    assert c.ping() is True
    assert c.echo("hello") == b"hello"


def test_unknown_ca_fails_promptly_with_connection_error(tls: Callable[..., geredis.Redis]) -> None:
    c = tls(ssl_ca_certs=None)
    _fails_promptly(c, "certificate .*rejected")
    _fails_promptly(c, "certificate .*rejected")  # again on the next command, still fast
    # cert_reqs="none": encrypted but unverified, so no CA needed.
    assert tls(ssl_ca_certs=None, ssl_cert_reqs="none").ping() is True
    assert tls(ssl_ca_certs=None, ssl_cert_reqs=ssl.CERT_NONE).ping() is True


def test_host_name_mismatch(certs: Certs) -> None:
    server = _tls_server(certs, name="wrong")
    port = server.tls_port
    try:
        base = dict(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=certs["ca.crt"])
        with geredis.Redis(**base) as c:
            _fails_promptly(c, "rejected.*(mismatch|hostname)")
        with geredis.Redis(**base, ssl_check_hostname=False) as c:
            assert c.ping() is True  # the chain is fine; only the name differs
        url = f"rediss://127.0.0.1:{port}?ssl_ca_certs={certs['ca.crt']}&ssl_check_hostname=no"
        with geredis.from_url(url) as c:
            assert c.ping() is True
    finally:
        server.cleanup()


def test_client_certificate_required(certs: Certs) -> None:
    server = _tls_server(certs, auth_clients="yes")
    base = dict(host="127.0.0.1", port=server.tls_port, ssl=True,
                ssl_ca_certs=certs["ca.crt"], socket_connect_timeout=3)  # fmt: skip
    try:
        with geredis.Redis(**base, retry=None) as c:  # no client certificate: refused
            _fails_promptly(c)
        with geredis.Redis(**base, ssl_certfile=certs["client.crt"],
                           ssl_keyfile=certs["client.key"]) as c:  # fmt: skip
            assert c.set("k", "v") is True
            assert c.get("k") == b"v"
        with geredis.Redis(**base, ssl_certfile=certs["client.crt"],
                           ssl_keyfile=certs["client-enc.key"], ssl_password="s3cret") as c:  # fmt: skip
            assert c.get("k") == b"v"
        with geredis.Redis(**base, ssl_certfile=certs["client.crt"],
                           ssl_keyfile=certs["client-enc.key"], ssl_password="wrong") as c:  # fmt: skip
            _fails_promptly(c, "cannot set up TLS")
    finally:
        server.cleanup()


def test_acl_user_and_password_over_tls(tls_server: TLSServer, certs: Certs) -> None:
    with redis.Redis(port=tls_server.port) as admin:
        admin.acl_setuser("tlsuser", enabled=True, passwords=["+p@ss"], keys=["*"],
                          commands=["+@all"])  # fmt: skip
    url = (f"rediss://tlsuser:p%40ss@127.0.0.1:{tls_server.tls_port}"
           f"?ssl_ca_certs={certs['ca.crt']}&ssl_cert_reqs=required")  # fmt: skip
    try:
        with geredis.from_url(url) as c:
            assert c.acl_whoami() == "tlsuser"
            assert "p@ss" not in repr(c.settings)
        with geredis.from_url(url.replace("p%40ss", "nope")) as c:
            with pytest.raises(redis.AuthenticationError):
                c.ping()
    finally:
        with redis.Redis(port=tls_server.port) as admin:
            admin.acl_deluser("tlsuser")


def test_big_values_both_directions(tls: Callable[..., geredis.Redis]) -> None:
    c = tls(socket_timeout=20)
    values = {f"big:{i}": os.urandom(1 << 20) for i in range(8)}

    def roundtrip(key: str) -> bool:
        assert c.set(key, values[key]) is True
        assert c.get(key) == values[key]
        return True

    small = [gevent.spawn(c.incr, "big:small") for _ in range(200)]
    big = [gevent.spawn(roundtrip, key) for key in values]
    gevent.joinall(big + small, timeout=30, raise_error=True)
    assert all(g.value is True for g in big)
    assert int(c.get("big:small")) == 200
    c.delete("big:small", *values)


def test_reconnects_over_tls_with_the_cached_context(
    tls: Callable[..., geredis.Redis], tls_server: TLSServer
) -> None:
    c = tls(client_name="tls-victim", ssl_min_version=ssl.TLSVersion.TLSv1_3, retry=None)
    assert c.ping() is True
    context = network.ssl_context(c.settings)
    with redis.Redis(port=tls_server.port) as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(redis.ConnectionError):
        for _ in range(100):  # the EOF may land just after a command
            c.ping()
            gevent.sleep(0.01)
    assert c.ping() is True  # a new TLS connection
    assert network.ssl_context(c.settings) is context


def test_plaintext_and_tls_mixed_up_fail_within_the_connect_timeout(
    tls_server: TLSServer, certs: Certs
) -> None:
    # retry=None: each attempt is bounded; the default retries would repeat it.
    with geredis.Redis(port=tls_server.tls_port, socket_connect_timeout=1, retry=None) as c:
        _fails_promptly(c)
    with geredis.Redis(port=tls_server.port, ssl=True, ssl_ca_certs=certs["ca.crt"],
                       socket_connect_timeout=1, retry=None) as c:  # fmt: skip
        _fails_promptly(c)


def test_settings_and_urls() -> None:
    kwargs = parse_url(
        "rediss://u:pw@h:7000/2?ssl_cert_reqs=optional&ssl_check_hostname=false"
        "&ssl_ca_certs=/ca.pem&ssl_min_version=772"
        "&ssl_include_verify_flags=[VERIFY_X509_STRICT,VERIFY_X509_PARTIAL_CHAIN]"
    )
    assert kwargs == dict(
        ssl=True, username="u", password="pw", host="h", port=7000, db=2,
        ssl_cert_reqs="optional", ssl_check_hostname=False, ssl_ca_certs="/ca.pem",
        ssl_min_version=ssl.TLSVersion.TLSv1_3,
        ssl_include_verify_flags=[ssl.VERIFY_X509_STRICT, ssl.VERIFY_X509_PARTIAL_CHAIN],
    )  # fmt: skip
    assert "ssl" not in parse_url("redis://h")
    for bad in ("ssl_min_version=1", "ssl_exclude_verify_flags=NOPE", "ssl_ocsp_context=x"):
        with pytest.raises(ValueError):
            parse_url(f"rediss://h?{bad}")
    settings = ConnectionSettings(ssl=True, ssl_password="hunter2", ssl_cert_reqs="OPTIONAL")
    assert "hunter2" not in repr(settings)
    assert settings.verify_mode is ssl.CERT_OPTIONAL
    assert settings.address == "rediss://localhost:6379"
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        geredis.Redis(ssl=True, ssl_cert_reqs="sometimes")
    with pytest.raises(ValueError, match="unix"):
        geredis.Redis(ssl=True, unix_socket_path="/tmp/x.sock")
    with pytest.raises(ValueError, match="ssl_validate_ocsp"):
        geredis.Redis(ssl=True, ssl_validate_ocsp=True)
    # A CA file that does not exist: a ConnectionError naming the problem.
    with geredis.Redis(port=free_port(), ssl=True, ssl_ca_certs="/nonexistent/ca.pem") as c:
        _fails_promptly(c, "cannot set up TLS")


def test_cut_during_the_handshake_is_transient_not_a_tls_error(
    tls_server: TLSServer, certs: Certs
) -> None:
    with ChaosProxy(tls_server.tls_port) as proxy:
        proxy.refuse()  # accepts, then closes: EOF in the middle of the handshake
        with geredis.Redis(host="127.0.0.1", port=proxy.port, ssl=True, retry=None,
                           ssl_ca_certs=certs["ca.crt"]) as c:  # fmt: skip
            with pytest.raises(redis.ConnectionError) as info:
                c.ping()
            assert not isinstance(info.value, network.TLSError)  # so it may be retried
            assert not isinstance(info.value, redis.AuthenticationError)
            proxy.heal()
            assert c.ping() is True
        with geredis.Redis(host="127.0.0.1", port=proxy.port, ssl=True, ssl_ca_certs=None) as c:
            with pytest.raises(network.TLSError):  # not retried: fails at once
                c.ping()
