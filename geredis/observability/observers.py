"""Observers: per-command timing, attached only where someone asked for it.

How this works: timing every command costs two clock reads and a call per
command, so it must cost nothing when nobody listens. An :class:`Observer`
(the OpenTelemetry metrics in ``otel.py``, the slow-command log in
``slowlog.py``, or your own) is attached either to one client or to every
client, and attaching swaps the method that commands go through:

* :func:`attach` with a client sets an *instance* attribute
  ``execute_command`` on that client: a closure that times the previous
  one (whatever was there: geredis's own method, or a wrapper that
  ``RedisInstrumentor.instrument_client`` installed) and reports. Other
  clients keep the plain class method: no cost for them.
* :func:`attach` without a client replaces ``geredis.Redis.execute_command``
  on the class with :func:`_observed_execute_command`, which times geredis's
  own method; :func:`detach` of the last global observer puts it back.
* Either way the report goes to the global observers plus the client's own
  (``client._observers``), once per command. Pipelines and transactions
  (``Pipeline.execute``) report once per batch, with their command count;
  they check ``_observers``/:data:`GLOBAL` once per ``execute``.

Observers run in the caller's greenlet right after the reply, so they must
be quick and must not raise (an exception is logged and swallowed, never
handed to the caller). They get the command's arguments to compute what
they need (a key count), never to record them: values and passwords must
not reach a log line or a metric.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, Union

from ..routing import command_name

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Redis
    from ..cluster import RedisCluster

__all__ = ["GLOBAL", "Observer", "attach", "detach", "notify_command", "notify_pipeline",
           "served_by"]

logger = logging.getLogger("geredis.observability")

#: Observers attached to every client.
GLOBAL: Tuple["Observer", ...] = ()
_plain: Optional[Callable[..., Any]] = None  # geredis.Redis.execute_command, unobserved


class Observer:
    """Receives the commands and pipelines of the clients it is attached to.
    Subclass it and override what you need; both methods do nothing here."""

    def command(self, client: Any, args: Tuple[Any, ...], seconds: float,
                error: Optional[BaseException]) -> None:
        """One command finished after ``seconds``; ``error`` is what it
        raised (an error reply, a timeout, a connection error), else None.

        Called in the caller's greenlet once the result is known; an
        exception raised here is logged and ignored.

        Args:
            client: the client that ran it.
            args: the command's arguments, name first.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """

    def pipeline(self, client: Any, operation: str, commands: Sequence[Tuple[Any, ...]],
                 seconds: float, error: Optional[BaseException]) -> None:
        """A pipeline (``operation="PIPELINE"``) or transaction (``"MULTI"``)
        finished; ``commands`` holds each queued command's arguments.

        Called in the caller's greenlet; an exception raised here is logged
        and ignored.

        Args:
            client: the client that ran it.
            operation: ``"PIPELINE"`` or ``"MULTI"``.
            commands: each queued command's arguments.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """


def notify_command(client: Any, args: Tuple[Any, ...], seconds: float,
                   error: Optional[BaseException]) -> None:
    """Tell the global and the client's observers about one command.

    Args:
        client: the client that ran it.
        args: the command's arguments, name first.
        seconds: how long the caller waited.
        error: what it raised, or None.
    """
    for observers in (GLOBAL, client._observers):
        for observer in observers:
            try:
                observer.command(client, args, seconds, error)
            except Exception:
                logger.exception("geredis observer %r failed", observer)


def notify_pipeline(client: Any, operation: str, commands: Sequence[Tuple[Any, ...]],
                    seconds: float, error: Optional[BaseException]) -> None:
    """Tell the global and the client's observers about one pipeline.

    Args:
        client: the client that ran it.
        operation: ``"PIPELINE"`` or ``"MULTI"``.
        commands: each queued command's arguments.
        seconds: how long the caller waited.
        error: what it raised, or None.
    """
    for observer in GLOBAL + client._observers:
        try:
            observer.pipeline(client, operation, commands, seconds, error)
        except Exception:
            logger.exception("geredis observer %r failed", observer)


