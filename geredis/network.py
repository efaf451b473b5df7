"""The seam to the network: open a cooperative socket to a Redis server,
plain or TLS.

How this works: geredis never monkey-patches; it uses ``gevent.socket`` and
``gevent.ssl`` directly, so it cooperates with other greenlets whether or not
the application patched the standard library (and whatever the patch order:
gevent#1016). A numeric host is resolved with ``AI_NUMERICHOST`` in the
calling thread (microseconds, safe after fork); a name goes through gevent's
resolver once per connect, never per command.

TLS (``settings.ssl``): the connected TCP socket is wrapped by a
``gevent.ssl.SSLContext`` built from the ``ssl_*`` settings the way redis-py
builds it (system CAs plus the given ones, certificate and host name checked
by default, ``server_hostname`` = ``host``), once per settings object and then
cached on it: every reconnect reuses it. The TLS handshake runs inside
``open_socket``, so the caller's connect timeout bounds it too.

Errors from connecting are translated here, once, into
:class:`~geredis.exceptions.ConnectionClosedError` naming the address: refused
or unreachable (``OSError``); and into its subclass :class:`TLSError` (also an
``AuthenticationError``: not retried) for a certificate that does not verify,
a failed TLS handshake (``ssl.SSLError``), a TLS setup that cannot load its
files.
Once connected, the socket has no timeout of its own: per-command timeouts
belong to callers, and a broken stream is reported by the reader (see
``connection.py``).
"""

from __future__ import annotations

import socket as _stdlib_socket
import ssl as _stdlib_ssl
import sys
from typing import Any, Dict, List, Tuple

from gevent import socket
from gevent import ssl as gevent_ssl

from .exceptions import AuthenticationError, ConnectionClosedError
from .settings import ConnectionSettings

__all__ = ["TLSError", "open_socket", "share_ssl_context", "ssl_context"]


class TLSError(ConnectionClosedError, AuthenticationError):
    """TLS could not be set up: the server's certificate was rejected, the
    handshake failed, or the client's certificate, key or CA files cannot be
    loaded.

    No connection was made. Like a wrong password (``AuthenticationError``)
    it does not fix itself, so the command is not retried.
    """


#: Where a settings object keeps its SSLContext (not a dataclass field: it is
#: not a constructor argument, and ``dataclasses.replace`` must not copy it).
_CONTEXT_ATTR = "_geredis_ssl_context"


def _resolve(host: str, port: int) -> List[Tuple[Any, ...]]:
    try:
        return _stdlib_socket.getaddrinfo(
            host, port, 0, socket.SOCK_STREAM, 0, _stdlib_socket.AI_NUMERICHOST
        )
    except _stdlib_socket.gaierror:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)  # type: ignore[no-any-return]


def _default_keepalive() -> Dict[int, int]:
    # redis-py 8's defaults: first probe after 30 s idle, then every 5 s, 3 probes.
    options: Dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


_DEFAULT_KEEPALIVE = _default_keepalive()


def _connect_tcp(settings: ConnectionSettings) -> Any:
    error: BaseException = OSError("no address")
    for family, socktype, proto, _, addr in _resolve(settings.host, settings.port):
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                options = settings.socket_keepalive_options
                if options is None:
                    options = _DEFAULT_KEEPALIVE  # a dead peer noticed in ~45 s, not 2 h
                for option, value in options.items():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
            sock.connect(addr)
            return sock
        except BaseException as exc:
            sock.close()
            error = exc
            if not isinstance(exc, OSError):
                raise
    raise error


def _connect_unix(settings: ConnectionSettings) -> Any:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(settings.unix_socket_path)
    except BaseException:
        sock.close()
        raise
    return sock


def _build_context(settings: ConnectionSettings) -> gevent_ssl.SSLContext:
    # What ssl.create_default_context() does, but gevent's class (the stdlib
    # function would return a blocking context even via gevent.ssl).
    context = gevent_ssl.SSLContext(gevent_ssl.PROTOCOL_TLS_CLIENT)
    context.load_default_certs(gevent_ssl.Purpose.SERVER_AUTH)
    if sys.version_info >= (3, 13):
        context.verify_flags |= (
            _stdlib_ssl.VERIFY_X509_PARTIAL_CHAIN | _stdlib_ssl.VERIFY_X509_STRICT
        )
    verify_mode = settings.verify_mode
    # check_hostname first: CERT_NONE is refused while it is on.
    context.check_hostname = settings.ssl_check_hostname and verify_mode != gevent_ssl.CERT_NONE
    context.verify_mode = verify_mode
    for flag in settings.ssl_include_verify_flags or ():
        context.verify_flags |= flag
    for flag in settings.ssl_exclude_verify_flags or ():
        context.verify_flags &= ~flag
    if settings.ssl_certfile or settings.ssl_keyfile:
        context.load_cert_chain(
            certfile=settings.ssl_certfile,  # type: ignore[arg-type]
            keyfile=settings.ssl_keyfile,
            password=settings.ssl_password,
        )
    if settings.ssl_ca_certs or settings.ssl_ca_path or settings.ssl_ca_data:
        context.load_verify_locations(
            cafile=settings.ssl_ca_certs,
            capath=settings.ssl_ca_path,
            cadata=settings.ssl_ca_data,
        )
    if settings.ssl_min_version is not None:
        context.minimum_version = _stdlib_ssl.TLSVersion(settings.ssl_min_version)
    if settings.ssl_ciphers:
        context.set_ciphers(settings.ssl_ciphers)
    return context


