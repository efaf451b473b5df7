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
    """``r.cached``: every read method, cached (see the module comment)."""

    _is_async_client = False
    _event_dispatcher = None  # type: ignore[assignment]

    def __init__(self, client: "Redis", ttl: Optional[float] = None) -> None:
        self._client = client
        self._ttl = ttl

    def __repr__(self) -> str:
        return f"<geredis.cache.CachedCommands ttl={self._ttl}>"

    def __call__(self, ttl: Optional[float] = None) -> "CachedCommands":
        """A view whose calls cache with ``ttl`` seconds at most."""
        return CachedCommands(self._client, ttl)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        cache = self._client._cache
        if cache is None:
            raise RedisError(
                "r.cached needs a caching client: geredis.Redis(cache_config=CacheConfig())"
            )
        return cache.execute_cached(self._client, args, options, self._ttl)

    def get_encoder(self) -> "Encoder":
        return self._client.get_encoder()

    def get(self, name: Any, ttl: Optional[float] = None) -> Any:
        """``GET name``, cached for at most ``ttl`` seconds."""
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
