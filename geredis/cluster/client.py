"""``geredis.RedisCluster``: redis-py's ``RedisCluster`` API, one multiplexed
connection per node.

How this works: :class:`RedisCluster` subclasses ``redis.cluster.RedisCluster``
for its command mixins (``RedisClusterCommands``: the cluster's own commands,
``mget_nonatomic``, ``scan_iter`` over every node ...), its command flags,
node selection (``get_node``, ``get_primaries``, ``_determine_nodes``,
``determine_slot``, replica load balancing) and result aggregation
(``_process_result`` with its ``RESULT_CALLBACKS``), and for
``isinstance(rc, redis.RedisCluster)``. It never runs redis-py's constructor
(which connects with blocking sockets and builds per-node pools); it sets up
the same attributes over geredis pieces instead:

* ``nodes_manager`` is redis-py's ``NodesManager`` state filled by geredis
  (``topology.py``); each ``ClusterNode.redis_connection`` is a
  ``NodeRedis``, a ``geredis.Redis`` for that node (``nodes.py``);
* the map is read at construction (like redis-py) and again in the
  background whenever the cluster says it changed (``refresh.py``);
* ``commands_parser`` is redis-py's ``CommandsParser`` over this client (the
  server's ``COMMAND`` table); it also gives the fast path its set of
  single-key commands;
* ``execute_command`` is ``routing.py``'s.

redis-py arguments that cannot apply (``db``, a unix socket, client-side
caching, maintenance notifications) raise a clear error.
"""

from __future__ import annotations

import threading
from binascii import crc_hqx
from collections import Counter
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Type, TypeVar,
)  # fmt: skip

import gevent

import redis.cluster
from redis._defaults import DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, DEFAULT_RETRY_COUNT
from redis._parsers import CommandsParser, Encoder
from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.client import NEVER_DECODE
from redis.commands.cluster import READ_COMMANDS
from redis.crc import key_slot
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import CaseInsensitiveDict
from redis.cluster import (
    SLOT_ID,
    ClusterNode,
    LoadBalancingStrategy,
    parse_cluster_shards_unified,
    parse_cluster_shards_with_str_keys,
)
from redis.commands.policies import PolicyResolver, StaticPolicyResolver
from redis.event import EventDispatcher
from redis.exceptions import RedisClusterException, WatchError
from redis.himport import HImportRegistry
from redis.retry import Retry

from ..client import finish_reply
from ..compat import response_callbacks, settings_from_kwargs
from ..caller import Caller
from ..connection import State
from ..exceptions import ClientClosedError
from ..guards import check_thread, real_thread_id
from ..lock import Lock
from ..observability.stats import Stats, combine
from ..observability.tracing import (
    CLUSTER, INSIDE, PLAIN_CLUSTER_EXECUTE_COMMAND, traced_command,
)
from ..pipeline import run_transaction
from ..protocol import Packer
from ..dedicated import MAX_DEDICATED
from ..retry import RetryPolicy
from ..routing import ROUTES, command_name
from ..settings import max_dedicated_for, parse_url
from . import batch, policies
from .nodes import NodeRedis, NodeSettings
from .pipeline import ClusterPipeline
from .refresh import Refresher
from . import routing
from .routing import BROKEN, REPLY_TYPES
from .topology import NodesManager

if TYPE_CHECKING:  # pragma: no cover
    from .pubsub import ClusterPubSub

__all__ = ["RedisCluster"]

_R = TypeVar("_R", bound="RedisCluster")
_OPEN = State.OPEN
_dict_get = dict.get
_NOT_SPLIT = frozenset(("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"))


