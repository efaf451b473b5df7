"""What a connection needs to know: address, credentials, timeouts, handshake.

How this works: :class:`ConnectionSettings` is one frozen-by-convention record
built once per client from redis-py-style keyword arguments (or a URL). Every
new connection of that client (the shared one after a reconnect, and later
dedicated ones) is opened from the same record, so the handshake state (AUTH,
db, client name, protocol) is restored every time.

:meth:`ConnectionSettings.handshake` returns the commands a fresh connection
sends before any user command, all pipelined in one write:

* RESP3: ``HELLO 3 [AUTH user pass] [SETNAME name]``;
* RESP2: ``AUTH [user] pass`` and ``CLIENT SETNAME name``;
* then ``CLIENT SETINFO LIB-NAME``/``LIB-VER`` (an error reply is ignored:
  servers before 7.2 do not know it) and ``SELECT db`` when db is not 0.

TLS (``ssl=True`` or ``rediss://``) takes redis-py's ``ssl_*`` arguments with
the same meanings and defaults (the certificate and the host name are
checked); ``network.py`` turns them into one ``SSLContext`` per settings
object. Invalid TLS values are refused here, when the client is built.

An ``address_resolver`` (Sentinel) replaces the fixed host and port: every
connection of the client then asks it where to connect, and it may check the
node (``ROLE``) as part of the handshake; see :class:`AddressResolver`.

Passwords live here and nowhere else; ``repr`` never shows them.
"""

from __future__ import annotations

import dataclasses
import ssl as _ssl
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union
from urllib.parse import parse_qs, unquote, urlparse

from redis.credentials import CredentialProvider

from . import __about__

#: ``(args, ignore_error_reply)``: one handshake step.
HandshakeStep = Tuple[Tuple[Any, ...], bool]

#: ``open_node(host, port, extra_steps)``: connect to one node and run the
#: handshake plus ``extra_steps`` (their replies come back, error replies as
#: values): ``(socket, replies)``. Given to :meth:`AddressResolver.connect`.
OpenNode = Callable[[str, int, Sequence[HandshakeStep]], Tuple[Any, List[Any]]]


