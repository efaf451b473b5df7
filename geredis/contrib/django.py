"""A Django cache backend on geredis: many greenlets, one connection.

    CACHES = {
        "default": {
            "BACKEND": "geredis.contrib.django.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",        # several: "redis://a,redis://b"
            "OPTIONS": {"socket_timeout": 2, "max_dedicated": 100},  # geredis.Redis arguments
        }
    }

How this works: :class:`RedisCache` is Django's own Redis backend
(``django.core.cache.backends.redis.RedisCache``: same key handling,
serializer, timeouts and multi-server read/write split) with its client
factory replaced. Django's factory builds a redis-py ``ConnectionPool`` per
backend instance and a ``redis.Redis`` per cache call; Django keeps a backend
instance per thread, which under gevent means per greenlet, so 200 concurrent
requests open about 200 connections. Here each backend instance keeps one
``geredis.Redis`` per server, built from the URL and ``OPTIONS`` (any
``geredis.Redis`` argument), and every instance with the same settings shares
one multiplexed connection per server (``geredis/server.py``).

``OPTIONS`` ``serializer`` works as in Django; ``pool_class`` and
``parser_class`` are redis-py machinery and are refused with
``ImproperlyConfigured`` (geredis's parser is chosen with ``"parser"``).
"""

from __future__ import annotations

from typing import Any, Dict

from django.core.cache.backends import redis as django_redis_backend
from django.core.exceptions import ImproperlyConfigured

from ..client import Redis

__all__ = ["RedisCache", "RedisCacheClient"]


class RedisCacheClient(django_redis_backend.RedisCacheClient):  # type: ignore[misc]
    """Django's ``RedisCacheClient`` with geredis clients (one per server).

    Args:
        servers: the server URLs (``LOCATION``); the first takes the writes.
        serializer: as in Django (``OPTIONS["serializer"]``).
        pool_class: refused: redis-py machinery.
        parser_class: refused: redis-py machinery (``"parser"`` picks
            geredis's parser).
        **options: ``geredis.Redis`` arguments, for every server's client.

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``pool_class`` or
            ``parser_class`` was given.
    """

    def __init__(self, servers: Any, serializer: Any = None, pool_class: Any = None,
                 parser_class: Any = None, **options: Any) -> None:
        for name, value in (("pool_class", pool_class), ("parser_class", parser_class)):
            if value is not None:
                raise ImproperlyConfigured(
                    f"geredis.contrib.django.RedisCache does not use redis-py's {name};"
                    " remove it from OPTIONS (geredis.Redis arguments are accepted there)"
                )
        super().__init__(servers, serializer=serializer)
        self._geredis_options = options
        self._clients: Dict[int, Redis] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Redis:
        """The geredis client of the server Django picked for ``key``.

        Args:
            key: the cache key (Django does not use it to pick).
            write: pick the server that takes writes (the first one); reads
                go to any.

        Returns:
            That server's ``geredis.Redis``, made on first use and kept.

        Raises:
            ValueError: the server's URL or an option cannot be read.
            TypeError: an option ``geredis.Redis`` does not take.
        """
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = Redis.from_url(self._servers[index], **self._geredis_options)
            self._clients[index] = client
        return client


class RedisCache(django_redis_backend.RedisCache):  # type: ignore[misc]
    """Django's Redis cache backend, on geredis. See the module comment.

    Args:
        server: ``LOCATION``: a URL, several joined by ``,``, or a list.
        params: the rest of the cache's settings (``OPTIONS``, ``TIMEOUT``,
            ``KEY_PREFIX``...).
    """

    def __init__(self, server: Any, params: Dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