def ssl_context(settings: ConnectionSettings) -> gevent_ssl.SSLContext:
    """The ``SSLContext`` for ``settings``, built on first use and cached.

    Args:
        settings: TLS settings (``ssl=True`` and the ``ssl_*`` fields).

    Returns:
        A ``gevent.ssl.SSLContext``, the same one for every connection
        opened from these settings.

    Raises:
        geredis.network.TLSError: a certificate, key or CA file cannot be loaded, the key's
            password is wrong, or the cipher list is invalid.
    """
    cache = vars(settings)
    context = cache.get(_CONTEXT_ATTR)
    if context is None:
        try:
            context = _build_context(settings)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise TLSError(
                f"cannot set up TLS for {settings.address}: {exc}"
            ) from exc
        cache[_CONTEXT_ATTR] = context
    return context  # type: ignore[no-any-return]


def share_ssl_context(source: ConnectionSettings, target: ConnectionSettings) -> None:
    """Let ``target`` (the same settings pointed at another node) reuse
    ``source``'s SSLContext instead of building its own at each connect.

    Args:
        source: the settings whose context is shared (nothing is done
            unless ``source.ssl``).
        target: a copy of ``source`` pointed at another node.

    Raises:
        geredis.network.TLSError: ``source``'s context cannot be built.
    """
    if source.ssl:
        vars(target)[_CONTEXT_ATTR] = ssl_context(source)


#: Handshake errors that say the connection ended, not that TLS failed.
_TRANSIENT = (_stdlib_ssl.SSLEOFError, _stdlib_ssl.SSLZeroReturnError, _stdlib_ssl.SSLSyscallError)


def _wrap_tls(sock: Any, context: gevent_ssl.SSLContext, settings: ConnectionSettings) -> Any:
    """Run the TLS handshake over the connected ``sock``; closes it on error.

    The handshake is not left to ``wrap_socket``: on a ``gevent.Timeout`` or a
    kill (not ``OSError``) inside it, gevent's SSLSocket constructor would
    neither close its socket nor return it, leaking the descriptor.
    """
    try:
        tls_sock = context.wrap_socket(
            sock, server_hostname=settings.host, do_handshake_on_connect=False
        )
    except BaseException:
        sock.close()
        raise
    try:
        tls_sock.do_handshake()
        return tls_sock
    except BaseException as exc:
        tls_sock.close()
        if isinstance(exc, _stdlib_ssl.SSLCertVerificationError):
            raise TLSError(
                f"TLS certificate of {settings.address} rejected:"
                f" {exc.verify_message or exc.reason}"
            ) from exc
        if isinstance(exc, _stdlib_ssl.SSLError) and not isinstance(exc, _TRANSIENT):
            raise TLSError(
                f"TLS handshake with {settings.address} failed: {exc.reason or exc}"
            ) from exc
        if isinstance(exc, OSError):  # reset or EOF: the server may be restarting
            raise ConnectionClosedError(
                f"{settings.address} closed the connection during the TLS"
                f" handshake: {exc.strerror or exc}"
            ) from exc
        raise


def open_socket(settings: ConnectionSettings) -> Any:
    """Connect to ``settings``'s address; the caller bounds the time.

    Args:
        settings: where to connect (host and port, or a unix socket), and
            TLS, keepalive and the other socket options.

    Returns:
        A connected ``gevent.socket.socket`` (a ``gevent.ssl.SSLSocket``
        with ``settings.ssl``, its handshake done) with no timeout.

    Raises:
        geredis.ConnectionClosedError: refused, unreachable or unresolvable, or closed
            during the TLS handshake.
        geredis.network.TLSError: the certificate does not verify, the handshake failed, or
            the TLS setup cannot load its files.
    """
    context = ssl_context(settings) if settings.ssl else None  # before any I/O
    connect = _connect_unix if settings.unix_socket_path else _connect_tcp
    try:
        sock = connect(settings)
    except OSError as exc:
        errno = f"Error {exc.errno} " if exc.errno else ""
        raise ConnectionClosedError(
            f"{errno}connecting to {settings.address}: {exc.strerror or exc}"
        ) from exc
    if context is not None:
        return _wrap_tls(sock, context, settings)
    return sock