class RedisCluster(redis.cluster.RedisCluster):  # type: ignore[misc]
    """A Redis Cluster client whose commands, from any number of greenlets,
    share one auto-pipelined connection per node. Takes
    ``redis.cluster.RedisCluster``'s arguments.

    Args:
        host: a node to read the slot map from first (with ``port``).
        port: that node's port.
        startup_nodes: nodes to read the slot map from first
            (``[ClusterNode(host, port), ...]``).
        cluster_error_retry_attempts: redis-py's; the attempts of the
            default ``retry``.
        retry: redis-py's ``Retry``; a command whose connection broke is
            sent again only when that is harmless (see ``geredis.retry``).
            ``retry_on_timeout`` and ``retry_writes`` are taken too.
        require_full_coverage: refuse a map that leaves slots unserved.
        reinitialize_steps: 0 stops MOVED replies from asking for a new map
            (the slot is still patched); any other value asks, at most one
            refresh at a time.
        read_from_replicas: read commands may go to replicas (their
            connections send READONLY).
        load_balancing_strategy: how reads spread over a shard's nodes
            (redis-py's ``LoadBalancingStrategy``); implies replica reads.
        dynamic_startup_nodes: as in redis-py: the nodes of each map become
            the startup nodes of the next read.
        url: ``redis://host:port`` (or ``rediss://``) of a node to start
            from, with options as for ``geredis.Redis.from_url``.
        address_remap: as in redis-py: ``f((host, port)) -> (host, port)``
            for every node address the cluster reports.
        cache: refused (``ValueError``): no client-side caching here yet.
        cache_config: refused (``ValueError``), as ``cache``.
        event_dispatcher: as in redis-py.
        policy_resolver: as in redis-py: which node(s) a keyless command
            goes to and how replies combine.
        maint_notifications_config: refused (``ValueError``) when enabled.
        cluster_refresh_interval: seconds between background re-reads of the
            map (default 30; 0 or None: only when the cluster says so).
        max_redirections: MOVED/ASK replies followed per command (16), then
            ``ClusterError``.
        parser: as for ``geredis.Redis``, for each node.
        max_dedicated: as for ``geredis.Redis``, for each node (default
            10,000; redis-py's ``max_connections=N`` in ``kwargs`` means
            ``N - 1``, as for ``geredis.Redis``).
        dedicated_timeout: as for ``geredis.Redis``, for each node.
        pipeline_threshold: as for ``geredis.Redis``, for each node.
        **kwargs: the connection arguments (password, ``ssl_*``,
            socket_timeout, decode_responses, protocol, max_in_flight, ...):
            as for ``geredis.Redis``, for each node.

    Raises:
        redis.RedisClusterException: no startup node, ``db``, a unix socket,
            or no reachable node answered with a usable slot map.
        geredis.cluster.ClusterUnreachableError: no node could be connected
            to (refused, timed out, TLS certificate or credentials refused);
            a ``RedisClusterException`` and a ``redis.ConnectionError``.
        ValueError: a redis-py argument geredis cannot honour.
        TypeError: an argument ``geredis.Redis`` does not take.
    """

    _is_async_client = False
    nodes_manager: NodesManager
    _refresher: Refresher

    def __init__(
        self,
        host: Optional[str] = None,
        port: int = 6379,
        startup_nodes: Optional[List[ClusterNode]] = None,
        cluster_error_retry_attempts: int = DEFAULT_RETRY_COUNT,
        retry: Optional[Retry] = None,
        require_full_coverage: bool = True,
        reinitialize_steps: int = 5,
        read_from_replicas: bool = False,
        load_balancing_strategy: Optional[LoadBalancingStrategy] = None,
        dynamic_startup_nodes: bool = True,
        url: Optional[str] = None,
        address_remap: Optional[Callable[[Tuple[str, int]], Tuple[str, int]]] = None,
        cache: Any = None,
        cache_config: Any = None,
        event_dispatcher: Optional[EventDispatcher] = None,
        policy_resolver: Optional[PolicyResolver] = None,
        maint_notifications_config: Any = None,
        *,
        cluster_refresh_interval: Optional[float] = 30.0,
        max_redirections: int = 16,
        parser: str = "auto",
        max_dedicated: Optional[int] = None,
        dedicated_timeout: Optional[float] = None,
        pipeline_threshold: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        self._closed = True  # until built: close()/__del__ have nothing to do
        startup = list(startup_nodes or [])
        if "db" in kwargs:
            raise RedisClusterException("Argument 'db' is not possible to use in cluster mode")
        if cache is not None or cache_config is not None:
            raise ValueError("geredis.RedisCluster does not support client-side caching"
                             " (cache=, cache_config=) yet")  # fmt: skip
        if maint_notifications_config is not None and getattr(
                maint_notifications_config, "enabled", False):  # fmt: skip
            raise ValueError("geredis.RedisCluster does not support maintenance notifications")
        if url is not None:
            options = parse_url(url)
            if "unix_socket_path" in options:
                raise RedisClusterException(
                    "RedisCluster does not currently support Unix Domain Socket connections")
            if options.pop("db", 0) != 0:
                raise RedisClusterException("A ``db`` querystring option can only be 0 in"
                                            " cluster mode")  # fmt: skip
            options.update(kwargs)
            kwargs = options
            host = kwargs.pop("host", host)
            port = kwargs.pop("port", port)
            startup.append(ClusterNode(host or "localhost", port))
        elif host is not None:
            startup.append(ClusterNode(host, port))
        elif not startup:
            raise RedisClusterException(
                "RedisCluster requires at least one node to discover the cluster:"
                " host and port (RedisCluster(host='localhost', port=6379)) or"
                " startup_nodes=[ClusterNode('localhost', 6379), ...]"
            )
        if kwargs.get("unix_socket_path"):
            raise RedisClusterException(
                "RedisCluster does not currently support Unix Domain Socket connections")
        max_dedicated = max_dedicated_for(kwargs, max_dedicated)
        if max_dedicated is None:
            max_dedicated = MAX_DEDICATED
        kwargs.setdefault("retry", retry or Retry(
            ExponentialWithJitterBackoff(base=DEFAULT_RETRY_BASE, cap=DEFAULT_RETRY_CAP),
            cluster_error_retry_attempts))  # fmt: skip
        self._retry = RetryPolicy.from_kwargs(kwargs)
        self.settings = settings = settings_from_kwargs(kwargs)
        self._node_options: Dict[str, Any] = dict(
            parser=parser, max_dedicated=max_dedicated, dedicated_timeout=dedicated_timeout,
            pipeline_threshold=pipeline_threshold)  # fmt: skip
        self._owner_thread = real_thread_id()
        self._timeout = settings.socket_timeout
        self._encoding = settings.encoding
        self._encoding_errors = settings.encoding_errors
        self._packer = Packer(settings.encoding, settings.encoding_errors)
        self.encoder = Encoder(settings.encoding, settings.encoding_errors,
                               settings.decode_responses)  # type: ignore[no-untyped-call]
        self.response_callbacks = response_callbacks(settings.protocol, settings.legacy_responses)
        self.cluster_response_callbacks = policies.cluster_callbacks(settings)
        self.result_callbacks = CaseInsensitiveDict(self.RESULT_CALLBACKS)
        self.command_flags = self.COMMAND_FLAGS.copy()
        self.node_flags = self.NODE_FLAGS.copy()
        self.read_from_replicas = read_from_replicas
        self.load_balancing_strategy = load_balancing_strategy
        self._replica_reads = bool(read_from_replicas or load_balancing_strategy)
        self.reinitialize_counter = 0
        self.reinitialize_steps = reinitialize_steps
        self.max_redirections = max_redirections
        #: What ``execute_command`` had to follow, by reply or error class
        #: (MovedError, AskError, TryAgainError, ConnectionClosedError ...).
        self.redirects: Counter[str] = Counter()
        self.user_on_connect_func = None
        self._event_dispatcher = event_dispatcher or EventDispatcher()
        self._policy_resolver = policy_resolver or StaticPolicyResolver()
        self._himport_registry = HImportRegistry()
        self._aggregate_nodes = None
        self._lock = threading.RLock()
        self._single_key: FrozenSet[str] = frozenset()
        self.startup_nodes = startup
        self._command_flags_mapping, self._policies_callback_mapping = policies.tables(self)
        self.nodes_manager = NodesManager(
            startup, self._make_node, require_full_coverage=require_full_coverage,
            dynamic_startup_nodes=dynamic_startup_nodes, address_remap=address_remap,
            connection_kwargs=settings.connection_kwargs(),
            event_dispatcher=self._event_dispatcher,
        )  # fmt: skip
        self._refresher = Refresher(self.nodes_manager, settings.socket_timeout,
                                    tls=settings.ssl, interval=cluster_refresh_interval)
        self._closed = False
        try:
            self._refresher.refresh()
            self.commands_parser = CommandsParser(self)
        except BaseException:
            self.close()
            raise
        self._single_key = policies.single_key_commands(self.commands_parser.commands,
                                                       self.command_flags)  # fmt: skip

    @classmethod
    def from_url(cls: Type[_R], url: str, **kwargs: Any) -> _R:
        """A client for ``redis://host:port`` (or ``rediss://``); options as
        for ``geredis.Redis.from_url``; kwargs win.

        Args:
            url: the URL of a node to start from.
            **kwargs: the constructor's other arguments.

        Returns:
            The client, its slot map read.

        Raises:
            redis.RedisClusterException: as for the constructor.
            ValueError: the URL cannot be read.
        """
        return cls(url=url, **kwargs)

    #: Observers of this client's commands (``enable_slow_log(t, rc)``,
    #: ``enable_metrics(rc)``: see ``geredis.observability.observers``).
    _observers: Tuple[Any, ...] = ()
    #: Called with each node client made from now on (``enable_metrics(rc)``
    #: measures nodes that a reshard or failover adds).
    _node_hooks: Tuple[Callable[[NodeRedis], None], ...] = ()

    def _make_node(self, host: str, port: int) -> NodeRedis:
        settings = NodeSettings.for_node(self.settings, host, port, self._replica_reads)
        node = NodeRedis(settings, **self._node_options)
        for hook in self._node_hooks:
            hook(node)
        return node

    def node_clients(self) -> List[NodeRedis]:
        """The node clients this client made and still knows (the map's
        nodes and the startup nodes): one ``geredis.Redis`` per node.

        Returns:
            A new list, each node's client once.
        """
        return [node.redis_connection for node in self._owned_nodes()]

    def __repr__(self) -> str:
        state = "CLOSED" if self._closed else "OPEN"
        nodes = len(self.nodes_manager.nodes_cache) if hasattr(self, "nodes_manager") else 0
        return f"<geredis.RedisCluster nodes={nodes} {state}>"

    # -- the command path (see routing.py) ---------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command where the slot map says; return its result.

        A keyed command goes to its slot's node on that node's shared
        connection (a blocking one on a dedicated connection); a keyless one
        to the node(s) redis-py's policies name, its replies combined.

        Args:
            *args: the command and its arguments.
            **options: redis-py's options (``target_nodes``, ...).

        Returns:
            The reply after the response callback.

        Raises:
            redis.ResponseError: the command's error reply (after following
                MOVED/ASK/TRYAGAIN).
            redis.ClusterError: still redirected after ``max_redirections``.
            redis.ConnectionError: the node's connection broke and the
                command was not safe to send again.
            redis.TimeoutError: no reply within ``socket_timeout``.
            geredis.ClientClosedError: the client was closed.
        """
        if CLUSTER.execute_command is not PLAIN_CLUSTER_EXECUTE_COMMAND and (
            options.pop(INSIDE, None) is None
        ):
            return traced_command(self, args, options, CLUSTER)  # instrumentation patched it
        name = args[0]
        command = name.upper() if type(name) is str else command_name(name)
        if command in self._single_key and len(args) > 1 and (
            not options or "target_nodes" not in options
        ):
            key = args[1]
            kind = type(key)
            if kind is str:
                raw = key.encode(self._encoding, self._encoding_errors)
            elif kind is bytes:
                raw = key
            else:
                raw = self.encoder.encode(key)
            # redis-py's key_slot, inlined for keys without a hash tag.
            slot = key_slot(raw) if b"{" in raw else crc_hqx(raw, 0) & 16383
            return self._keyed(command, slot, args, options)
        return routing.general(self, command, args, options)

    def stats(self) -> Stats:
        """Live statistics summed over the nodes' clients (see
        ``geredis.Redis.stats``); redirections are counted on the node they
        led to. Nodes dropped from the map take their counts with them.

        Returns:
            A :class:`geredis.observability.Stats`.
        """
        nodes = list(self.nodes_manager.nodes_cache.values())
        return combine(n.redis_connection.stats() for n in nodes if n.redis_connection is not None)

    def _internal_execute_command(self, *args: Any, **options: Any) -> Any:
        """Where redis-py's ``execute_command`` ends when instrumentation
        patched it (see ``observability/tracing.py``): run the command."""
        options[INSIDE] = True
        return type(self).execute_command(self, *args, **options)

    def _keyed(self, command: str, slot: int, args: Tuple[Any, ...], options: Dict[str, Any],
               blocking: bool = False) -> Any:  # fmt: skip
        """Send a command for ``slot`` on its node's shared connection (or a
        dedicated one when ``blocking``) and return its result."""
        if real_thread_id() != self._owner_thread:
            check_thread(self._owner_thread)
        if self._closed:
            raise ClientClosedError("this geredis cluster client was closed")
        packed = self._packer.pack(args)
        raw = NEVER_DECODE in options if options else False
        nodes = self.nodes_manager.slots_cache.get(slot)
        if nodes is None or blocking:
            reply = routing.follow(self, command, slot, packed, raw, None, blocking, args)
        else:
            if self._replica_reads and len(nodes) > 1 and command in READ_COMMANDS:
                node = routing.read_node(self, slot)
            else:
                node = nodes[0]
            conn = node.redis_connection._connection
            if conn is None or conn.state is not _OPEN or len(conn._pending) >= conn.max_in_flight:
                reply = routing.follow(self, command, slot, packed, raw, node, False, args)
            else:
                spare = conn.spare_waiters  # reused as in geredis.Redis.execute_command
                waiter = spare.pop() if spare else Caller(conn.handoff)
                conn.submit(packed, waiter, raw)
                try:
                    reply = waiter.get()
                    spare.append(waiter)  # answered: see Connection.spare_waiters
                except BROKEN as exc:
                    reply = routing.follow(self, command, slot, packed, raw, node, False, args,
                                           (exc, conn.opened))  # fmt: skip
                else:
                    if type(reply) in REPLY_TYPES:
                        reply = routing.follow(self, command, slot, packed, raw, node, False,
                                               args, (reply, True))  # fmt: skip
        if options or isinstance(reply, Exception):
            return finish_reply(self.response_callbacks, command, reply, options)
        callback = _dict_get(self.response_callbacks, command)
        if callback is not None:
            return callback(reply)
        return reply

    def _slot_of(self, command: str, args: Tuple[Any, ...]) -> int:
        return policies.slot_of(self, command, args)

    def _targets(self, command: str, args: Tuple[Any, ...],
                 target: Any) -> Tuple[Optional[List[ClusterNode]], CommandPolicies]:  # fmt: skip
        return policies.targets(self, command, args, target)

    # -- the two commands every program runs most -----------------------------------

    def get(self, name: Any) -> Any:
        """``GET name`` (redis-py's ``get`` minus its per-call option dict).

        Args:
            name: the key.

        Returns:
            The value, or None.

        Raises what :meth:`execute_command` raises.
        """
        return self.execute_command("GET", name)

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``SET name value [...]``: redis-py's ``set``; the plain form skips
        its option checks.

        Args:
            name: the key.
            value: the value.
            *args: redis-py's ``set`` options, by position.
            **kwargs: redis-py's ``set`` options (``ex``, ``nx``, ``get``...).

        Returns:
            True (or the old value with ``get=True``; None when ``nx``/``xx``
            prevented it).

        Raises what :meth:`execute_command` raises.
        """
        if args or kwargs:
            return super().set(name, value, *args, **kwargs)
        return self.execute_command("SET", name, value)

    # -- redis-py's client-level API ------------------------------------------------

    @property
    def retry(self) -> Retry:
        """redis-py's ``Retry`` in use (its backoff and attempts)."""
        return self._retry.retry

    @retry.setter
    def retry(self, value: Retry) -> None:
        self._retry.retry = value

    def set_retry(self, retry: Retry) -> None:
        """Use another ``Retry`` (redis-py's API); as setting :attr:`retry`.

        Args:
            retry: redis-py's ``Retry``: its backoff and attempts.
        """
        self._retry.retry = retry

    def refresh(self, timeout: Optional[float] = None) -> None:
        """Read the slot map now and wait for it (at most ``timeout``).

        Args:
            timeout: the longest to wait, in seconds (None: as long as the
                read takes).

        Raises:
            redis.RedisClusterException: no node answered with a usable map.
        """
        self._refresher.refresh(timeout)

    @property
    def refreshes(self) -> int:
        """How many times the slot map was read (rounds, since start)."""
        return self._refresher.rounds

    def lock(self, name: Any, timeout: Optional[float] = None, sleep: float = 0.1,
             blocking: bool = True, blocking_timeout: Optional[float] = None,
             lock_class: Any = None, thread_local: bool = True,
             raise_on_release_error: bool = True) -> Any:  # fmt: skip
        """redis-py's ``lock``; the default class sleeps cooperatively.

        Args:
            name: the lock's key.
            timeout: seconds after which the lock expires by itself (None:
                never).
            sleep: seconds between tries while a blocking ``acquire`` waits.
            blocking: whether ``acquire`` waits by default.
            blocking_timeout: the longest a blocking ``acquire`` waits by
                default (None: no bound).
            lock_class: the class to build (default
                :class:`geredis.lock.Lock`).
            thread_local: keep the token per greenlet.
            raise_on_release_error: whether ``release()`` of a lock no longer
                held raises ``LockNotOwnedError``.

        Returns:
            The lock (not acquired yet).
        """
        return (lock_class or Lock)(
            self, name, timeout=timeout, sleep=sleep, blocking=blocking,
            blocking_timeout=blocking_timeout, thread_local=thread_local,
            raise_on_release_error=raise_on_release_error,
        )  # fmt: skip

    def get_redis_connection(self, node: ClusterNode) -> NodeRedis:
        """The node's own client (``geredis.Redis``), created if needed.

        Args:
            node: a node of this cluster.

        Returns:
            The node's client (its connections are opened lazily).
        """
        if node.redis_connection is None:
            node.redis_connection = self._make_node(node.host, node.port)
        return node.redis_connection  # type: ignore[no-any-return]

    def pipeline(self, transaction: Optional[bool] = None,
                 shard_hint: Any = None) -> "ClusterPipeline":  # fmt: skip
        """redis-py's cluster pipeline: grouped per node, all nodes at once;
        ``transaction=True`` for MULTI/EXEC on one slot.

        Args:
            transaction: MULTI/EXEC (every key in one slot).
            shard_hint: refused: deprecated in cluster mode.

        Returns:
            A new :class:`~geredis.cluster.pipeline.ClusterPipeline`.

        Raises:
            redis.RedisClusterException: ``shard_hint`` was given.
        """
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return ClusterPipeline(self, bool(transaction))

    def transaction(self, func: Callable[["ClusterPipeline"], Any], *watches: Any,
                    **kwargs: Any) -> Any:  # fmt: skip
        """redis-py's ``transaction``: WATCH (one slot), ``func(pipe)``, EXEC,
        again on ``WatchError`` (sleeping ``watch_delay`` cooperatively).

        Args:
            func: called with the pipeline, in immediate mode until it calls
                ``pipe.multi()``.
            *watches: the keys to WATCH (one slot).
            **kwargs: ``shard_hint``, ``value_from_callable``,
                ``watch_delay``, as for :func:`geredis.pipeline.run_transaction`.

        Returns:
            EXEC's replies, or ``func``'s return value with
            ``value_from_callable=True``.

        Raises:
            redis.CrossSlotTransactionError: the watched keys, or the
                transaction's keys, span several slots.
        """
        return run_transaction(self, func, watches, **kwargs)

    def _partition_keys_by_slot(self, keys: Iterable[Any]) -> Dict[int, List[Any]]:
        return batch.partition_keys(self, keys)

    def _execute_pipeline_by_slot(self, command: str,
                                  slots_to_args: Mapping[int, Iterable[Any]]) -> List[Any]:
        """The multi-key commands' split (``mget_nonatomic``, ``mset_nonatomic``,
        cross-slot DEL/EXISTS/TOUCH/UNLINK): one command per slot, all sent at
        once per node; a single slot stays one plain command."""
        if len(slots_to_args) == 1:
            [(slot, args)] = slots_to_args.items()
            return [self._keyed(command, slot, (command, *args), {})]
        return batch.by_slot(self, command, slots_to_args)

    def pubsub(self, node: Optional[ClusterNode] = None, host: Optional[str] = None,
               port: Optional[int] = None, **kwargs: Any) -> "ClusterPubSub":  # fmt: skip
        """Pub/sub over the cluster (``ClusterPubSub``): channels and patterns
        on one node (``node``, or ``host``/``port``, else the default node),
        shard channels at their slot's primary, following it. Takes
        ``geredis.Redis.pubsub()``'s arguments. Close it yourself.

        Args:
            node: the node for channels and patterns.
            host: the node's host, with ``port`` (instead of ``node``).
            port: the node's port.
            **kwargs: ``geredis.Redis.pubsub()``'s arguments.

        Returns:
            A new :class:`~geredis.cluster.pubsub.ClusterPubSub`.

        Raises:
            redis.RedisClusterException: ``host``/``port`` name no node of
                the cluster.
        """
        from .pubsub import ClusterPubSub

        return ClusterPubSub(self, node, host, port, **kwargs)

    def monitor(self, target_node: Optional[ClusterNode] = None) -> Any:
        """MONITOR one node (the default node unless given), on a dedicated
        connection of that node.

        Args:
            target_node: the node to watch (default: the default node).

        Returns:
            A :class:`geredis.monitor.Monitor`; use it as a context manager.
        """
        node = target_node or self.get_default_node()
        return self.get_redis_connection(node).monitor()

    def disconnect_connection_pools(self) -> None:
        """Close every node's connections (pending commands finish first);
        the next command opens new ones."""
        for node in self._owned_nodes():
            conn = node.redis_connection._connection
            if conn is not None:
                conn.close_nowait()

    def _owned_nodes(self) -> List[ClusterNode]:
        if not hasattr(self, "nodes_manager"):
            return []
        nodes = self.nodes_manager.known_nodes() + list(self.startup_nodes)
        seen: Dict[int, ClusterNode] = {}
        for node in nodes:
            if node.redis_connection is not None:
                seen.setdefault(id(node.redis_connection), node)
        return list(seen.values())

    def close(self, timeout: Optional[float] = None) -> None:
        """Refuse new commands, let pending ones finish (at most ``timeout``,
        default ``socket_timeout``), close every node's connections.

        Args:
            timeout: the longest to wait for pending replies, in seconds.
        """
        refresher = getattr(self, "_refresher", None)
        if refresher is not None:
            refresher.close()
        self._closed = True
        for node in self._owned_nodes():
            node.redis_connection.close(timeout)
        if hasattr(self, "nodes_manager"):
            self.nodes_manager.close()

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Start closing, never block (the node clients' own __del__ rule).
        try:
            refresher = getattr(self, "_refresher", None)
            if refresher is not None:
                refresher.close_nowait()
            for node in self._owned_nodes():
                node.redis_connection.__del__()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