class AddressResolver(Protocol):
    """Where the connections of a client go, decided at each connect (a
    Sentinel-managed client follows its primary this way).

    Every connection geredis opens (shared, dedicated, pub/sub, monitor,
    pinned) goes through ``handshake.open_initialised``, which hands the
    resolver an ``open_node`` function instead of connecting to ``host``
    and ``port``.
    """

    def describe(self) -> str:
        """What the client is connected to, for messages and ``repr``.

        Returns:
            A short description, such as ``mymaster (sentinel primary)``.
        """
        ...

    def connect(self, open_node: OpenNode) -> Any:
        """Pick a node, open it with ``open_node`` and return the socket.

        Args:
            open_node: connects to one node and runs the handshake plus the
                resolver's own steps (see :data:`OpenNode`).

        Returns:
            The connected, initialised socket.

        Raises:
            redis.ConnectionError: no usable node.
        """
        ...

    def wait_moved(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the resolver learns a new address
        meanwhile (a retry after a failover need not wait out its backoff).

        Args:
            seconds: the longest to sleep.
        """
        ...

    def demoted(self, sock: Any) -> bool:
        """A command sent on ``sock`` (a socket :meth:`connect` returned) got
        a READONLY error.

        Args:
            sock: the socket the READONLY reply came on.

        Returns:
            True if this resolver follows a primary (that node is no longer
            it: find the primary again), False if READONLY is a normal answer
            here (replicas).
        """
        ...

_DEFAULT_TIMEOUT: Optional[float]
try:  # redis-py 8 defaults to a 5 s socket timeout; follow the installed one.
    from redis._defaults import DEFAULT_SOCKET_TIMEOUT as _DEFAULT_TIMEOUT
except ImportError:  # pragma: no cover - older redis-py
    _DEFAULT_TIMEOUT = None


def _to_bool(value: str) -> bool:
    if value.upper() in ("", "0", "F", "FALSE", "N", "NO"):
        return False
    return True


def _to_verify_flags(value: str) -> List[_ssl.VerifyFlags]:
    """``VERIFY_X509_STRICT,VERIFY_X509_PARTIAL_CHAIN`` (brackets allowed)."""
    names = [name.strip() for name in value.strip("[]").split(",") if name.strip()]
    return [_ssl.VerifyFlags[name] for name in names]  # KeyError -> ValueError below


#: ``ssl_cert_reqs`` spellings, as redis-py takes them.
CERT_REQS = {
    "none": _ssl.CERT_NONE,
    "optional": _ssl.CERT_OPTIONAL,
    "required": _ssl.CERT_REQUIRED,
}


_URL_PARSERS: Dict[str, Callable[[str], Any]] = {
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "socket_keepalive": _to_bool,
    "protocol": int,
    "legacy_responses": _to_bool,
    "decode_responses": _to_bool,
    "client_name": str,
    "encoding": str,
    "encoding_errors": str,
    "max_in_flight": int,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": _to_bool,
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_min_version": lambda value: _ssl.TLSVersion(int(value)),
    "ssl_ciphers": str,
    "ssl_include_verify_flags": _to_verify_flags,
    "ssl_exclude_verify_flags": _to_verify_flags,
    "health_check_interval": float,
    "integrity_check": _to_bool,
}


def parse_url(url: str) -> Dict[str, Any]:
    """Turn a Redis URL into ``geredis.Redis`` constructor arguments.

    Accepted forms: ``redis://[[user]:pass@]host[:port][/db][?opt=v]``,
    ``rediss://...`` (the same over TLS: ``ssl=True``, and ``ssl_*`` query
    options such as ``ssl_cert_reqs``, ``ssl_ca_certs``,
    ``ssl_check_hostname``) and ``unix://[[user]:pass@]/path/to.sock[?db=n]``.
    User names and passwords are percent-decoded; a ``db`` query option wins
    over the path.

    Args:
        url: the URL.

    Returns:
        The keyword arguments it stands for (only those present in the URL).

    Raises:
        ValueError: another scheme, a ``unix://`` URL without a path, a
            database that is not a number, an unknown query option (refused
            rather than silently ignored), or a value that does not parse.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
    kwargs: Dict[str, Any] = {}
    if parsed.scheme == "rediss":
        kwargs["ssl"] = True
    for name, values in parse_qs(parsed.query).items():
        parser = _URL_PARSERS.get(name)
        if parser is None:
            raise ValueError(f"unsupported option {name!r} in Redis URL")
        try:
            kwargs[name] = parser(values[0])
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"invalid value for {name!r} in Redis URL") from None
    if parsed.username:
        kwargs["username"] = unquote(parsed.username)
    if parsed.password:
        kwargs["password"] = unquote(parsed.password)
    if parsed.scheme == "unix":
        if not parsed.path:
            raise ValueError("unix:// URL needs a socket path")
        kwargs["unix_socket_path"] = unquote(parsed.path)
    else:
        if parsed.hostname:
            kwargs["host"] = unquote(parsed.hostname)
        if parsed.port:
            kwargs["port"] = parsed.port
        path = parsed.path.strip("/")
        if path and "db" not in kwargs:
            try:
                kwargs["db"] = int(unquote(path))
            except ValueError:
                raise ValueError(f"invalid database {path!r} in Redis URL") from None
    return kwargs


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        raise TypeError("expected an integer")
    return int(value)


def _as_seconds(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes)):
        raise TypeError("expected a number of seconds or None")
    return float(value)


