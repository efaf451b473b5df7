"""The ``geredis://`` storage scheme for limits (and so Flask-Limiter).

    import geredis.contrib.limits          # registers the scheme, once
    from limits.storage import storage_from_string
    storage = storage_from_string("geredis://127.0.0.1:6379/0")
    # Flask-Limiter: Limiter(key_func, app=app, storage_uri="geredis://127.0.0.1:6379")

How this works: limits finds a storage by the scheme of its URI in a
registry that every ``Storage`` subclass joins when it is defined.
:class:`GeredisStorage` is limits' own ``RedisStorage`` (its Lua scripts for
fixed, moving and sliding windows, its key prefix and error wrapping) with a
``geredis.Redis`` in place of the redis-py client, registered for
``geredis://``, ``gerediss://`` (TLS) and ``geredis+unix://``. The URI is the
redis-py one with ``redis`` replaced by ``geredis``; extra options are
``geredis.Redis`` arguments; ``connection_pool=`` (a redis-py pool) is read as
geredis reads any.

Every limiter with the same settings shares one connection per thread, so a
rate limit check from each of 1,000 concurrent requests costs one pipelined
EVALSHA each on one socket.
"""

from __future__ import annotations

from typing import Any

from limits.storage import RedisStorage
from limits.storage.base import Storage

from ..client import Redis

__all__ = ["GeredisStorage"]

_SCHEMES = {"geredis": "redis", "gerediss": "rediss", "geredis+unix": "unix"}


class GeredisStorage(RedisStorage):  # type: ignore[misc]
    """limits' Redis storage on a ``geredis.Redis`` client.

    Args:
        uri: ``geredis://[:password]@host:port[/db]``, ``gerediss://...`` or
            ``geredis+unix:///path/to.sock``.
        connection_pool: optional redis-py (or geredis) pool to read the
            settings from instead of the URI.
        key_prefix: the prefix of every key limits writes, as for limits'
            ``RedisStorage``.
        wrap_exceptions: raise limits' ``StorageError`` for the client's
            errors, as for limits' ``RedisStorage``.
        **options: ``geredis.Redis`` arguments.

    Raises:
        ValueError: the URI's scheme is not ``geredis``, ``gerediss`` or
            ``geredis+unix``, or the URI or an option cannot be read.
        TypeError: an option ``geredis.Redis`` does not take.
    """

    STORAGE_SCHEME = list(_SCHEMES)

    def __init__(self, uri: str, connection_pool: Any = None,
                 key_prefix: str = RedisStorage.PREFIX, wrap_exceptions: bool = False,
                 **options: Any) -> None:
        Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions, **options)
        self.key_prefix = key_prefix
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module
        scheme, _, rest = uri.partition("://")
        if scheme not in _SCHEMES:
            raise ValueError(f"{uri!r}: expected one of {', '.join(_SCHEMES)}:// URIs")
        url = f"{_SCHEMES[scheme]}://{rest}"
        if connection_pool is not None:
            self.storage = Redis(connection_pool=connection_pool, **options)
        else:
            self.storage = Redis.from_url(url, **options)
        self.initialize_storage(url)
