"""``geredis.Redis``: redis-py's command API over one multiplexed connection.

How this works: :class:`Redis` subclasses ``redis.Redis`` for its command
mixins (``r.get``, ``r.hgetall``, ... all end in ``execute_command``) and
``isinstance`` compatibility, but never runs its constructor or touches its
connection pool. ``execute_command`` is the whole I/O path:

1. refuse, before anything is queued, a command that cannot share the
   connection (``routing.py``); encode the command (a bad argument type raises
   ``DataError`` here, nothing queued);
2. append it to the shared :class:`~geredis.connection.Connection` and wait
   for the reply for at most ``socket_timeout`` seconds;
3. raise an error reply, or run redis-py's response callback for the command
   and return its result, exactly as ``redis.Redis`` would.

A caller that times out (``redis.TimeoutError``), is killed or hits its own
``gevent.Timeout`` just stops waiting: its reply is dropped when it arrives.

Steps 2 and 3 on the shared connection, and ``get``/``set`` (which go there
directly), are :class:`~geredis.roundtrip.SharedRoundTrip`, the base class in
``roundtrip.py`` that ``setup.py`` compiles with Cython when it can. This
module stays Python.

Connections are not the client's own: ``connection_pool`` (``pool.py``) names
the settings, and the client *attaches* to the
:class:`~geredis.server.ServerConnections` for them (``server.py``), which
every client with the same settings in this thread shares. The client keeps
the shared connection it last used in ``_connection`` for the hot path; when
that one is no longer OPEN (broken, dropped by ``disconnect()``) it asks the
ServerConnections again. ``close()`` detaches, closing the connections if it
was the last client attached; the next command attaches again and reconnects.
``close(final=True)`` shuts the client down for good.

With ``cache_config=``/``cache=`` (client-side caching, ``geredis/cache``)
the ServerConnections owns a ``ClientCache`` (``r.cache``): cacheable reads
go through it, and the slot of every other command comes from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

import gevent
from gevent.event import AsyncResult
from redis._parsers.encoders import Encoder
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ReadOnlyError, ResponseError

from .cache.client_cache import NOT_CACHED, ClientCache, cache_option
from .cache.commands import CachedCommands
from .caller import Caller
from .connection import Connection, State
from .dedicated import MAX_DEDICATED, DedicatedPool, wait_bound
from .exceptions import ClientClosedError, ConnectionClosedError, SharedConnectionError
from .lock import Lock
from .observability.stats import ClientStats, Stats
from .observability.tracing import INSIDE, PLAIN_EXECUTE_COMMAND, REDIS, traced_command
from .pipeline import PIPELINE_THRESHOLD, Pipeline, run_transaction
from .compat import Futures, is_default_argument, response_callbacks, settings_from_kwargs
from .pool import ConnectionPool, pool_for
from .protocol import Packer
from .guards import check_thread, real_thread_id
from .retry import RetryPolicy
from .routing import ROUTES, block_seconds, command_name
from . import roundtrip
from .roundtrip import SharedRoundTrip
from .server import ServerConnections
from .settings import ConnectionSettings, geredis_option, max_dedicated_for, parse_url
from .slots import FutureSlot

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import Monitor, PinnedRedis

__all__ = ["Redis", "finish_reply", "from_url"]

_OPEN = State.OPEN
_dict_get = dict.get
_R = TypeVar("_R", bound="Redis")
_GEREDIS_OPTIONS = ("parser", "max_dedicated", "dedicated_timeout")


class _Detached:
    """Stands for the ServerConnections of a client that is not attached
    (closed, or its settings changed): no connection, so the hot path falls
    through to ``_usable_connection``, which attaches again."""

    connection = None


_DETACHED: Any = _Detached()


class Redis(SharedRoundTrip):
    """A Redis client whose commands, from any number of greenlets, share one
    auto-pipelined connection. Takes ``redis.Redis``'s arguments, by keyword
    only, with redis-py's names, meanings and defaults, plus a few of its own.

    Clients with the same settings in one OS thread share one connection
    (``connection_pool`` says which settings; see ``server.py``). Building a
    client does no I/O: the connection opens with the first command. Other
    ``redis.Redis`` arguments (``single_connection_client``,
    ``socket_read_size``, ``event_dispatcher``, ...) are accepted only at their default
    value; anything else raises ``ValueError`` rather than being ignored.
    Every argument, with its default, is in the Configuration page.

    Args:
        **kwargs: the keyword arguments below.

    Keyword Args:
        host (str): the server's host name or address (default
            ``"localhost"``), resolved at every connect.
        port (int): the server's TCP port (default 6379).
        unix_socket_path (str | None): a unix socket to connect to instead
            of ``host``/``port``.
        db (int): the database, selected on every connection the client
            opens (default 0).
        username (str | None): the ACL user (None: ``default``).
        password (str | None): the password, sent in the handshake.
        credential_provider (redis.credentials.CredentialProvider | None):
            asked for ``(username, password)`` at every connect; wins over
            ``username``/``password``.
        socket_timeout (float | None): the longest each command waits for
            its reply, in seconds (default 5, redis-py 8's), then
            ``redis.TimeoutError`` and the connection survives; None waits
            for ever.
        socket_connect_timeout (float | None): the longest for connect, TLS
            and the handshake together (default 5).
        socket_keepalive (bool): TCP keepalive (default True, with redis-py
            8's timings).
        socket_keepalive_options (dict | None): ``{socket.TCP_KEEPIDLE: 10,
            ...}`` to override the keepalive timings.
        health_check_interval (float): seconds of silence from the server
            after which a PING checks the connection; no answer within
            another interval replaces it. 0 (default) turns it off.
        encoding (str): how ``str`` arguments are encoded and replies decoded
            (default ``"utf-8"``).
        encoding_errors (str): the codec's error handler (default
            ``"strict"``).
        decode_responses (bool): return ``str`` instead of ``bytes``.
        protocol (int | None): None or 3 speak RESP3 on the wire, 2 speaks
            RESP2; replies have redis-py's shapes for the value given.
        legacy_responses (bool): redis-py 8's choice between its legacy
            (default) and unified reply shapes.
        client_name (str | None): ``CLIENT SETNAME`` on every connection.
        lib_name (str | None): sent with ``CLIENT SETINFO`` (default
            ``"geredis"``; servers before 7.2 ignore it).
        lib_version (str | None): sent with ``CLIENT SETINFO`` (default:
            geredis's version).
        ssl (bool): TLS, configured by redis-py's ``ssl_*`` arguments, which
            are taken with the same meanings and defaults (``ssl_certfile``,
            ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_ca_certs``,
            ``ssl_ca_path``, ``ssl_ca_data``, ``ssl_check_hostname``,
            ``ssl_password``, ``ssl_min_version``, ``ssl_ciphers``,
            ``ssl_include_verify_flags``, ``ssl_exclude_verify_flags``; not
            the OCSP ones). See the TLS and ACL page.
        retry (redis.retry.Retry | None): the backoff and number of retries
            for a command whose connection failed, sent again only when that
            is harmless (see ``geredis.retry``); default redis-py 8's (10
            retries, 10 ms doubling with jitter, capped at 1 s); None turns
            retries off.
        retry_on_timeout (bool): retry ``redis.TimeoutError`` too, under the
            same rule.
        retry_on_error (list | None): more exception classes to retry, under
            the same rule.
        retry_writes (bool): let writes that were sent be retried too (only
            if your writes are idempotent).
        max_in_flight (int): at most this many commands waiting for replies
            on the shared connection (default 10,000); callers beyond it wait
            for room, at most ``socket_timeout``, then ``redis.TimeoutError``
            with nothing sent.
        integrity_check (bool): append an ECHO marker to every batch and
            check it in the reply stream; a desynchronised stream fails its
            callers instead of delivering wrong values.
        address_resolver (geredis.settings.AddressResolver | None): decides
            at each connect which node a connection goes to instead of
            ``host``/``port`` (set by ``geredis.sentinel``).
        connection_pool (redis.ConnectionPool | geredis.pool.ConnectionPool): a redis-py ``ConnectionPool`` or
            ``BlockingConnectionPool`` (its settings and retry options are
            read; its own connections are never used) or another geredis
            client's ``connection_pool``. The connection settings then come
            from the pool only: one given as well must be at its default.
        parser (str): ``"auto"`` (hiredis when installed, the default),
            ``"hiredis"`` or ``"python"``.
        max_dedicated (int): how many dedicated connections (blocking
            commands, WATCH, large pipelines, ``client()``, ``monitor()``)
            may exist at once; default 10,000. A blocking command that finds
            them all in use fails at once with ``PoolExhaustedError``
            (waiting could deadlock); the others wait, see
            ``dedicated_timeout``. redis-py's ``max_connections=N`` (a
            bound on connections to the server) is taken as
            ``max_dedicated=N - 1`` (the shared connection counts), N >= 2;
            ``max_dedicated`` wins when both are given.
        dedicated_timeout (float | None): how long a pipeline, transaction,
            ``client()`` or ``monitor()`` waits for a dedicated connection
            when all are in use before ``PoolExhaustedError``; None
            (default) waits as long as it takes, 0 fails at once.
        pipeline_threshold (int): pipelines with more commands than this
            (default 2000) run on a dedicated connection instead of the
            shared one.
        cache_config (redis.cache.CacheConfig | geredis.cache.CacheConfig | None):
            client-side caching (redis-py's switch): reads are served from a
            cache kept by the shared connection until Redis invalidates
            them. RESP3 only. See the Client-side caching page.
        cache (geredis.cache.ClientCache | None): client-side caching with a
            cache object you built (to keep a handle on it); not with
            ``cache_config``.

    Raises:
        ValueError: a ``redis.Redis`` argument geredis does not apply given
            a value other than its default; a value that cannot be read
            (``protocol=4``, ``db="one"``, ``max_dedicated=0``, an invalid
            ``ssl_cert_reqs``, ``ssl=True`` with a unix socket); a
            ``connection_pool`` geredis cannot read; or, with
            ``connection_pool``, a connection setting not at its default.
            For caching: both ``cache`` and ``cache_config``, a redis-py
            cache object as ``cache``, ``protocol=2`` or
            ``integrity_check=True`` with a cache.
        TypeError: an argument neither ``redis.Redis`` nor geredis takes.
    """

    #: Observers of this client's commands (``geredis.observability``).
    _observers: Tuple[Any, ...] = ()
    _is_async_client = False
    _repr_name = "geredis.Redis"
    connection_pool: ConnectionPool  # type: ignore[assignment]
    #: The client-side cache of the connections in use (None: no caching).
    _cache: Optional[ClientCache] = None
    _cached_view: Optional[CachedCommands] = None

    def __init__(self, **kwargs: Any) -> None:
        self.pipeline_threshold: int = geredis_option(
            "pipeline_threshold", kwargs.pop("pipeline_threshold", PIPELINE_THRESHOLD))
        source = kwargs.pop("connection_pool", None)
        options = {k: kwargs.pop(k) for k in _GEREDIS_OPTIONS if k in kwargs}
        max_dedicated = max_dedicated_for(kwargs, options.get("max_dedicated"))
        if max_dedicated is not None:
            options["max_dedicated"] = max_dedicated
        cache = cache_option(kwargs.pop("cache_config", None), kwargs.pop("cache", None))
        if cache is not None:
            options["cache"] = cache
        if source is None:
            retry_kwargs: Dict[str, Any] = {}
            pool = ConnectionPool(settings_from_kwargs(_pop_connection_args(kwargs)), **options)
        else:
            pool, retry_kwargs = pool_for(source, options)
            _refuse_with_pool(kwargs)
        retry_kwargs.update(kwargs)
        self._start(pool, RetryPolicy.from_kwargs(retry_kwargs))

    def _setup(self, settings: ConnectionSettings, retry: RetryPolicy, parser: str = "auto",
               max_dedicated: int = MAX_DEDICATED, dedicated_timeout: Optional[float] = None,
               pipeline_threshold: int = PIPELINE_THRESHOLD) -> None:
        """Build the client from settings already checked, with connections
        of its own (not shared with clients of equal settings): the cluster
        client's node clients, which live and die with it."""
        self.pipeline_threshold = pipeline_threshold
        self._start(ConnectionPool(settings, parser=parser, max_dedicated=max_dedicated,
                                   dedicated_timeout=dedicated_timeout, shared=False), retry)

    def _start(self, pool: ConnectionPool, retry: RetryPolicy) -> None:
        """Take ``pool``'s settings and attach to its shared connections."""
        self._owner_thread = real_thread_id()
        self._final = False
        self._shared: Any = _DETACHED
        self._connection: Optional[Connection] = None
        self._retry = retry
        self.connection_pool = pool
        self.connection = None
        self.futures = Futures(self)
        self._apply_settings()
        pool._clients.add(self)
        self._attached()

    def _apply_settings(self) -> None:
        """Take the pool's (current) settings."""
        settings = self.settings = self.connection_pool.settings
        self._parser = self.connection_pool.parser
        self._timeout = settings.socket_timeout
        self._packer = Packer(settings.encoding, settings.encoding_errors)
        key = (settings.protocol, settings.legacy_responses)
        if getattr(self, "_callbacks_for", None) != key:
            self.response_callbacks = response_callbacks(*key)
            self._callbacks_for = key

    def _settings_changed(self) -> None:
        """``connection_pool.connection_kwargs`` changed: move to the
        connections for the new settings from the next command on."""
        last = self._detach()
        if last is not None:
            last.disconnect()
        self._connection = None
        self._apply_settings()

    def _attached(self) -> ServerConnections:
        """The ServerConnections this client uses, attaching to it if needed."""
        shared = self._shared
        if shared is _DETACHED:
            if self._final:
                raise ClientClosedError("this geredis client was closed for good")
            shared = self._shared = self.connection_pool.connections()
            shared.users += 1
            self._cache = shared.cache
            # Equal to the pool's, and the very object the connections are
            # opened from, so CLIENT SETNAME reaches reconnects.
            self.settings = shared.settings
        return shared  # type: ignore[no-any-return]

    def _detach(self) -> Optional[ServerConnections]:
        """Stop using the shared connections; the ServerConnections if this
        was the last client attached to it (then the caller closes it)."""
        shared, self._shared = self._shared, _DETACHED
        if shared is _DETACHED:
            return None
        shared.users -= 1
        return shared if shared.users <= 0 else None  # type: ignore[no-any-return]

    @property
    def _dedicated(self) -> DedicatedPool:
        return self._attached().dedicated

    @property
    def _stats(self) -> ClientStats:
        """The counters of the connections this client uses."""
        return self._attached().counters  # type: ignore[no-any-return]

    def stats(self) -> Stats:
        """Live statistics of the connections this client uses (shared with
        the clients of equal settings in this thread): counters since they
        were set up, gauges of now. Cheap: poll it.

        Returns:
            A :class:`geredis.observability.Stats`.
        """
        return self._attached().stats()  # type: ignore[no-any-return]

    @property
    def _closed(self) -> bool:
        """Closed (``close()``) and not used since, or closed for good."""
        return self._final or self._shared is _DETACHED

    @classmethod
    def from_url(cls: Type[_R], url: str, **kwargs: Any) -> _R:
        """A client for a ``redis://``, ``rediss://`` or ``unix://`` URL. As in
        redis-py, the URL's options win over ``kwargs`` when both give one.

        Args:
            url: ``redis://[[username]:password@]host[:port][/db][?option=value...]``,
                ``rediss://...`` (the same over TLS) or
                ``unix://[[username]:password@]/path/to.sock[?db=n...]``; the
                query options are listed in the Configuration page.
            **kwargs: more constructor arguments, as for the class.

        Returns:
            A new client of this class (no I/O yet).

        Raises:
            ValueError: another scheme, an unknown query option or a value
                that does not parse; or what the constructor refuses.
            TypeError: an argument the constructor does not take.
        """
        options = dict(kwargs)
        options.update(parse_url(url))
        return cls(**options)

    def _repr_parts(self) -> Tuple[bool, Optional[Connection]]:
        """For repr: whether the client is closed, and its connection."""
        closed = self._final or (self._shared is _DETACHED and self._connection is not None)
        return closed, self._shared.connection

    def __repr__(self) -> str:
        closed, conn = self._repr_parts()
        if closed:
            state, pending = "CLOSED", 0
        elif conn is None:
            state, pending = "IDLE", 0
        else:
            state, pending = conn.state.value, conn.pending
        return (
            f"<{self._repr_name} {self.settings.address} db={self.settings.db}"
            f" {state} pending={pending}>"
        )

    # -- the command path ---------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and return its reply, after redis-py's callback.

        Every command method (``r.get``, ``r.hgetall``...) ends here. The
        command is refused or routed before anything is queued: a blocking
        command runs on a dedicated connection, one that cannot share the
        connection raises. Otherwise it joins the shared connection's FIFO
        and the caller waits for its reply; a caller that gives up (timeout,
        kill) leaves its reply to be dropped, and the connection lives on.
        With client-side caching, a cacheable read may be answered from the
        cache without a round trip.

        Args:
            *args: the command name and its arguments (``"SET", "k", "v"``).
            **options: redis-py's per-command options (``NEVER_DECODE``,
                ``EMPTY_RESPONSE``, the response callback's keywords).

        Returns:
            The reply after redis-py's response callback for the command: what
            ``redis.Redis`` returns.

        Raises:
            redis.ResponseError: the command's error reply (its subclasses
                for the server's error codes); the connection survives.
            redis.DataError: an argument of a type that cannot be sent;
                nothing was queued.
            UnicodeEncodeError: a ``str`` argument that does not encode with
                ``encoding`` (``encoding_errors="strict"``); nothing was
                queued.
            geredis.SharedConnectionError: a command that cannot share the
                connection (SELECT, SUBSCRIBE, MULTI...); the error names what
                to use instead, nothing was sent.
            redis.TimeoutError: no reply within ``socket_timeout`` (the
                connection survives, the late reply is dropped), or
                ``max_in_flight`` commands stayed pending that long (nothing
                was sent); a blocking command waited past its own timeout
                plus ``socket_timeout`` (its dedicated connection is closed).
            redis.ConnectionError: the connection broke (or could not be
                opened) and the command was not safe to send again (see
                ``geredis.retry``); the next command opens a new connection.
                ``redis.AuthenticationError`` for a refused handshake.
            geredis.PoolExhaustedError: a blocking command found every
                dedicated connection in use; nothing was sent.
            geredis.ClientClosedError: the client was closed for good
                (``close(final=True)``), or the command was still pending
                when a ``close()`` gave up waiting for it.
            geredis.ThreadAffinityError: called from another OS thread than
                the client's; nothing was queued.
        """
        if REDIS.execute_command is not PLAIN_EXECUTE_COMMAND and options.pop(INSIDE, None) is None:
            return traced_command(self, args, options)  # instrumentation patched redis.Redis
        name = args[0]
        command = name.upper() if type(name) is str else command_name(name)
        route = ROUTES.get(command)
        if route is not None and route(self, command, args):
            return self._execute_dedicated(command, args, options)
        cache = self._cache
        if cache is not None and command in cache.reads:
            result = cache.read(self, command, args, options)
            if result is not NOT_CACHED:
                return result
        return self._round_trip(command, self._packer.pack(args), options, cache, args)

    def execute_async(self, *args: Any, **options: Any) -> AsyncResult:
        """Send one command now; return an ``AsyncResult`` for its result.

        The result holds what ``execute_command`` would return (after the
        response callback) or raises what it would raise, including
        ``TimeoutError`` once ``socket_timeout`` passes without a reply.
        Commands are not sent again after a connection failure here (no
        retries).

        Args:
            *args: the command name and its arguments, as for
                :meth:`execute_command`.
            **options: redis-py's per-command options, as for
                :meth:`execute_command`.

        Returns:
            A ``gevent.event.AsyncResult``: ``.get()`` returns the result or
            raises the command's error (``redis.ResponseError``,
            ``redis.TimeoutError``, ``redis.ConnectionError``...).

        Raises:
            geredis.SharedConnectionError: a blocking command (it needs
                :meth:`execute_command`), or one that cannot share the
                connection; nothing was sent.
            redis.DataError: an argument of a type that cannot be sent.
            UnicodeEncodeError: a ``str`` argument that does not encode with
                ``encoding``.
            redis.TimeoutError: ``max_in_flight`` commands stayed pending for
                ``socket_timeout`` seconds; nothing was sent.
            geredis.ClientClosedError: the client was closed for good.
            geredis.ThreadAffinityError: called from another OS thread than
                the client's.
        """
        name = args[0]
        command = name.upper() if type(name) is str else command_name(name)
        route = ROUTES.get(command)
        if route is not None and route(self, command, args):
            raise SharedConnectionError(
                f"{command} blocks; call it with execute_command (it runs on a"
                " dedicated connection), not execute_async"
            )
        cache = self._cache
        if cache is not None and command in cache.reads:
            if real_thread_id() != self._owner_thread:
                check_thread(self._owner_thread)
            result = cache.read_async(self, command, args, options)
            if result is not NOT_CACHED:
                return result  # type: ignore[no-any-return]
        packed = self._packer.pack(args)
        if real_thread_id() != self._owner_thread:
            check_thread(self._owner_thread)
        conn = self._connection
        if conn is None or conn.state is not _OPEN or len(conn._pending) >= conn.max_in_flight:
            conn = self._usable_connection()
        slot = FutureSlot()
        queued = slot if cache is None else cache.slot(conn, command, args, slot, options)
        conn.submit(packed, queued, NEVER_DECODE in options and queued is slot)
        return self._future(command, options, slot)

    def _future(self, command: str, options: Dict[str, Any], slot: AsyncResult) -> AsyncResult:
        """An AsyncResult for what ``execute_command`` would return once
        ``slot`` holds the raw reply."""
        result = AsyncResult()

        def resolve(done: AsyncResult) -> None:
            try:
                if done.successful():
                    result.set(self._finish(command, done.value, options))
                else:
                    self._stats.error(done.exception)
                    result.set_exception(done.exception)
            except Exception as exc:
                result.set_exception(exc)

        slot.rawlink(resolve)
        return result

    def _usable_connection(self) -> Connection:
        """The shared connection, opened anew if it broke, with room for one
        more command (waiting for the in-flight limit, at most socket_timeout)."""
        conn = self._connection = self._attached().usable_connection()
        return conn

    def _retry_command(
        self, command: str, packed: bytes, options: Dict[str, Any], sent: bool,
        exc: BaseException, slot_for: Optional[Callable[[Connection, Caller], Any]] = None,
    ) -> Any:
        """Send a command again after its connection failed, when it is safe
        (see ``retry.py``; ``sent`` is False if it never left); raise the
        last error otherwise. With an address resolver, a pause ends early
        when the resolver learns a new address (a failover). ``slot_for(conn,
        waiter)`` makes the slot to queue (a caching client's writes)."""
        failures = 1
        resolver = self.settings.address_resolver
        while self._retry.should_retry(command, exc, failures, sent):
            if resolver is None:
                gevent.sleep(self._retry.delay(failures))
            else:
                resolver.wait_moved(self._retry.delay(failures))
            conn = self._usable_connection()
            sent = True
            waiter = conn.caller()
            slot = waiter if slot_for is None else slot_for(conn, waiter)
            # A slot of its own knows about NEVER_DECODE itself.
            conn.submit(packed, slot, slot is waiter and NEVER_DECODE in options)
            try:
                return waiter.get()
            except self._retry.errors as again:
                exc = again
                sent = conn.opened
                failures += 1
        self._stats.error(exc)
        raise exc

    def _after_demotion(self, command: str, packed: bytes, options: Dict[str, Any],
                        conn: Connection, reply: ReadOnlyError) -> Any:
        """A READONLY reply through an address resolver: the node was demoted
        under the connection. It did not run the command, so the command is
        sent again (when retries are on) once the resolver found the
        primary; otherwise ConnectionError, as redis-py's Sentinel raises.
        For a resolver that does not follow a primary, the reply stands."""
        resolver = self.settings.address_resolver
        assert resolver is not None
        if not resolver.demoted(conn._sock):
            return reply  # a replica client: READONLY is the answer
        conn.close_nowait()  # no new commands there; those in flight finish
        error = ConnectionClosedError(
            f"{self.settings.address}: the node was demoted (READONLY); not sent again"
        )
        error.__cause__ = reply
        return self._retry_command(command, packed, options, False, error)

    def _check_batch(self, conn: Connection, replies: List[Any]) -> List[Any]:
        """A batch's (pipeline's) replies, checked: through an address
        resolver, a READONLY reply means the node was demoted under the
        connection, so leave it and raise ConnectionError, as for a single
        command without retries."""
        resolver = self.settings.address_resolver
        if resolver is None:
            return replies
        for reply in replies:
            if type(reply) is ReadOnlyError and resolver.demoted(conn._sock):
                conn.close_nowait()
                raise ConnectionClosedError(
                    f"{self.settings.address}: the node was demoted (READONLY) during the"
                    " pipeline; its writes were not applied"
                ) from reply
        return replies

    def _finish(self, command: str, reply: Any, options: Dict[str, Any]) -> Any:
        try:
            return finish_reply(self.response_callbacks, command, reply, options)
        except Exception as exc:  # an error reply (or a failing callback) for the caller
            self._stats.error(exc)
            raise

    def _execute_command(self, *args: Any, **options: Any) -> Any:
        """Where redis-py's ``execute_command`` ends when instrumentation
        patched it (see ``observability/tracing.py``): run the command."""
        options[INSIDE] = True
        method = type(self).execute_command
        return getattr(method, "_geredis_inner", method)(self, *args, **options)

    # -- redis-py's client-level API ------------------------------------------

    def get_encoder(self) -> Encoder:
        """redis-py's ``Encoder`` for this client's settings (``Lock``,
        scripts and modules use it).

        Returns:
            A new ``redis._parsers.encoders.Encoder`` with the client's
            encoding, errors and ``decode_responses``.
        """
        return self.connection_pool.get_encoder()

    @property
    def cache(self) -> Optional[ClientCache]:
        """``r.cache``: the client-side cache (``cache_config=``) of the
        connections this client uses, shared with the clients of equal
        settings; None without caching."""
        return self._cache

    @property
    def cached(self) -> CachedCommands:
        """``r.cached.get(key, ttl=...)``: reads cached on request (in every
        mode; the only cached reads in ``"optin"`` mode). Needs a caching client."""
        view = self._cached_view
        if view is None:
            view = self._cached_view = CachedCommands(self)
        return view

    def get_cache(self) -> Optional[ClientCache]:  # type: ignore[override]
        """redis-py's accessor: ``r.cache``.

        Returns:
            The :class:`~geredis.cache.ClientCache` of this client's shared
            connections, or None without caching.
        """
        return self._cache

    def _after_foreign_write(self, commands: Any) -> None:
        """Commands (names) ran on another connection (pipeline, blocking
        command, ``r.client()``): keep the cache from serving what they may
        have changed until their invalidations are in."""
        if self._cache is not None:
            self._cache.after_write(self, commands)

    def get_connection_kwargs(self) -> Dict[str, Any]:
        """The connection settings as redis-py's ``get_connection_kwargs()``
        returns them: ``connection_pool.connection_kwargs``.

        Returns:
            The pool's ``connection_kwargs`` itself (passwords included: do
            not log it). A change to it is checked first (``ValueError`` or
            ``TypeError`` for a bad value, and nothing changes); once kept,
            the pool's clients use new connections with the new settings
            from their next command on.
        """
        return self.connection_pool.connection_kwargs

    def close(self, timeout: Optional[float] = None, *, final: bool = False) -> None:
        """Release this client's connections, as redis-py's ``close()``: the
        next command opens a new one.

        Other clients with the same settings share the connections; they are
        closed when the last of those clients closes: queued commands finish
        first, for at most ``timeout`` seconds (default: ``socket_timeout``),
        then fail with ``ClientClosedError``. With ``final=True`` the client
        is shut down for good: later commands raise ``ClientClosedError``.

        Blocking commands in flight on dedicated connections, pinned clients
        (``client()``) and monitors are aborted when the connections close;
        pipelines on dedicated connections get up to ``timeout`` to finish.
        Pub/sub objects are not closed (close them yourself). Safe to call
        again.

        Args:
            timeout: the longest to wait for pending replies, in seconds
                (None: ``socket_timeout``, or as long as it takes when that is
                None too).
            final: shut the client down for good.
        """
        if final:
            self._final = True
            self._connection = None
        last = self._detach()
        if last is not None:
            last.close(self._timeout if timeout is None else timeout)

    def __del__(self) -> None:
        # Never blocks, never closes what other clients may share: the
        # ServerConnections closes its connections when it is collected.
        try:
            self._detach()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def _execute_dedicated(self, command: str, args: Any, options: Dict[str, Any]) -> Any:
        """Run a blocking command on a dedicated connection from the pool,
        waiting at most its own block timeout plus ``socket_timeout``; if the
        caller gives up first, that connection is aborted, never reused."""
        packed = self._packer.pack(args)
        bound = wait_bound(block_seconds(command, args), self._timeout)
        try:
            reply = self._attached().dedicated.run(packed, NEVER_DECODE in options, bound)
        except Exception as exc:
            self._stats.error(exc)
            raise
        finally:
            self._after_foreign_write((command,))
        return self._finish(command, reply, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None, *,
                 threshold: Optional[int] = None) -> Pipeline:
        """redis-py's pipeline; ``threshold`` overrides ``pipeline_threshold``.

        Args:
            transaction: wrap the batch in MULTI/EXEC (default True).
            shard_hint: accepted for redis-py compatibility; unused.
            threshold: run batches of more commands than this on a dedicated
                connection (None: the client's ``pipeline_threshold``).

        Returns:
            A new :class:`~geredis.pipeline.Pipeline` (nothing is sent until
            ``execute()``).
        """
        return Pipeline(self, transaction, shard_hint, threshold=threshold)

    def transaction(self, func: Callable[[Pipeline], Any], *watches: Any,
                    shard_hint: Any = None, value_from_callable: bool = False,
                    watch_delay: Optional[float] = None) -> Any:
        """redis-py's ``transaction``: WATCH, ``func(pipe)``, EXEC, retried on
        ``WatchError``.

        With ``watches``, the pipeline runs on a dedicated connection from
        ``WATCH`` on; without, the batch goes on the shared connection.

        Args:
            func: called with the pipeline, each try; reads run at once
                (immediate mode) until it calls ``pipe.multi()`` and queues
                the writes.
            *watches: the keys to WATCH.
            shard_hint: accepted for redis-py compatibility; unused.
            value_from_callable: return what ``func`` returned instead of
                the EXEC results.
            watch_delay: seconds to sleep (cooperatively) before trying again
                after a conflict; None tries again at once.

        Returns:
            The EXEC results, or ``func``'s value with ``value_from_callable``.

        Raises:
            geredis.PoolExhaustedError: no dedicated connection became free
                within ``dedicated_timeout``.
            redis.ResponseError: an error reply, as from ``pipe.execute()``;
                what ``func`` raises propagates too. A ``redis.WatchError``
                never does: it starts over, without bound, as in redis-py.
                So does a connection that fails or times out once WATCH
                took hold (the pipeline raises ``WatchError`` for it, as
                redis-py's does): if EXEC had reached the server then, the
                transaction runs again.
            redis.ConnectionError: the connection failed before WATCH took
                hold, or without ``watches``; not retried.
            redis.TimeoutError: no reply within ``socket_timeout``, before
                WATCH took hold or without ``watches``.
        """
        return run_transaction(self, func, watches, shard_hint, value_from_callable,
                               watch_delay)

    def lock(self, name: Any, timeout: Optional[float] = None, sleep: float = 0.1,
             blocking: bool = True, blocking_timeout: Optional[float] = None,
             lock_class: Any = None, thread_local: bool = True,
             raise_on_release_error: bool = True) -> Any:
        """redis-py's ``lock``; the default class sleeps cooperatively
        (``geredis.lock.Lock``) and keeps tokens per greenlet.

        The arguments after ``name`` are handed to the lock's class; their
        meanings are on :class:`~geredis.lock.Lock`.

        Args:
            name: the lock's key.
            timeout: the lock's expiry in seconds (None: none).
            sleep: the pause between tries of a blocking ``acquire``.
            blocking: ``acquire``'s default for waiting.
            blocking_timeout: ``acquire``'s default bound on waiting.
            lock_class: the class to build instead of
                :class:`~geredis.lock.Lock`, with the same arguments.
            thread_local: tokens per greenlet (True) or per lock object.
            raise_on_release_error: whether releasing a lock no longer held
                raises.

        Returns:
            The lock, not acquired yet (``with r.lock("name"):`` acquires it).
        """
        return (lock_class or Lock)(
            self, name, timeout=timeout, sleep=sleep, blocking=blocking,
            blocking_timeout=blocking_timeout, thread_local=thread_local,
            raise_on_release_error=raise_on_release_error,
        )

    def pubsub(self, **kwargs: Any) -> Any:
        """A :class:`geredis.pubsub.PubSub` on a connection of its own, with
        this client's settings. Takes redis-py's ``pubsub()`` arguments plus
        geredis's (``on_reconnect``, ``on_handler_error``, ``max_queued``...).
        Close it yourself (``close()``/``with``): ``close()`` here does not.

        Args:
            **kwargs: the arguments of :class:`geredis.pubsub.PubSub` after
                its settings and parser (``ignore_subscribe_messages``,
                ``encoder``, ``on_handler_error``, ``on_reconnect``,
                ``reconnect_messages``, ``max_queued``,
                ``health_check_interval``, ``reconnect_backoff``...).

        Returns:
            A new :class:`geredis.pubsub.PubSub`; it connects with its first
            subscription.

        Raises:
            geredis.ClientClosedError: the client was closed for good.
            TypeError: an argument ``PubSub`` does not take.
            ValueError: ``max_queued`` below 1.
        """
        from .pubsub import PubSub

        if self._final:
            raise ClientClosedError("this geredis client was closed for good")
        pubsub = PubSub(self.settings, parser=self._parser, **kwargs)
        self._stats.track_pubsub(pubsub)
        return pubsub

    def monitor(self) -> "Monitor":
        """redis-py's Monitor on a dedicated connection (``with r.monitor() as m``).

        Returns:
            A :class:`~geredis.monitor.Monitor` holding one of the client's
            ``max_dedicated`` permits until it is closed; it connects and
            sends MONITOR when entered (``with``).

        Raises:
            geredis.PoolExhaustedError: no dedicated permit became free within
                ``dedicated_timeout``.
            geredis.ClientClosedError: the client was closed for good.
        """
        from .monitor import Monitor

        return Monitor(self)

    def client(self) -> "PinnedRedis":
        """A client pinned to one dedicated connection (SELECT, raw WATCH ...);
        close it to give the connection back.

        Returns:
            A :class:`~geredis.monitor.PinnedRedis` holding one of the
            client's ``max_dedicated`` permits until it is closed (its
            connection is then closed, not reused).

        Raises:
            geredis.PoolExhaustedError: no dedicated permit became free within
                ``dedicated_timeout``.
            geredis.ClientClosedError: the client was closed for good.
        """
        from .monitor import PinnedRedis

        return PinnedRedis(self)


def finish_reply(callbacks: Dict[str, Any], command: str, reply: Any,
                 options: Dict[str, Any]) -> Any:
    """What ``execute_command`` returns for ``reply``: an error reply raised
    (or redis-py's ``EMPTY_RESPONSE`` default), else redis-py's callback for
    ``command`` applied with the callback options in ``options`` (client-level
    options are removed from it).

    Args:
        callbacks: the client's response callbacks (command name to
            function).
        command: the upper-case command name.
        reply: the parsed reply; an exception object for an error reply.
        options: the command's options; the client-level ones (``keys``,
            ``EMPTY_RESPONSE``, ``NEVER_DECODE``) are popped from it, the
            rest are passed to the callback.

    Returns:
        The callback's result, the reply itself when the command has no
        callback, or ``options[EMPTY_RESPONSE]`` for an error reply when that
        option is given.

    Raises:
        redis.ResponseError: ``reply`` is an error reply (raised as it is; any
            other exception object in ``reply`` too, such as a
            ``UnicodeDecodeError`` for a reply that could not be decoded).
    """
    if isinstance(reply, Exception):
        if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
            return options[EMPTY_RESPONSE]
        raise reply
    if options:
        options.pop("keys", None)
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
    callback = _dict_get(callbacks, command)
    if callback is not None:
        return callback(reply, **options)
    return reply


def _pop_connection_args(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    # Leaves the connection settings in kwargs; RetryPolicy takes the rest.
    return {k: kwargs.pop(k) for k in list(kwargs) if k not in _RETRY_ARGS}


_RETRY_ARGS = frozenset(("retry", "retry_on_timeout", "retry_on_error", "retry_writes"))


def _refuse_with_pool(kwargs: Dict[str, Any]) -> None:
    """With ``connection_pool=``, connection settings come from the pool: one
    given as well must be at its default (redis-py would ignore it silently;
    geredis says so)."""
    for name, value in kwargs.items():
        if name in _RETRY_ARGS:
            continue
        if not is_default_argument(name, value):
            raise ValueError(
                f"geredis.Redis(connection_pool=..., {name}={value!r}): with a pool,"
                f" connection settings come from the pool; set {name} on the pool"
            )


def from_url(url: str, **kwargs: Any) -> Redis:
    """``geredis.Redis.from_url(url, **kwargs)``: a client for a URL.

    Args:
        url: ``redis://...``, ``rediss://...`` or ``unix://...``; see
            :meth:`Redis.from_url`.
        **kwargs: more constructor arguments; the URL's options win over
            them.

    Returns:
        A new :class:`Redis`.

    Raises:
        ValueError: the URL or an argument cannot be used (see
            :meth:`Redis.from_url`).
        TypeError: an argument ``geredis.Redis`` does not take.
    """
    return Redis.from_url(url, **kwargs)


roundtrip.EXECUTE_COMMAND = Redis.execute_command  # see there