def _as_bool(value: Any) -> bool:
    """A flag as bool; strings as in URLs ("false", "no", "0", "" are False)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.strip().upper() in ("TRUE", "T", "YES", "Y", "1", "ON"):
            return True
        if value.strip().upper() in ("", "FALSE", "F", "NO", "N", "0", "OFF"):
            return False
    raise TypeError("expected True or False")


def _as_protocol(value: Any) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, (int, str, bytes)):
        try:
            if int(value) in (2, 3):
                return int(value)
        except ValueError:
            pass
    raise ValueError("protocol must be 2, 3 or None")


def _as_parser(value: Any) -> str:
    if value in ("auto", "python"):
        return str(value)
    if value == "hiredis":
        from .protocol import HIREDIS_AVAILABLE

        if not HIREDIS_AVAILABLE:
            raise ValueError("the hiredis package is not installed")
        return "hiredis"
    raise ValueError("expected 'auto', 'hiredis' or 'python'")


def _at_least(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = _as_int(value)
        if number < low:
            raise ValueError(f"expected an integer of at least {low}")
        return number
    return check


def _as_optional_seconds(value: Any) -> Optional[float]:
    seconds = _as_seconds(value)
    if seconds is not None and seconds < 0:
        raise ValueError("expected a number of seconds >= 0 or None")
    return seconds


#: The options geredis adds to redis-py's, checked when a client is built
#: (``geredis.Redis(...)``, its ``ConnectionPool``) rather than at first use.
_GEREDIS_OPTIONS: Dict[str, Callable[[Any], Any]] = {
    "parser": _as_parser,
    "max_dedicated": _at_least(1),
    "dedicated_timeout": _as_optional_seconds,
    "pipeline_threshold": _at_least(0),
    # redis-py's bound on connections to one server: geredis's shared one and
    # max_connections - 1 dedicated ones (see max_dedicated_for).
    "max_connections": _at_least(2),
}


def _checked(name: str, value: Any, coerce: Callable[[Any], Any]) -> Any:
    try:
        return coerce(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {name}={value!r}: {exc}") from None


def max_dedicated_for(kwargs: Dict[str, Any], max_dedicated: Optional[int]) -> Optional[int]:
    """Take redis-py's ``max_connections`` out of ``kwargs`` and turn it into
    geredis's bound on dedicated connections.

    redis-py's pools bound the connections to one server; geredis opens one
    shared connection and dedicated ones for what cannot share it, so
    ``max_connections=N`` allows ``N - 1`` dedicated connections (and
    ``r.connection_pool.max_connections`` reads ``N`` back). Libraries pass
    it on their own (limits passes ``max_connections=1000`` to
    ``RedisCluster``).

    Args:
        kwargs: the client's keyword arguments; ``max_connections`` is
            removed from them.
        max_dedicated: the ``max_dedicated`` given, if any: it wins.

    Returns:
        The ``max_dedicated`` to use, or None for the default.

    Raises:
        ValueError: ``max_connections`` below 2 or not an integer.
    """
    max_connections = kwargs.pop("max_connections", None)
    if max_dedicated is not None or max_connections is None:
        return max_dedicated
    return int(geredis_option("max_connections", max_connections)) - 1


def geredis_option(name: str, value: Any) -> Any:
    """One of the options geredis adds, normalised and checked.

    Args:
        name: ``"parser"``, ``"max_dedicated"``, ``"dedicated_timeout"`` or
            ``"pipeline_threshold"``.
        value: as given (strings of numbers are read as numbers, as for the
            connection settings).

    Returns:
        The value to use.

    Raises:
        ValueError: a value that cannot work (``parser="bogus"``,
            ``parser="hiredis"`` without hiredis, ``max_dedicated=0``,
            ``pipeline_threshold="x"``...), before anything is sent.
    """
    return _checked(name, value, _GEREDIS_OPTIONS[name])


#: How each typed setting is normalised: values from URLs, settings files or
#: environment variables often come as strings, and a string "2" or "False"
#: must not silently mean something else (redis-py's callback tables would be
#: picked for the wrong protocol). Anything else raises ValueError.
_COERCE: Dict[str, Callable[[Any], Any]] = {
    "port": _as_int,
    "db": lambda v: 0 if v is None else _as_int(v),  # None: redis-py's "not given"
    "protocol": _as_protocol,
    "socket_timeout": _as_seconds,
    "socket_connect_timeout": _as_seconds,
    "health_check_interval": lambda v: 0.0 if v is None else _as_seconds(v),
    "max_in_flight": _as_int,
    "socket_keepalive": _as_bool,
    "legacy_responses": _as_bool,
    "decode_responses": _as_bool,
    "ssl": _as_bool,
    "ssl_check_hostname": _as_bool,
    "integrity_check": _as_bool,
}


@dataclasses.dataclass
class ConnectionSettings:
    """Everything needed to open and initialise one connection.

    Built from a client's constructor arguments (the fields are exactly the
    connection arguments ``geredis.Redis`` applies, with redis-py's names and
    defaults; typed values given as strings are normalised) and shared by
    every connection opened for them, by every client with equal settings
    (``server.py``). ``CLIENT SETNAME`` on a client updates ``client_name``
    here, so later connections get the name too. The repr hides passwords.

    Raises:
        ValueError: on construction, a typed value that cannot be read (a
            ``protocol`` other than 2 or 3, ``db="one"``...), ``ssl=True``
            with an invalid ``ssl_cert_reqs`` or with a unix socket.
    """

    #: The server's host name or address (resolved once per connect).
    host: str = "localhost"
    #: The server's TCP port.
    port: int = 6379
    #: A unix socket path; when set, ``host`` and ``port`` are not used.
    unix_socket_path: Optional[str] = None
    #: The database, selected on every new connection when not 0.
    db: int = 0
    #: The ACL user (None: ``default``).
    username: Optional[str] = None
    #: The password, sent in ``HELLO ... AUTH`` or ``AUTH``; never shown.
    password: Optional[str] = dataclasses.field(default=None, repr=False)
    #: redis-py's ``CredentialProvider``, asked at every connect (wins over
    #: ``username``/``password``).
    credential_provider: Optional[CredentialProvider] = dataclasses.field(
        default=None, repr=False
    )
    #: Seconds each command waits for its reply (None: no bound).
    socket_timeout: Optional[float] = _DEFAULT_TIMEOUT
    #: Seconds for connect, TLS and handshake together (None: no bound).
    socket_connect_timeout: Optional[float] = _DEFAULT_TIMEOUT
    #: TCP keepalive on every connection.
    socket_keepalive: bool = True
    #: ``{socket.TCP_KEEPIDLE: s, ...}``; None: redis-py 8's timings
    #: (30 s idle, 5 s interval, 3 probes).
    socket_keepalive_options: Optional[Mapping[int, Any]] = None
    #: The protocol the user asked for (None, 2 or 3); None speaks RESP3 like
    #: redis-py 8, and picks redis-py's callback table for None.
    protocol: Optional[int] = None
    #: redis-py 8's choice between its legacy and unified reply shapes.
    legacy_responses: bool = True
    #: ``CLIENT SETNAME`` on every new connection.
    client_name: Optional[str] = None
    #: Sent with ``CLIENT SETINFO LIB-NAME`` (servers before 7.2 ignore it).
    lib_name: Optional[str] = "geredis"
    #: Sent with ``CLIENT SETINFO LIB-VER``.
    lib_version: Optional[str] = __about__.__version__
    #: How ``str`` arguments are encoded, and replies decoded.
    encoding: str = "utf-8"
    #: The codec's error handler for both directions.
    encoding_errors: str = "strict"
    #: Return ``str`` instead of ``bytes``.
    decode_responses: bool = False
    #: TLS, with redis-py's ``ssl_*`` arguments (see ``network.py``).
    ssl: bool = False
    #: The client's private key (for a client certificate).
    ssl_keyfile: Optional[str] = None
    #: The client's certificate chain, when the server asks for one.
    ssl_certfile: Optional[str] = None
    #: "required" (default), "optional", "none" (or None), or an ssl.VerifyMode.
    ssl_cert_reqs: Union[str, _ssl.VerifyMode, None] = "required"
    #: ``ssl.VerifyFlags`` to set on the context.
    ssl_include_verify_flags: Optional[List[_ssl.VerifyFlags]] = None
    #: ``ssl.VerifyFlags`` to clear on the context.
    ssl_exclude_verify_flags: Optional[List[_ssl.VerifyFlags]] = None
    #: A CA bundle file to trust, besides the system's.
    ssl_ca_certs: Optional[str] = None
    #: A directory of CA certificates to trust.
    ssl_ca_path: Optional[str] = None
    #: CA certificates as PEM text or DER bytes.
    ssl_ca_data: Union[str, bytes, None] = None
    #: Match the certificate against ``host`` (ignored when not verifying).
    ssl_check_hostname: bool = True
    #: The password of ``ssl_keyfile`` (or a callable returning it); never shown.
    ssl_password: Any = dataclasses.field(default=None, repr=False)
    #: The lowest TLS version accepted, e.g. ``ssl.TLSVersion.TLSv1_2``.
    ssl_min_version: Optional[_ssl.TLSVersion] = None
    #: An OpenSSL cipher list.
    ssl_ciphers: Optional[str] = None
    #: Seconds of silence from the server after which a PING checks it; a
    #: PING unanswered within the next interval replaces the connection.
    #: 0 disables (redis-py's default).
    health_check_interval: float = 0
    #: At most this many commands in flight on one connection; callers
    #: beyond it wait their turn. Bounds memory when the server is slow.
    max_in_flight: int = 10_000
    #: Append an ECHO marker to every batch written and check it in the reply
    #: stream; a mismatch (a desynchronised stream) fails the connection
    #: instead of delivering wrong values. Costs one command per batch.
    integrity_check: bool = False
    #: Decides where each connection goes instead of ``host``/``port``
    #: (``geredis.sentinel``); None connects to ``host``/``port``.
    address_resolver: Optional[AddressResolver] = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name, coerce in _COERCE.items():
            setattr(self, name, _checked(name, getattr(self, name), coerce))
        if self.ssl:
            self.verify_mode  # noqa: B018 - refuses an unknown ssl_cert_reqs now
            if self.unix_socket_path:
                raise ValueError("ssl=True does not apply to a unix socket")

    @property
    def verify_mode(self) -> _ssl.VerifyMode:
        """``ssl_cert_reqs`` as an ``ssl.VerifyMode``.

        Raises:
            ValueError: ``ssl_cert_reqs`` is not ``"required"``,
                ``"optional"``, ``"none"``, None or an ``ssl.VerifyMode``.
        """
        reqs = self.ssl_cert_reqs
        if reqs is None:
            return _ssl.CERT_NONE
        if isinstance(reqs, _ssl.VerifyMode):
            return reqs
        if isinstance(reqs, str) and reqs.lower() in CERT_REQS:
            return CERT_REQS[reqs.lower()]
        raise ValueError(
            f"invalid ssl_cert_reqs {reqs!r}: use 'required', 'optional', 'none'"
            " or an ssl.VerifyMode"
        )

    @property
    def wire_protocol(self) -> int:
        """The RESP version spoken on the wire: 3 unless 2 was asked for."""
        return 2 if self.protocol == 2 else 3

    @property
    def address(self) -> str:
        """``host:port`` (``rediss://host:port`` over TLS) or the unix socket
        path, for messages and repr; the address resolver's description
        when there is one."""
        if self.address_resolver is not None:
            return self.address_resolver.describe()
        if self.unix_socket_path:
            return self.unix_socket_path
        if self.ssl:
            return f"rediss://{self.host}:{self.port}"
        return f"{self.host}:{self.port}"

    def credentials(self) -> Tuple[Optional[str], Optional[str]]:
        """The credentials for a new connection.

        Returns:
            ``(username, password)``, either possibly None. The credential
            provider, when there is one, is asked each time (its credentials
            may rotate between connections); one value from it is a password.
        """
        if self.credential_provider is not None:
            creds = self.credential_provider.get_credentials()
            if len(creds) == 1:
                return None, creds[0]
            return creds[0], creds[1]
        return self.username, self.password

    def handshake(self) -> List[HandshakeStep]:
        """The commands that initialise a new connection, in order.

        Returns:
            ``(args, optional)`` pairs: ``HELLO 3 [AUTH ...] [SETNAME ...]``
            (or ``AUTH`` and ``CLIENT SETNAME`` for RESP2), ``CLIENT SETINFO``
            (optional: an error reply is ignored), then ``SELECT`` when
            ``db`` is not 0.
        """
        steps: List[HandshakeStep] = []
        username, password = self.credentials()
        if self.wire_protocol == 3:
            hello: List[Any] = ["HELLO", 3]
            if password is not None:
                hello += ["AUTH", username or "default", password]
            if self.client_name:
                hello += ["SETNAME", self.client_name]
            steps.append((tuple(hello), False))
        else:
            if password is not None:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                steps.append((auth, False))
            if self.client_name:
                steps.append((("CLIENT", "SETNAME", self.client_name), False))
        if self.lib_name:
            steps.append((("CLIENT", "SETINFO", "LIB-NAME", self.lib_name), True))
        if self.lib_version:
            steps.append((("CLIENT", "SETINFO", "LIB-VER", self.lib_version), True))
        if self.db:
            steps.append((("SELECT", self.db), False))
        return steps

    def connection_kwargs(self) -> Dict[str, Any]:
        """These settings as redis-py's ``connection_pool.connection_kwargs``:
        valid ``redis.Redis`` arguments, shaped as redis-py's pool holds them
        for the matching connection class (``path`` for a unix socket, no
        ``host``/``port`` then; ``ssl_*`` only over TLS). geredis-only
        settings appear only when not at their default.

        Returns:
            A new dict, passwords included: do not log it.
        """
        kwargs: Dict[str, Any] = {}
        for field in dataclasses.fields(self):
            name, value = field.name, getattr(self, field.name)
            if name in ("unix_socket_path", "ssl"):
                continue  # redis-py says these with its connection class
            if name.startswith("ssl_") and not self.ssl:
                continue
            if name in ("host", "port") and self.unix_socket_path:
                continue
            if name in _GEREDIS_ONLY and value == field.default:
                continue
            kwargs[name] = value
        if self.unix_socket_path:
            kwargs["path"] = self.unix_socket_path
        return kwargs


#: Settings redis-py's connections do not take.
_GEREDIS_ONLY = frozenset(("max_in_flight", "integrity_check", "address_resolver"))