def served_by(client: Any, args: Tuple[Any, ...] = ()) -> Tuple[Any, Any, Any]:
    """Which server and database a command ran on, for an observer's report.

    Args:
        client: a ``geredis.Redis``, or a ``geredis.RedisCluster`` (observed
            as a whole: ``enable_slow_log(t, rc)``, ``enable_metrics(rc)``).
        args: the command's arguments, name first (a cluster's node is found
            from its key).

    Returns:
        ``(server, port, db)``: ``port`` None for a unix socket. For a
        cluster, the primary of the key's slot (as the map says after the
        command) for a command of one key; ``(None, None, 0)`` for any other
        (keyless, several keys, several nodes).
    """
    nodes_manager = getattr(client, "nodes_manager", None)
    if nodes_manager is None:
        stats = client._stats
        return stats.server, stats.port, stats.db
    if len(args) > 1 and command_name(args[0]) in client._single_key:
        nodes = nodes_manager.slots_cache.get(client.keyslot(args[1]))
        if nodes:
            return nodes[0].host, nodes[0].port, 0
    return None, None, 0


def _observed_execute_command(self: Any, *args: Any, **options: Any) -> Any:
    """``geredis.Redis.execute_command`` while global observers are attached."""
    start = perf_counter()
    try:
        reply = _plain(self, *args, **options)  # type: ignore[misc]
    except BaseException as exc:
        notify_command(self, args, perf_counter() - start, exc)
        raise
    notify_command(self, args, perf_counter() - start, None)
    return reply


def _observed_method(client: Any, inner: Callable[..., Any]) -> Callable[..., Any]:
    """An ``execute_command`` for ``client``'s instance: times ``inner``."""

    def execute_command(*args: Any, **options: Any) -> Any:
        start = perf_counter()
        try:
            reply = inner(*args, **options)
        except BaseException as exc:
            notify_command(client, args, perf_counter() - start, exc)
            raise
        notify_command(client, args, perf_counter() - start, None)
        return reply

    execute_command._geredis_observed = True  # type: ignore[attr-defined]
    return execute_command


def attach(observer: Observer, client: Optional[Union["Redis", "RedisCluster"]] = None) -> None:
    """Send commands to ``observer``.

    Args:
        observer: what receives them.
        client: whose commands (a ``geredis.RedisCluster``'s are timed on
            the cluster client, whichever nodes they reach); None for every
            ``geredis.Redis``'s.
    """
    global GLOBAL, _plain
    if client is not None:
        if not getattr(client.__dict__.get("execute_command"), "_geredis_observed", False):
            inner = client.execute_command  # the class's method, or an instance wrapper
            if getattr(inner, "__func__", None) is _observed_execute_command:
                inner = _plain.__get__(client)  # type: ignore[union-attr]
            client.execute_command = _observed_method(client, inner)  # type: ignore[method-assign]
        client._observers += (observer,)
        return
    from ..client import Redis

    if not GLOBAL:
        _plain = Redis.execute_command
        _observed_execute_command._geredis_inner = _plain  # type: ignore[attr-defined]
        Redis.execute_command = _observed_execute_command  # type: ignore[method-assign]
    GLOBAL += (observer,)


def detach(observer: Observer, client: Optional[Union["Redis", "RedisCluster"]] = None) -> None:
    """Stop sending commands to ``observer`` (undo :func:`attach`).

    Args:
        observer: what :func:`attach` was given.
        client: the client it was attached to (None: every client).
    """
    global GLOBAL
    if client is not None:
        client._observers = tuple(o for o in client._observers if o is not observer)
        own = client.__dict__.get("execute_command")
        if not client._observers and getattr(own, "_geredis_observed", False):
            del client.execute_command
        return
    GLOBAL = tuple(o for o in GLOBAL if o is not observer)
    if not GLOBAL and _plain is not None:
        from ..client import Redis

        Redis.execute_command = _plain  # type: ignore[method-assign]


def attached(client: Any) -> List[Observer]:
    """The observers that see ``client``'s commands.

    Args:
        client: a geredis client.

    Returns:
        The global observers, then the client's own.
    """
    return list(GLOBAL + client._observers)
