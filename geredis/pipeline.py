"""Pipelines and transactions: redis-py's ``Pipeline`` API over geredis.

How this works: :class:`Pipeline` subclasses ``redis.client.Pipeline``, so it
keeps redis-py's queueing, ``multi``/``watch``/``unwatch``, error annotation
and ``Script`` support (``Script.__call__`` registers scripts on any
``redis.client.Pipeline``, and ``load_scripts`` runs before ``execute``). It
replaces only the I/O:

* ``execute()`` sends the whole stack as one contiguous batch: every command
  packed together and appended to the FIFO with one ``submit_batch``, so no
  other greenlet's command lands between them. A transaction is the batch
  ``MULTI ... EXEC``. Replies are collected by one ``BatchSlot`` and go
  through the client's response callbacks, as single commands do.
* Where the batch runs: on the shared connection, unless the pipeline is
  WATCHing (or belongs to a pinned ``r.client()``: its connection), has more
  than ``threshold`` commands, or (without MULTI) holds a blocking command;
  then on a dedicated connection from the client's pool, in chunks of
  ``CHUNK`` commands with ``WINDOW`` chunks in flight, so neither the other
  greenlets nor memory pay for a million-command pipeline.
* ``watch()`` leases a dedicated connection; commands run on it at once
  until ``multi()``, like redis-py. ``reset()`` (after ``execute``, on context
  exit) sends UNWATCH if needed and returns the lease; the pool keeps it only
  when clean and aborts it otherwise. A connection lost while WATCHing
  raises ``WatchError``, which :func:`run_transaction` retries.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import gevent
import redis.client
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError, ExecAbortError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import Connection
from .dedicated import call, check_usable, wait_batch, wait_bound
from .observability import observers
from .observability.tracing import PLAIN_EXECUTE, PLAIN_IMMEDIATE, REDIS_PIPELINE, traced_pipeline
from .routing import ROUTES, block_seconds, is_blocking
from .slots import BatchSlot, RawSlot

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = ["CHUNK", "PIPELINE_THRESHOLD", "WINDOW", "Pipeline", "exchange", "run_transaction"]

#: Default size above which a batch runs on a dedicated connection.
PIPELINE_THRESHOLD = 2000
#: Commands per write on a dedicated connection.
CHUNK = 5000
#: Chunks of :data:`CHUNK` commands kept in flight on a dedicated connection.
WINDOW = 3

#: ``(args, options)``: one queued command, as ``execute_command`` took it.
Command = Tuple[Tuple[Any, ...], Dict[str, Any]]
_MULTI: Command = (("MULTI",), {})
_EXEC: Command = (("EXEC",), {})
_LEASED = ("WATCH", "UNWATCH")  # transaction commands allowed on a pipeline's lease


def _name(raw: Any) -> str:
    if type(raw) is str:
        return raw.upper()
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw).decode("ascii", "replace").upper()
    return str(raw).upper()


class Pipeline(redis.client.Pipeline):  # type: ignore[misc]
    """``r.pipeline(transaction=True, shard_hint=None, threshold=None)``.

    redis-py's pipeline: command methods queue and return the pipeline (so
    calls chain), ``execute()`` sends them all as one batch and returns
    their results. ``watch()`` switches to immediate mode on a dedicated
    connection until ``multi()``. Use it as a context manager, or call
    ``reset()``, so that a WATCH connection goes back to the pool.

    Args:
        client: the client whose connections and callbacks it uses.
        transaction: wrap the batch in MULTI/EXEC.
        shard_hint: accepted for redis-py compatibility; unused.
        threshold: the batch size above which the pipeline runs on a
            dedicated connection (default: the client's
            ``pipeline_threshold``).
        pinned: for ``r.client()``'s pipelines: returns the pinned
            connection, which every batch then uses.
        refuse: for ``r.client()``'s pipelines: raises for commands the
            pinned connection cannot run.
    """

    def __init__(self, client: "Redis", transaction: bool = True, shard_hint: Any = None,
                 *, threshold: Optional[int] = None,
                 pinned: Optional[Callable[[], Connection]] = None,
                 refuse: Optional[Callable[[str, Tuple[Any, ...]], None]] = None) -> None:
        # redis.client.Pipeline.__init__ wants a connection pool: set its state here.
        self._client = client
        self.connection_pool = client.connection_pool  # type: ignore[assignment]
        self.connection = None
        self.response_callbacks = client.response_callbacks
        self.transaction = transaction  # type: ignore[method-assign,assignment]
        self.shard_hint = shard_hint
        self.watching = False
        self.command_stack: List[Command] = []
        self.scripts: set[Any] = set()
        self.explicit_transaction = False
        self.threshold = client.pipeline_threshold if threshold is None else threshold
        self._pinned = pinned  # a pinned client's connection getter
        self._refuse = refuse  # and its refusals
        self._lease: Optional[Connection] = None
        self._lease_pool: Any = None  # the pool the lease came from
        self._callbacks: Dict[Any, Any] = {}  # raw command name -> callback or None
        self._in_trace = False  # inside a wrapper patched onto redis-py's Pipeline

    def __repr__(self) -> str:
        return (
            f"<geredis.Pipeline {self._client.settings.address} commands={len(self)}"
            f" transaction={bool(self.transaction)} watching={self.watching}>"
        )

    def __enter__(self) -> "Pipeline":
        return self

    def __del__(self) -> None:
        # Never blocks: a WATCHing lease is aborted rather than UNWATCHed.
        conn = getattr(self, "_lease", None)
        if conn is not None:
            self._lease = None
            try:
                conn.abort()
                self._lease_pool.release(conn)
            except Exception:  # interpreter shutdown
                pass

    # -- the two commands ETL pipelines queue most --------------------------

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        """Queue ``SET``; the two-argument form skips redis-py's option parsing.

        Args:
            name: the key.
            value: the value.
            *args: redis-py's ``set`` options, positionally.
            **kwargs: redis-py's ``set`` options (``ex``, ``px``, ``nx``...).

        Returns:
            The pipeline, so that calls chain (in immediate mode after
            ``watch()``: the command's result).
        """
        if args or kwargs:
            return super().set(name, value, *args, **kwargs)
        return self.execute_command("SET", name, value)  # type: ignore[no-untyped-call]

    def get(self, name: Any) -> Any:
        """Queue ``GET`` without redis-py's per-call option dict.

        Args:
            name: the key.

        Returns:
            The pipeline, so that calls chain (in immediate mode after
            ``watch()``: the value).
        """
        return self.execute_command("GET", name)  # type: ignore[no-untyped-call]

    # -- state ------------------------------------------------------------------

    def reset(self) -> None:  # type: ignore[override]
        """Drop queued commands; UNWATCH and give back a dedicated connection.

        Called by ``execute()`` and when a ``with`` block ends. Never raises
        for a failed UNWATCH: the connection is closed instead, which forgets
        the WATCH too.
        """
        self.command_stack = []
        self.scripts = set()
        conn = self._lease if self._pinned is None else self._client._connection
        if self.watching and conn is not None:
            try:
                call(conn, self._client._packer.pack(("UNWATCH",)), False, self._client._timeout)
            except (ConnectionError, RedisTimeoutError):
                conn.abort()  # closing the connection forgets the WATCH too
        self.watching = False
        self.explicit_transaction = False
        lease, self._lease = self._lease, None
        if lease is not None:
            self._lease_pool.release(lease)

    def discard(self) -> None:
        """Forget the queued commands and any WATCH (DISCARD's effect)."""
        self.reset()

    def _conn_in_use(self) -> Optional[Connection]:
        return self._lease if self._pinned is None else self._pinned()

    def _leased_connection(self) -> Connection:
        if self._pinned is not None:
            return self._pinned()
        if self._lease is None:
            self._lease_pool = self._client._dedicated
            self._lease = self._lease_pool.acquire(graceful=True)
        return self._lease

    def _check(self, command: str, args: Tuple[Any, ...], mode: str) -> float:
        """Refuse what cannot run here; return how long it may block (0.0:
        not at all). ``mode``: ``"now"`` (immediate, on the WATCH lease),
        ``"batch"`` or ``"multi"`` (queued, inside MULTI ... EXEC)."""
        if self._refuse is not None:
            self._refuse(command, args)
            if command == "SELECT":
                raise redis.exceptions.RedisError(
                    "SELECT in a pipeline: call select() on the pinned client itself"
                )
        elif not (mode == "now" and command in _LEASED):
            route = ROUTES.get(command)
            if route is None or not route(self._client, command, args):
                return 0.0
        if mode == "multi" or not is_blocking(command, args):
            return 0.0
        return block_seconds(command, args)

    # -- immediate mode (after WATCH) --------------------------------------------

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command now: on the WATCH lease (or pinned connection), or
        on the shared connection when nothing is WATCHed (``load_scripts``).

        Args:
            *args: the command and its arguments.
            **options: redis-py's per-call options for the response callback.

        Returns:
            The command's result, after its response callback.

        Raises:
            redis.WatchError: the connection failed or timed out while WATCHing
                (the server forgot the WATCH with it).
            geredis.SharedConnectionError: a command that cannot run here.
            geredis.PoolExhaustedError: no dedicated connection for the WATCH within
                ``dedicated_timeout``.
            redis.ResponseError: the server's error reply.
        """
        command = _name(args[0])
        if not self.watching and command != "WATCH" and self._pinned is None:
            return self._client.execute_command(*args, **options)
        if REDIS_PIPELINE.immediate_execute_command is not PLAIN_IMMEDIATE and not self._in_trace:
            return traced_pipeline(self, "immediate_execute_command", args, options)
        extra = self._check(command, args, "now")
        packed = self._client._packer.pack(args)
        conn = self._leased_connection()
        bound = wait_bound(extra, self._client._timeout)
        try:
            reply = call(conn, packed, NEVER_DECODE in options, bound,
                         abort=self._pinned is None or extra > 0)
        except (ConnectionError, RedisTimeoutError) as exc:
            self._client._after_foreign_write((command,))
            if self.watching:
                self.reset()
                raise WatchError(
                    f"A {type(exc).__name__} occurred while watching one or more keys"
                ) from exc
            raise
        self._client._after_foreign_write((command,))
        if not isinstance(reply, Exception):
            if command == "WATCH":
                self.watching = True
            elif command in self.UNWATCH_COMMANDS:
                self.watching = False
        return self._client._finish(command, reply, options)

    # -- execute -------------------------------------------------------------------

    def execute(self, raise_on_error: bool = True) -> List[Any]:
        """Run the queued commands, then :meth:`reset`.

        Args:
            raise_on_error: raise the first command's error reply (annotated
                with its position, as redis-py does); False leaves each error
                reply in its place in the result list.

        Returns:
            One result per queued command, in order, after the response
            callbacks; ``[]`` for an empty pipeline (nothing is sent).

        Raises:
            redis.ResponseError: with ``raise_on_error``, the first error reply.
            redis.ExecAbortError: the server refused a command while queuing the
                transaction; nothing ran.
            redis.WatchError: a WATCHed key changed (nothing ran).
            geredis.SharedConnectionError: a queued command that cannot run in a
                pipeline (checked before anything is sent).
            redis.TimeoutError: no reply within ``socket_timeout`` (plus the block
                time of blocking commands in a batch).
            redis.ConnectionError: the connection failed; pipelines are not
                retried. Once the batch was sent its outcome is unknown (a
                transaction may have run): this is raised as it is, also
                while WATCHing, never as a ``WatchError`` that
                ``r.transaction()`` would retry.
        """
        if REDIS_PIPELINE.execute is not PLAIN_EXECUTE and not self._in_trace:
            return traced_pipeline(self, "execute", (raise_on_error,), {})  # type: ignore[no-any-return]
        client = self._client
        try:
            if observers.GLOBAL or client._observers:
                return self._observed_execute(raise_on_error)
            return self._execute(raise_on_error)
        except Exception as exc:
            client._stats.error(exc)
            raise

    def _observed_execute(self, raise_on_error: bool) -> List[Any]:
        # Times the batch for the observers (metrics, slow log).
        multi = self.transaction or self.explicit_transaction  # type: ignore[truthy-function]
        operation = "MULTI" if multi else "PIPELINE"  # type: ignore[truthy-function]
        commands = [args for args, _ in self.command_stack]
        start = perf_counter()
        try:
            result = self._execute(raise_on_error)
        except BaseException as exc:
            observers.notify_pipeline(self._client, operation, commands, perf_counter() - start, exc)
            raise
        observers.notify_pipeline(self._client, operation, commands, perf_counter() - start, None)
        return result

    def _execute(self, raise_on_error: bool) -> List[Any]:
        stack = self.command_stack
        if not stack and not self.watching:
            return []
        try:
            if self.scripts:
                self.load_scripts()  # type: ignore[no-untyped-call]
            if self.transaction or self.explicit_transaction:  # type: ignore[truthy-function]
                return self._execute_multi(stack, raise_on_error)
            return self._execute_batch(stack, raise_on_error)
        except (ConnectionError, RedisTimeoutError):
            # The batch (EXEC included) may have run: its outcome is unknown,
            # so this is no WatchError, which r.transaction() would answer by
            # running the transaction again (redis-py does; it can apply the
            # writes twice). The caller re-reads and decides, as for a write.
            raise
        finally:
            self.reset()
            self._client._after_foreign_write(_name(args[0]) for args, _ in stack)

    def _run(self, commands: Sequence[Command], extra: float,
             consume: Callable[[int, List[Any]], None]) -> None:
        """Send ``commands`` as one batch; hand their replies in order to
        ``consume(offset, replies)``, chunk by chunk on a dedicated connection."""
        conn = self._conn_in_use()
        if conn is None and (extra > 0 or len(commands) > self.threshold):
            pool = self._client._dedicated
            conn = pool.acquire(graceful=True)
            try:
                self._exchange(conn, commands, extra, consume)
            finally:
                pool.release(conn)
        elif conn is not None:
            self._exchange(conn, commands, extra, consume)
        else:
            packed = self._client._packer.pack_commands([args for args, _ in commands])
            slot = BatchSlot(len(commands))
            shared = self._client._usable_connection()
            shared.submit_batch(packed, _slots(slot, commands))
            consume(0, self._client._check_batch(shared, slot.result.get()))

    def _exchange(self, conn: Connection, commands: Sequence[Command], extra: float,
                  consume: Callable[[int, List[Any]], None]) -> None:
        check = self._client._check_batch  # READONLY: the node was demoted (Sentinel)
        exchange(conn, self._client._packer, commands,
                 wait_bound(extra, self._client._timeout),
                 lambda offset, replies: consume(offset, check(conn, replies)))

    def _check_stack(self, stack: List[Command], mode: str) -> float:
        """:meth:`_check` every queued command; the total they may block."""
        extra = 0.0
        plain: set[Any] = set()  # names with no route: no need to look again
        for args, _ in stack:
            raw = args[0]
            hashable = type(raw) is str or type(raw) is bytes
            if hashable and raw in plain:
                continue
            command = _name(raw)
            if command in ROUTES:
                extra += self._check(command, args, mode)
            elif hashable:
                plain.add(raw)
        return extra

    def _execute_batch(self, stack: List[Command], raise_on_error: bool) -> List[Any]:
        extra = self._check_stack(stack, "batch")
        responses: List[Any] = []
        self._run(stack, extra, lambda offset, replies: self._parse(
            stack[offset:offset + len(replies)], replies, responses))
        for reply in responses:
            if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                raise reply
        if raise_on_error:
            self.raise_first_error(stack, responses)  # type: ignore[no-untyped-call]
        return responses

    def _parse(self, part: Sequence[Command], replies: List[Any], out: List[Any]) -> None:
        # Replies through the client's callbacks; error replies stay in place.
        append = out.append
        cache = self._callbacks
        callbacks = self.response_callbacks
        for (args, options), reply in zip(part, replies):
            if options or isinstance(reply, Exception):
                append(self._parse_one(args, options, reply))
                continue
            raw = args[0]
            try:
                callback = cache[raw]
            except (KeyError, TypeError):
                callback = callbacks.get(_name(raw))  # type: ignore[no-untyped-call]
                if type(raw) is str or type(raw) is bytes:
                    cache[raw] = callback
            append(reply if callback is None else callback(reply))

    def _parse_one(self, args: Tuple[Any, ...], options: Dict[str, Any], reply: Any) -> Any:
        if isinstance(reply, Exception):
            if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
                return options[EMPTY_RESPONSE]
            return reply
        options.pop("keys", None)
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
        callback = self.response_callbacks.get(_name(args[0]))  # type: ignore[no-untyped-call]
        return reply if callback is None else callback(reply, **options)

    def _execute_multi(self, stack: List[Command], raise_on_error: bool) -> List[Any]:
        self._check_stack(stack, "multi")
        sent = [i for i, (_, options) in enumerate(stack) if EMPTY_RESPONSE not in options]
        commands = [_MULTI, *(stack[i] for i in sent), _EXEC]
        last = len(commands) - 1
        errors: List[Tuple[int, Any]] = []
        exec_reply: List[Any] = [None]

        def consume(offset: int, replies: List[Any]) -> None:
            for i, reply in enumerate(replies, offset):
                if i == last:
                    exec_reply[0] = reply
                elif isinstance(reply, ResponseError):
                    if i == 0:
                        errors.append((0, reply))  # MULTI refused (as redis-py reports it)
                    else:
                        index = sent[i - 1]
                        self.annotate_exception(  # type: ignore[no-untyped-call]
                            reply, index + 1, stack[index][0])
                        errors.append((index, reply))

        self._run(commands, 0.0, consume)
        if len(sent) < len(stack):
            errors += [(i, options[EMPTY_RESPONSE])
                       for i, (_, options) in enumerate(stack) if EMPTY_RESPONSE in options]
            errors.sort(key=lambda item: item[0])
        response = exec_reply[0]
        if isinstance(response, ExecAbortError):
            # redis-py raises the first queuing error; as an ExecAbortError
            # (a ResponseError) with its annotated message, both catch it.
            for _, error in errors:
                if isinstance(error, Exception):
                    raise ExecAbortError(*error.args) from error
            raise response
        if isinstance(response, Exception):
            raise response
        self.watching = False  # EXEC forgets every WATCH
        if response is None:
            raise WatchError("Watched variable changed.")
        response = list(response)
        for i, error in errors:
            response.insert(i, error)
        if len(response) != len(stack):
            raise ResponseError("Wrong number of response items from pipeline execution")
        if raise_on_error:
            self.raise_first_error(stack, response)  # type: ignore[no-untyped-call]
        return [
            reply if isinstance(reply, Exception) or EMPTY_RESPONSE in options
            else self._parse_one(args, options, reply)
            for (args, options), reply in zip(stack, response)
        ]


def exchange(conn: Connection, packer: Any, commands: Sequence[Command],
             bound: Optional[float], consume: Callable[[int, List[Any]], None]) -> None:
    """Send ``commands`` on a dedicated connection in chunks of ``CHUNK``,
    ``WINDOW`` chunks in flight; hand each chunk's replies, in order, to
    ``consume(offset, replies)``. Each wait is bounded by ``bound``; a caller
    that gives up aborts the connection (``wait_batch``).

    Args:
        conn: a leased dedicated connection.
        packer: the client's :class:`~geredis.protocol.Packer`.
        commands: the commands, in order.
        bound: the longest each chunk's replies may take, in seconds (None:
            forever).
        consume: called with the offset of each chunk's first command and
            its raw replies (error replies as values), in order.

    Raises:
        redis.TimeoutError: a chunk's replies were not in within ``bound``
            (the connection is aborted).
        redis.ConnectionError: the connection broke, or was closed, before
            the last reply.
        redis.DataError: a command has an argument of a type that cannot be
            sent.
    """
    pack = packer.pack_commands
    inflight: Deque[Tuple[int, BatchSlot]] = deque()
    for start in range(0, len(commands), CHUNK):
        part = commands[start:start + CHUNK]
        slot = BatchSlot(len(part))
        packed = pack([args for args, _ in part])
        check_usable(conn)
        conn.submit_batch(packed, _slots(slot, part))
        inflight.append((start, slot))
        if len(inflight) >= WINDOW:
            offset, done = inflight.popleft()
            consume(offset, wait_batch(conn, done, bound))
    while inflight:
        offset, done = inflight.popleft()
        consume(offset, wait_batch(conn, done, bound))


def _slots(slot: BatchSlot, commands: Sequence[Command]) -> List[Any]:
    """One slot per reply; NEVER_DECODE replies are read undecoded."""
    slots: List[Any] = [slot] * len(commands)
    for i, (_, options) in enumerate(commands):
        if options and NEVER_DECODE in options:
            slots[i] = RawSlot(slot)
    return slots


def run_transaction(client: Any, func: Callable[[Any], Any], watches: Sequence[Any],
                    shard_hint: Any = None, value_from_callable: bool = False,
                    watch_delay: Optional[float] = None) -> Any:
    """``r.transaction(func, *watches)``: WATCH ``watches``, call ``func(pipe)``,
    EXEC; start over on ``WatchError`` (sleeping ``watch_delay`` cooperatively).

    Args:
        client: the client: anything with redis-py's ``pipeline(transaction,
            shard_hint)`` (``geredis.Redis``, ``geredis.RedisCluster``).
        func: called with the pipeline; reads run at once (immediate mode),
            then it calls ``pipe.multi()`` and queues the writes.
        watches: the keys to WATCH.
        shard_hint: accepted for redis-py compatibility; unused.
        value_from_callable: return what ``func`` returned instead of the
            EXEC results.
        watch_delay: seconds to sleep before trying again after a conflict.

    Errors from ``func`` and from ``execute()`` propagate, except
    ``WatchError``, which starts over (with no bound on the number of tries,
    as in redis-py).

    Returns:
        The EXEC results, or ``func``'s value with ``value_from_callable``.
    """
    with client.pipeline(True, shard_hint) as pipe:
        while True:
            try:
                if watches:
                    pipe.watch(*watches)  # type: ignore[no-untyped-call]
                func_value = func(pipe)
                exec_value = pipe.execute()
                return func_value if value_from_callable else exec_value
            except WatchError:
                if watch_delay is not None and watch_delay > 0:
                    gevent.sleep(watch_delay)
