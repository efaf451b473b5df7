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

from typing import Any

from huey import api, storage

from ..client import Redis

__all__ = [
    "PriorityRedisExpireHuey", "PriorityRedisExpireStorage", "PriorityRedisHuey",
    "PriorityRedisStorage", "RedisExpireHuey", "RedisExpireStorage", "RedisHuey",
    "RedisStorage",
]


def _on_geredis(base: type, doc: str, **attributes: Any) -> Any:
    """``base`` (a huey class) with ``attributes`` set: ``redis_client`` on
    a storage, ``storage_class`` on a Huey."""
    return type(base.__name__, (base,), {"__doc__": doc, "__module__": __name__, **attributes})


#: huey's ``RedisStorage`` with ``redis_client = geredis.Redis``.
RedisStorage = _on_geredis(storage.RedisStorage, "huey's RedisStorage on geredis.",
                           redis_client=Redis)
#: huey's ``RedisExpireStorage`` (results expire) with ``redis_client = geredis.Redis``.
RedisExpireStorage = _on_geredis(
    storage.RedisExpireStorage, "huey's RedisExpireStorage (results expire) on geredis.",
    redis_client=Redis)
#: huey's ``PriorityRedisStorage`` with ``redis_client = geredis.Redis``.
PriorityRedisStorage = _on_geredis(storage.PriorityRedisStorage,
                                   "huey's PriorityRedisStorage on geredis.", redis_client=Redis)
#: huey's ``PriorityRedisExpireStorage`` with ``redis_client = geredis.Redis``.
PriorityRedisExpireStorage = _on_geredis(
    storage.PriorityRedisExpireStorage, "huey's PriorityRedisExpireStorage on geredis.",
    redis_client=Redis)

#: huey's ``RedisHuey`` on :data:`RedisStorage`: ``RedisHuey(name, url=..., **huey_options)``
#: (or ``host=``/``port=``/``db=``, or ``connection_pool=``).
RedisHuey = _on_geredis(api.RedisHuey, "huey's RedisHuey on geredis.",
                        storage_class=RedisStorage)
#: huey's ``RedisExpireHuey`` on :data:`RedisExpireStorage`.
RedisExpireHuey = _on_geredis(api.RedisExpireHuey, "huey's RedisExpireHuey on geredis.",
                              storage_class=RedisExpireStorage)
#: huey's ``PriorityRedisHuey`` on :data:`PriorityRedisStorage`.
PriorityRedisHuey = _on_geredis(api.PriorityRedisHuey, "huey's PriorityRedisHuey on geredis.",
                                storage_class=PriorityRedisStorage)
#: huey's ``PriorityRedisExpireHuey`` on :data:`PriorityRedisExpireStorage`.
PriorityRedisExpireHuey = _on_geredis(
    api.PriorityRedisExpireHuey, "huey's PriorityRedisExpireHuey on geredis.",
    storage_class=PriorityRedisExpireStorage)
