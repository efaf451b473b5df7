"""``r.cached``: redis-py's read methods, each call explicitly cached.

How this works: :class:`CachedCommands` is a ``CoreCommands`` view (like
``r.futures``) whose ``execute_command`` sends every call through the
client's cache with :meth:`~geredis.cache.ClientCache.execute_cached`: the
read is cached whatever the mode (in ``"optin"`` mode with ``CLIENT CACHING
YES`` in the same batch), and a command that cannot be cached raises
``DataError`` before anything is sent.

A per-call TTL caps the entry's life: ``r.cached.get(key, ttl=5)`` (each
cacheable read method takes ``ttl=``), or ``r.cached(ttl=5)`` for a view
whose every call uses it. The TTL never exceeds the cache's own ``ttl``.
The method wrappers are made once, at import, for the read methods whose
names are the cacheable commands (``get``, ``hget``, ``hgetall``, ``mget``,
``smembers``, ``zrange``...).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from redis.commands import CoreCommands
from redis.exceptions import RedisError

from .keys import KEY_SPECS

if TYPE_CHECKING:  # pragma: no cover
    from redis._parsers.encoders import Encoder

    from ..client import Redis

__all__ = ["CachedCommands"]


class CachedCommands(CoreCommands):  # type: ignore[misc]
    """``r.cached``: every read method, cached (see the module comment).

    Each cacheable read method also takes ``ttl=`` (seconds, capped by the
    cache's own ``ttl``) and raises what :meth:`execute_command` raises.

    Args:
        client: the ``geredis.Redis`` whose cache the calls go through.
        ttl: the longest an entry made by this view may live, in seconds
            (None: the cache's ``ttl``).
    """

    _is_async_client = False
    _event_dispatcher = None  # type: ignore[assignment]

    def __init__(self, client: "Redis", ttl: Optional[float] = None) -> None:
        self._client = client
        self._ttl = ttl

    def __repr__(self) -> str:
        return f"<geredis.cache.CachedCommands ttl={self._ttl}>"

    def __call__(self, ttl: Optional[float] = None) -> "CachedCommands":
        """A view whose calls cache with ``ttl`` seconds at most.

        Args:
            ttl: the longest an entry may live, in seconds (None: the
                cache's ``ttl``).

        Returns:
            A new ``CachedCommands`` on the same client.
        """
        return CachedCommands(self._client, ttl)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one read through the client's cache, whatever its mode.

        Args:
            *args: the command and its arguments.
            **options: redis-py's per-call options (for the response
                callback).

        Returns:
            The result after the client's response callback.

        Raises:
            redis.RedisError: the client does not cache (no
                ``cache_config=``); nothing was sent.
            redis.DataError: the command cannot be cached (see
                :meth:`geredis.cache.ClientCache.execute_cached`); nothing
                was sent.
            redis.ResponseError: the server's error reply; the connection
                survives.
            redis.ConnectionError: the connection broke and the retry policy
                gave up; the next command reconnects.
            redis.TimeoutError: no reply within ``socket_timeout``; the
                connection survives.
        """
        cache = self._client._cache
        if cache is None:
            raise RedisError(
                "r.cached needs a caching client: geredis.Redis(cache_config=CacheConfig())"
            )
        return cache.execute_cached(self._client, args, options, self._ttl)

    def get_encoder(self) -> "Encoder":
        """redis-py's accessor, for the command methods that use it.

        Returns:
            The client's encoder.
        """
        return self._client.get_encoder()

    def get(self, name: Any, ttl: Optional[float] = None) -> Any:
        """``GET name``, cached for at most ``ttl`` seconds.

        Args:
            name: the key.
            ttl: the longest the entry may live, in seconds (None: this
                view's, else the cache's ``ttl``).

        Returns:
            The value (None for a missing key), after the client's ``GET``
            response callback.

        Raises:
            redis.RedisError: as for :meth:`execute_command`.
        """
        view = self if ttl is None else CachedCommands(self._client, ttl)
        return view.execute_command("GET", name)


def _with_ttl(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: CachedCommands, *args: Any, ttl: Optional[float] = None,
             **kwargs: Any) -> Any:
        view = self if ttl is None else CachedCommands(self._client, ttl)
        return method(view, *args, **kwargs)

    return call


for _command in KEY_SPECS:
    _name = _command.lower()
    if _name != "get" and callable(getattr(CoreCommands, _name, None)):
        setattr(CachedCommands, _name, _with_ttl(getattr(CoreCommands, _name)))
