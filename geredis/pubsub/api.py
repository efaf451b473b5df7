"""``PubSub``: redis-py's pub/sub API over a subscriber greenlet.

How this works: :class:`PubSub` is the thin, redis-py-shaped face of two
objects. ``Subscriber`` (``subscriber.py``) owns the dedicated connection, the
subscription tables and reconnects. ``Delivery`` (``delivery.py``) owns the
handler queue, its dispatcher greenlet and the ``get_message`` inbox. Methods
here parse redis-py's arguments, hand them over, and wait (at most
``socket_timeout``) for the server's confirmation.

Neither inner object refers back to the PubSub, so a PubSub the application
drops is collected and ``__del__`` closes it without blocking. Still, close it
explicitly (``close()``, ``with``, or ``run_in_thread(...).stop()``):
``Redis.close()`` does not know about its PubSubs, and a handler that refers
to its PubSub keeps it alive.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import gevent
from gevent.event import AsyncResult
from gevent.greenlet import Greenlet
from redis._parsers.encoders import Encoder
from redis.commands.helpers import list_or_args, parse_pubsub_subscriptions
from redis.exceptions import PubSubError

from ..exceptions import TimeoutError
from ..settings import ConnectionSettings
from .delivery import (
    Delivery, HandlerErrorHook, Message, ReconnectInfo, belongs_to_main, raise_in_main,
    report_handler_error,
)
from .subscriber import Subscriber, SubscriberState

__all__ = ["PubSub", "PubSubWorker"]

#: ``handler(message)``: called in the dispatcher greenlet for each message
#: of the channel or pattern it was subscribed with.
Handler = Callable[[Message], Any]
#: ``exception_handler(exc, pubsub, worker)``, as redis-py's ``run_in_thread``.
ExceptionHandler = Callable[[BaseException, "PubSub", "PubSubWorker"], None]
_CHANNELS, _PATTERNS, _SHARD_CHANNELS = 0, 1, 2


class PubSub:
    """Publish/subscribe on a connection of its own; redis-py's ``PubSub``
    API. Get one with ``r.pubsub(...)``.

    Subscriptions with a handler (``p.subscribe(news=on_news)``) are
    delivered to it by a dispatcher greenlet as soon as they arrive, in
    arrival order, whether or not anyone calls ``get_message()`` (unlike
    redis-py, where handlers run inside ``get_message``). The others, plus
    confirmations, pongs and reconnect notices, wait for
    ``get_message()``/``listen()``. Both queues are bounded by ``max_queued``
    and drop their *oldest* messages when full (trimmed after each read,
    counted in ``dropped``, one warning per episode): a slow consumer never
    stalls the reader, and the server never disconnects a slow subscriber.

    After a dropped connection the subscriber reconnects with exponential
    backoff and jitter, forever (until ``close()``) while anything is
    subscribed, and resubscribes everything. Once the server confirmed the
    resubscription it reports the possible gap: ``on_reconnect(info)`` runs
    in the dispatcher greenlet, and ``get_message()`` returns
    ``{'type': 'reconnect', 'pattern': None, 'channel': None, 'data':
    ReconnectInfo(...)}`` after the new subscribe confirmations. Anything
    published after that point is delivered.

    Args:
        settings: the client's connection settings.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.
        ignore_subscribe_messages: as in redis-py.
        encoder: redis-py ``Encoder``; by default the client's.
        shard_hint: accepted for redis-py compatibility; unused.
        on_handler_error: ``f(exc, message)``, called in the dispatcher when a
            handler (or ``on_reconnect``) raises. The default logs to
            ``geredis.pubsub`` and reports to gevent's hub. Delivery goes on.
            What is not the handler's own ordinary error (a ``BaseException``
            that is not an ``Exception``, or an exception a signal handler
            raised while the handler ran) is raised in the main greenlet
            instead, as redis-py's handler thread would leave it to the main
            thread.
        on_reconnect: ``f(ReconnectInfo)`` after each reconnect.
        reconnect_messages: put ``'reconnect'`` messages in the
            ``get_message`` queue (not hidden by ``ignore_subscribe_messages``).
        max_queued: bound of each queue (handler queue, ``get_message`` queue).
        health_check_interval: seconds of silence after which a PING checks
            the connection (dead after twice that); 0 disables. Default: the
            client's ``health_check_interval``, or 30 s when that is 0 (a
            silently dead subscription would lose messages for good).
        reconnect_backoff: ``(base, cap)``: the n-th retry waits
            ``min(cap, base * 2**n)`` seconds times a random factor in [0.5, 1).
    """

    PUBLISH_MESSAGE_TYPES = ("message", "pmessage", "smessage")
    UNSUBSCRIBE_MESSAGE_TYPES = ("unsubscribe", "punsubscribe", "sunsubscribe")

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        parser: str = "auto",
        ignore_subscribe_messages: bool = False,
        encoder: Optional[Encoder] = None,
        shard_hint: Any = None,
        on_handler_error: Optional[HandlerErrorHook] = None,
        on_reconnect: Optional[Callable[[ReconnectInfo], Any]] = None,
        reconnect_messages: bool = True,
        max_queued: int = 10_000,
        health_check_interval: Optional[float] = None,
        reconnect_backoff: Tuple[float, float] = (0.05, 5.0),
    ) -> None:
        self.settings = settings
        self.shard_hint = shard_hint
        self.encoder = encoder or Encoder(  # type: ignore[no-untyped-call]
            settings.encoding, settings.encoding_errors, settings.decode_responses
        )
        self._delivery = Delivery(
            max_queued=max_queued,
            on_handler_error=on_handler_error,
            on_reconnect=on_reconnect,
            reconnect_messages=reconnect_messages,
            ignore_subscribe_messages=ignore_subscribe_messages,
        )
        encoder = self.encoder

        def normalize(name: Any) -> Any:
            # The key type received frames carry: str when decoding, else bytes.
            return encoder.decode(encoder.encode(name))  # type: ignore[no-untyped-call]

        self._subscriber = Subscriber(
            settings,
            self._delivery,
            normalize,
            parser=parser,
            health_check_interval=(
                health_check_interval
                if health_check_interval is not None
                else settings.health_check_interval or 30.0
            ),
            backoff=reconnect_backoff,
        )

    def __repr__(self) -> str:
        sub = self._subscriber
        return (
            f"<geredis.PubSub {self.settings.address} {sub.state.value}"
            f" channels={len(self.channels)} patterns={len(self.patterns)}"
            f" shard_channels={len(self.shard_channels)}"
            f" queued={len(self._delivery.queue)} dropped={self._delivery.dropped}>"
        )

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> SubscriberState:
        """The connection's state (IDLE, CONNECTING, OPEN, RECONNECTING, CLOSED)."""
        return self._subscriber.state

    @property
    def channels(self) -> Dict[Any, Optional[Handler]]:
        """Subscribed channels and their handlers (bytes keys, str when decoding)."""
        return self._subscriber.tables[_CHANNELS]

    @property
    def patterns(self) -> Dict[Any, Optional[Handler]]:
        """Subscribed patterns and their handlers (bytes keys, str when decoding)."""
        return self._subscriber.tables[_PATTERNS]

    @property
    def shard_channels(self) -> Dict[Any, Optional[Handler]]:
        """Subscribed shard channels and their handlers (bytes keys, str when
        decoding)."""
        return self._subscriber.tables[_SHARD_CHANNELS]

    @property
    def subscribed(self) -> bool:
        """True while any channel, pattern or shard channel is subscribed."""
        return self._subscriber.subscribed

    @property
    def ignore_subscribe_messages(self) -> bool:
        """Leave (un)subscribe confirmations out of ``get_message()``; settable."""
        return self._delivery.ignore_subscribe_messages

    @ignore_subscribe_messages.setter
    def ignore_subscribe_messages(self, value: bool) -> None:
        self._delivery.ignore_subscribe_messages = value

    @property
    def dropped(self) -> int:
        """Messages dropped because a queue was full (oldest first)."""
        return self._delivery.dropped

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established."""
        return self._subscriber.reconnects

    # -- subscribing -------------------------------------------------------------

    def subscribe(self, *args: Any, **kwargs: Handler) -> None:
        """Subscribe to channels: names, ``Subscription`` objects, or
        ``name=handler`` keywords. Returns once the server confirmed.

        Args:
            *args: channel names (``str`` or ``bytes``, or lists of them), or
                ``Subscription`` objects; their messages go to
                ``get_message()``.
            **kwargs: ``channel=handler``: the channel's messages go to
                ``handler(message)`` in the dispatcher greenlet.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``
                (while reconnecting: the subscription stays wanted and is
                made on reconnect).
            redis.ConnectionError: the first connection failed (the
                subscription is forgotten).
            redis.ResponseError: the server refused it.
        """
        self._wait(self._subscriber.subscribe(_CHANNELS, parse_pubsub_subscriptions(args, kwargs)))

    def psubscribe(self, *args: Any, **kwargs: Handler) -> None:
        """Subscribe to patterns; as :meth:`subscribe`.

        Args:
            *args: glob-style patterns, or lists of them.
            **kwargs: ``pattern=handler``.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``
                (while reconnecting: the subscription stays wanted and is
                made on reconnect).
            redis.ConnectionError: the first connection failed (the
                subscription is forgotten).
            redis.ResponseError: the server refused it.
        """
        self._wait(self._subscriber.subscribe(_PATTERNS, parse_pubsub_subscriptions(args, kwargs)))

    def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Handler) -> None:
        """Subscribe to shard channels (Redis 7); as :meth:`subscribe`.

        Args:
            *args: shard channel names, or lists of them.
            target_node: accepted for redis-py's signature; unused (one
                server).
            **kwargs: ``channel=handler``.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``
                (while reconnecting: the subscription stays wanted and is
                made on reconnect).
            redis.ConnectionError: the first connection failed (the
                subscription is forgotten).
            redis.ResponseError: the server refused it.
        """
        subscriptions = parse_pubsub_subscriptions(args, kwargs)
        self._wait(self._subscriber.subscribe(_SHARD_CHANNELS, subscriptions))

    def unsubscribe(self, *args: Any) -> None:
        """Unsubscribe from channels (all when none given); returns once the
        server confirmed, so ``subscribed`` is up to date.

        Args:
            *args: channel names, or one list of them.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``.
        """
        self._unsubscribe(_CHANNELS, args)

    def punsubscribe(self, *args: Any) -> None:
        """Unsubscribe from patterns (all when none given); as
        :meth:`unsubscribe`.

        Args:
            *args: patterns, or one list of them.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``.
        """
        self._unsubscribe(_PATTERNS, args)

    def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """Unsubscribe from shard channels (all when none given); as
        :meth:`unsubscribe`.

        Args:
            *args: shard channel names, or one list of them.
            target_node: accepted for redis-py's signature; unused.

        Raises:
            redis.TimeoutError: no confirmation within ``socket_timeout``.
        """
        self._unsubscribe(_SHARD_CHANNELS, args)

    def _unsubscribe(self, kind: int, args: Sequence[Any]) -> None:
        names = list_or_args(args[0], args[1:]) if args else []
        result = self._subscriber.unsubscribe(kind, names)
        if result is not None:
            self._wait(result)

    def ping(self, message: Any = None) -> bool:
        """PING the server on the subscription connection (connecting first
        if needed); its ``'pong'`` message also reaches ``get_message()``.

        Args:
            message: sent with the PING and echoed in the pong's ``data``.

        Returns:
            True once the server answered.

        Raises:
            redis.TimeoutError: no answer within ``socket_timeout``.
            redis.ConnectionError: the connection could not be opened.
        """
        deadline = self._deadline()
        while True:
            result = self._subscriber.ping(message)
            if result is not None:
                break
            self._wait(self._subscriber.connected(), deadline)
        self._wait(result, deadline)
        return True

    def execute_command(self, *args: Any) -> None:
        """redis-py's low-level entry point, for the pub/sub commands and PING.

        Args:
            *args: the command name (``SUBSCRIBE``, ``PSUBSCRIBE``,
                ``SSUBSCRIBE``, their ``UNSUBSCRIBE`` forms, or ``PING``) and
                its arguments.

        Raises:
            redis.PubSubError: any other command.
            redis.TimeoutError: as for :meth:`subscribe`.
        """
        name = str(args[0].decode() if isinstance(args[0], bytes) else args[0]).upper()
        method = {
            "SUBSCRIBE": self.subscribe, "PSUBSCRIBE": self.psubscribe,
            "SSUBSCRIBE": self.ssubscribe, "UNSUBSCRIBE": self.unsubscribe,
            "PUNSUBSCRIBE": self.punsubscribe, "SUNSUBSCRIBE": self.sunsubscribe,
        }.get(name)  # fmt: skip
        if method is not None:
            method(*args[1:])
        elif name == "PING":
            self.ping(*args[1:2])
        else:
            raise PubSubError(f"{name} cannot run on a pub/sub connection")

    def _deadline(self) -> Optional[float]:
        timeout = self.settings.socket_timeout
        return None if timeout is None else monotonic() + timeout

    def _wait(self, result: AsyncResult, deadline: Optional[float] = None) -> None:
        if deadline is None:
            deadline = self._deadline()
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        try:
            value = result.get(timeout=timeout)
        except gevent.Timeout:
            raise TimeoutError(
                f"no confirmation from {self.settings.address} within"
                f" {self.settings.socket_timeout}s (pub/sub state"
                f" {self._subscriber.state.value})"
            ) from None
        if isinstance(value, BaseException):
            raise value

    # -- reading -------------------------------------------------------------

    def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: Optional[float] = 0.0
    ) -> Optional[Message]:
        """The next message without a handler (or confirmation, pong,
        reconnect notice), waiting up to ``timeout`` seconds (forever when
        None); None when none came in time.

        ``get_sharded_message`` is the same method.

        Args:
            ignore_subscribe_messages: skip (un)subscribe confirmations this
                time (they are always skipped when the PubSub's own flag is
                set).
            timeout: seconds to wait; 0 does not wait, None waits forever.

        Returns:
            redis-py's message dict (``type``, ``pattern``, ``channel``,
            ``data``), or None.
        """
        ignore = ignore_subscribe_messages or self._delivery.ignore_subscribe_messages
        return self._delivery.get(timeout, ignore)

    get_sharded_message = get_message

    def listen(self) -> Iterator[Message]:
        """Yield messages while subscribed (and while any are queued).

        Yields:
            redis-py's message dicts, as :meth:`get_message` returns them.
        """
        delivery = self._delivery

        def unsubscribed() -> bool:
            return not self.subscribed

        while self.subscribed or delivery.inbox:
            message = delivery.get(None, delivery.ignore_subscribe_messages, unsubscribed)
            if message is not None:
                yield message

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Close the connection and stop the greenlets; forget every
        subscription and queued message. A handler running at that moment is
        interrupted (unless it is the caller). The PubSub can subscribe again
        afterwards, like redis-py's after ``reset()``."""
        self._subscriber.close()
        self._delivery.close()

    reset = close

    def __enter__(self) -> "PubSub":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._subscriber.close(block=False)
            self._delivery.close(block=False)
        except Exception:  # noqa: S110 - interpreter shutdown, half-built object
            pass

    # -- run_in_thread -------------------------------------------------------------

    def run_in_thread(
        self,
        sleep_time: float = 0.0,
        daemon: bool = False,
        exception_handler: Optional[ExceptionHandler] = None,
        pubsub: Optional["PubSub"] = None,
        sharded_pubsub: bool = False,
    ) -> "PubSubWorker":
        """redis-py's ``run_in_thread``, as a greenlet: every subscription must
        have a handler (``PubSubError`` otherwise). Handlers already run in the
        dispatcher greenlet; the worker drains the other messages and, on
        ``stop()``, closes the PubSub. With ``exception_handler``, handler
        errors go to ``exception_handler(exc, pubsub, worker)`` unless
        ``on_handler_error`` was given.

        Args:
            sleep_time: the longest the worker waits for a message before
                checking whether it was stopped (0: until a message or
                ``stop()``).
            daemon: accepted for redis-py's signature; unused.
            exception_handler: ``f(exc, pubsub, worker)`` for the errors of
                handlers and of the worker's reads; without it they are
                reported (handlers) or end the worker (reads).
            pubsub: the PubSub the worker drains and closes (default: this
                one).
            sharded_pubsub: accepted for redis-py's signature; shard
                channels are drained either way.

        Returns:
            The started :class:`PubSubWorker`.

        Raises:
            redis.PubSubError: a channel, pattern or shard channel has no
                handler.
        """
        for what, table in (
            ("Channel", self.channels), ("Pattern", self.patterns),
            ("Shard Channel", self.shard_channels),
        ):  # fmt: skip
            for name, handler in table.items():
                if handler is None:
                    raise PubSubError(f"{what}: {name!r} has no handler registered")
        worker = PubSubWorker(pubsub or self, sleep_time, exception_handler, daemon=daemon)
        worker.start()
        return worker


