"""When a failed command may be sent again, and how long to wait first.

How this works: a command that failed because its connection broke (or, with
``retry_on_timeout``, because its reply did not come in time) is retried by
the client with redis-py's ``Retry`` object: its backoff (exponential with
jitter by default) gives the pause, its ``retries`` the number of attempts.
Retrying is only allowed when repeating the command cannot do harm:

* the command never left the client (its connection broke before the
  handshake completed, so nothing of it was written), or
* the command is read-only (``READ_ONLY_COMMANDS``, taken from the server's
  ``readonly`` command flag, plus a few harmless ones like PING and INFO), or
* the user opted in with ``retry_writes=True``.

A write whose connection broke after it was sent may or may not have run on
the server; replaying it could apply it twice (an INCR, an LPUSH), so by
default the caller gets the ConnectionError and decides.
Authentication errors and a closed client are never retried.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple, Type

import inspect

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError
from redis.retry import Retry

from .exceptions import ClientClosedError

__all__ = ["READ_ONLY_COMMANDS", "RetryPolicy"]

#: Commands safe to send again after their connection broke (upper case;
#: subcommands as ``"CONFIG GET"``): the server's ``readonly`` commands, plus
#: harmless ones such as PING and INFO. Any other command is retried only if
#: it never left the client, or with ``retry_writes=True``.
READ_ONLY_COMMANDS = frozenset(
    """
    BITCOUNT BITFIELD_RO BITPOS DBSIZE DUMP EVALSHA_RO EVAL_RO EXISTS EXPIRETIME
    FCALL_RO GEODIST GEOHASH GEOPOS GEORADIUSBYMEMBER_RO GEORADIUS_RO GEOSEARCH
    GET GETBIT GETRANGE HEXISTS HGET HGETALL HKEYS HLEN HMGET HRANDFIELD HSCAN
    HSTRLEN HVALS KEYS LCS LINDEX LLEN LPOS LRANGE MGET PEXPIRETIME PFCOUNT
    PTTL RANDOMKEY SCAN SCARD SDIFF SINTER SINTERCARD SISMEMBER SMEMBERS
    SMISMEMBER SORT_RO SRANDMEMBER SSCAN STRLEN SUBSTR SUNION TOUCH TTL TYPE
    XLEN XPENDING XRANGE XREAD XREVRANGE ZCARD ZCOUNT ZDIFF ZINTER ZINTERCARD
    ZLEXCOUNT ZMSCORE ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANK
    ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE ZUNION
    PING ECHO TIME INFO LASTSAVE ROLE LOLWUT COMMAND
    """.split()
) | {
    "MEMORY USAGE", "MEMORY STATS", "OBJECT ENCODING", "OBJECT FREQ",
    "OBJECT IDLETIME", "OBJECT REFCOUNT", "XINFO CONSUMERS", "XINFO GROUPS",
    "XINFO STREAM", "CONFIG GET", "CLIENT GETNAME", "CLIENT ID", "CLIENT INFO",
    "CLIENT LIST", "SCRIPT EXISTS", "FUNCTION LIST", "SLOWLOG GET",
    "SLOWLOG LEN", "COMMAND COUNT", "COMMAND INFO", "COMMAND DOCS",
    "COMMAND LIST", "ACL WHOAMI",
}  # fmt: skip


_DEFAULT = object()
_REDIS_DEFAULT_RETRY = inspect.signature(redis.Redis.__init__).parameters["retry"].default


class RetryPolicy:
    """Decides whether a failed command is sent again (see module comment).

    Built by the client from redis-py's retry arguments
    (:meth:`from_kwargs`); the client asks :meth:`should_retry` after each
    failure and sleeps :meth:`delay` before sending the command again.

    Args:
        retry: redis-py's ``Retry`` (its backoff and number of retries);
            None turns retries off.
        retry_on_timeout: retry ``redis.TimeoutError`` too.
        retry_on_error: more exception classes to retry (redis-py's
            ``retry_on_error``); ``ConnectionError`` always is.
        retry_writes: let writes that were sent be retried too.

    Attributes:
        errors: the exception classes that may be retried (a tuple, for
            ``except``).
    """

    def __init__(
        self,
        retry: Optional[Retry],
        retry_on_timeout: bool = False,
        retry_on_error: Optional[Iterable[Type[Exception]]] = None,
        retry_writes: bool = False,
    ) -> None:
        self.retry = retry if retry is not None else Retry(NoBackoff(), 0)
        errors: Tuple[Type[BaseException], ...] = (ConnectionError,)
        if retry_on_timeout:
            errors += (TimeoutError,)
        if retry_on_error:
            errors += tuple(retry_on_error)
        self.errors = errors
        self.retry_writes = retry_writes

    @property
    def retries(self) -> int:
        """Attempts after the first; negative means without end."""
        return int(self.retry._retries)

    def should_retry(self, command: str, exc: BaseException, failures: int, sent: bool) -> bool:
        """Whether a failed command may be sent again.

        Args:
            command: the command's upper-case name (``"GET"``,
                ``"CONFIG GET"``).
            exc: the error it failed with.
            failures: how many times it has failed so far (1 after the first).
            sent: False when it never left the client (its connection failed
                before the handshake completed).

        Returns:
            True when retries remain, ``exc`` is one of :attr:`errors` (but
            not an authentication error or a closed client), and repeating
            is harmless: not sent, read-only, or ``retry_writes``.
        """
        if 0 <= self.retries < failures:
            return False
        if not isinstance(exc, self.errors):
            return False
        if isinstance(exc, (AuthenticationError, ClientClosedError)):
            return False
        return not sent or self.retry_writes or command in READ_ONLY_COMMANDS

    def delay(self, failures: int) -> float:
        """Seconds to wait before attempt ``failures + 1``.

        Args:
            failures: how many times the command has failed so far.

        Returns:
            The backoff's pause, in seconds.
        """
        return float(self.retry._backoff.compute(failures))

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "RetryPolicy":  # type: ignore[type-arg]
        """Pop redis-py's retry arguments (and ``retry_writes``) from kwargs.

        Args:
            kwargs: a client's constructor arguments; ``retry``,
                ``retry_on_timeout``, ``retry_on_error`` and ``retry_writes``
                are removed from it. A missing ``retry`` (or redis-py's own
                default object) means redis-py 8's default: 10 retries,
                10 ms doubling with jitter, capped at 1 s.

        Returns:
            The policy.
        """
        retry: Any = kwargs.pop("retry", _DEFAULT)
        if retry is _DEFAULT or retry is _REDIS_DEFAULT_RETRY:
            # redis-py 8's default: 10 attempts, 10 ms doubling, capped at 1 s.
            retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 10)
        return cls(
            retry,
            retry_on_timeout=bool(kwargs.pop("retry_on_timeout", False)),
            retry_on_error=kwargs.pop("retry_on_error", None),
            retry_writes=bool(kwargs.pop("retry_writes", False)),
        )
