"""huey on geredis: its Redis storages with ``geredis.Redis`` clients.

    from geredis.contrib.huey import RedisHuey
    huey = RedisHuey("app", url="redis://127.0.0.1:6379/0")   # or host=..., connection_pool=...

How this works: huey's Redis storages make their client as
``self.redis_client(connection_pool=pool)`` from a redis-py
``ConnectionPool`` (built from ``url=`` or the connection arguments, or
given). Each class here is huey's own storage with ``redis_client`` set to
``geredis.Redis``, which reads the pool's settings and joins the one
multiplexed connection for them; the ``*Huey`` classes are huey's with these
storages. Enqueueing, results and the schedule share that connection;
a consumer's ``BRPOP`` (``blocking=True``, the default) runs on a dedicated
connection per waiting worker, so greenlet workers never stall each other or
the producers (see ``dedicated.py`` for the bound).
"""

from __future__ import annotations

from huey import api, storage

from ..client import Redis

__all__ = [
    "PriorityRedisExpireHuey", "PriorityRedisExpireStorage", "PriorityRedisHuey",
    "PriorityRedisStorage", "RedisExpireHuey", "RedisExpireStorage", "RedisHuey",
    "RedisStorage",
]


class RedisStorage(storage.RedisStorage):  # type: ignore[misc]
    """huey's ``RedisStorage`` on a geredis client."""

    redis_client = Redis


class RedisExpireStorage(storage.RedisExpireStorage):  # type: ignore[misc]
    """huey's ``RedisExpireStorage`` (results expire) on a geredis client."""

    redis_client = Redis


class PriorityRedisStorage(storage.PriorityRedisStorage):  # type: ignore[misc]
    """huey's ``PriorityRedisStorage`` on a geredis client."""

    redis_client = Redis


class PriorityRedisExpireStorage(storage.PriorityRedisExpireStorage):  # type: ignore[misc]
    """huey's ``PriorityRedisExpireStorage`` on a geredis client."""

    redis_client = Redis


class RedisHuey(api.RedisHuey):  # type: ignore[misc]
    """huey's ``RedisHuey`` on geredis."""

    storage_class = RedisStorage


class RedisExpireHuey(api.RedisExpireHuey):  # type: ignore[misc]
    """huey's ``RedisExpireHuey`` on geredis."""

    storage_class = RedisExpireStorage


class PriorityRedisHuey(api.PriorityRedisHuey):  # type: ignore[misc]
    """huey's ``PriorityRedisHuey`` on geredis."""

    storage_class = PriorityRedisStorage


class PriorityRedisExpireHuey(api.PriorityRedisExpireHuey):  # type: ignore[misc]
    """huey's ``PriorityRedisExpireHuey`` on geredis."""

    storage_class = PriorityRedisExpireStorage