class PubSubWorker(Greenlet):  # type: ignore[misc]
    """What ``run_in_thread`` returns: redis-py's ``PubSubWorkerThread`` as a
    greenlet, with ``stop()``, ``join(timeout)`` and ``is_alive()``.

    Args:
        pubsub: the PubSub to drain, and close when the worker ends.
        sleep_time: the longest to wait for a message before checking
            whether it was stopped (0: until a message or ``stop()``).
        exception_handler: ``f(exc, pubsub, worker)``; see
            :meth:`PubSub.run_in_thread`.
        daemon: accepted for redis-py's signature; unused.
    """

    def __init__(
        self,
        pubsub: PubSub,
        sleep_time: float = 0.0,
        exception_handler: Optional[ExceptionHandler] = None,
        daemon: bool = False,
    ) -> None:
        super().__init__()
        self.pubsub = pubsub
        self.sleep_time = sleep_time
        self.exception_handler = exception_handler
        self.daemon = daemon
        self._running = True
        self._default_hook: Optional[HandlerErrorHook] = None
        delivery = pubsub._delivery
        if exception_handler is not None and delivery.on_handler_error is report_handler_error:
            # Handler errors go to exception_handler while the worker runs.
            self._default_hook = delivery.on_handler_error
            delivery.on_handler_error = lambda exc, message: exception_handler(exc, pubsub, self)

    def _run(self) -> None:
        pubsub = self.pubsub
        timeout = self.sleep_time if self.sleep_time > 0 else None
        try:
            while self._running:
                try:
                    pubsub._delivery.wait_inbox(timeout)
                    while self._running and pubsub.get_message(True) is not None:
                        pass
                except BaseException as exc:  # noqa: B902 - sorted out below
                    if belongs_to_main(exc):
                        raise_in_main(exc)  # a signal's, as with a thread
                        continue
                    if self.exception_handler is None or not isinstance(exc, Exception):
                        raise
                    self.exception_handler(exc, pubsub, self)
        finally:
            if self._default_hook is not None:
                pubsub._delivery.on_handler_error = self._default_hook
            pubsub.close()

    def stop(self) -> None:
        """Stop the worker; it then closes the PubSub. ``join()`` waits for it."""
        self._running = False
        self.pubsub._delivery.wake()

    def is_alive(self) -> bool:
        """Whether the worker is still running.

        Returns:
            False once it ended (stopped, or ended by an error).
        """
        return not self.dead

