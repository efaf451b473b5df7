"""Make libraries that build redis-py clients themselves build geredis ones.

    from gevent import monkey; monkey.patch_all()
    import geredis.monkey; geredis.monkey.patch_redis()   # before the libraries
    import rq, flask_caching, limits ...

How this works: :func:`patch_redis` rebinds the names through which code
makes a client: ``redis.Redis``, ``redis.StrictRedis``, ``redis.client.Redis``
and ``redis.client.StrictRedis`` to :class:`geredis.Redis`;
``redis.RedisCluster`` and ``redis.cluster.RedisCluster`` to
:class:`geredis.RedisCluster`; ``redis.Sentinel`` and
``redis.sentinel.Sentinel`` to :class:`geredis.sentinel.Sentinel`. redis-py's
``redis.from_url`` looks ``redis.client.Redis`` up when called, so it builds
geredis clients too, as do ``redis.Redis.from_url``, ``redis.Redis(...)``
and ``redis.Redis(connection_pool=pool)`` (a redis-py pool's settings are
read; see ``pool.py``). That covers Flask-Caching (``CACHE_REDIS_URL`` and
host/port), limits' ``redis://``, ``redis+cluster://`` and
``redis+sentinel://`` storages, RQ (its CLI's default class is
``redis.Redis``), huey (``RedisStorage.redis_client``) and django-redis (its
default ``REDIS_CLIENT_CLASS`` is ``redis.client.Redis``).

Like ``gevent.monkey``, it changes module attributes: a module that did
``from redis import Redis`` *before* the patch keeps redis-py's class, so
patch first. redis-py's ``ConnectionPool`` classes are left alone (geredis
reads them), as are redis-py's sentinel connection pools and
``redis.cluster.ClusterPipeline``.

geredis itself never looks these names up after import (``compat.RedisPy``
is redis-py's class, bound when geredis is imported; the cluster client and
the tracing hooks hold redis-py's ``RedisCluster`` the same way), so the
patch cannot make it call itself. :func:`unpatch_redis` puts redis-py's
objects back.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

from .client import Redis
from .cluster import RedisCluster

__all__ = ["is_patched", "patch_redis", "unpatch_redis"]

#: (module, attribute) pairs bound to geredis.Redis by patch_redis().
TARGETS = (
    ("redis", "Redis"),
    ("redis", "StrictRedis"),
    ("redis.client", "Redis"),
    ("redis.client", "StrictRedis"),
)
#: (module, attribute) pairs bound to geredis.RedisCluster.
CLUSTER_TARGETS = (
    ("redis", "RedisCluster"),
    ("redis.cluster", "RedisCluster"),
)
#: (module, attribute) pairs bound to geredis.sentinel.Sentinel.
SENTINEL_TARGETS = (
    ("redis", "Sentinel"),
    ("redis.sentinel", "Sentinel"),
)

_saved: Dict[Tuple[str, str], Any] = {}


def patch_redis() -> None:
    """Make redis-py's client classes build geredis clients.

    ``redis.Redis`` and its aliases (and so ``redis.from_url``) become
    :class:`geredis.Redis`, ``redis.RedisCluster`` becomes
    :class:`geredis.RedisCluster` and ``redis.sentinel.Sentinel`` becomes
    :class:`geredis.sentinel.Sentinel`. Call it before importing the
    libraries that use them; calling it again does nothing.
    """
    from .sentinel import Sentinel

    for targets, replacement in ((TARGETS, Redis), (CLUSTER_TARGETS, RedisCluster),
                                 (SENTINEL_TARGETS, Sentinel)):
        for module_name, attribute in targets:
            module = importlib.import_module(module_name)
            current = getattr(module, attribute)
            if current is replacement:
                continue
            _saved[(module_name, attribute)] = current
            setattr(module, attribute, replacement)


def unpatch_redis() -> None:
    """Put back what :func:`patch_redis` replaced."""
    for (module_name, attribute), original in list(_saved.items()):
        setattr(importlib.import_module(module_name), attribute, original)
        del _saved[(module_name, attribute)]


def is_patched() -> bool:
    """Whether ``redis.Redis`` is geredis's class now.

    Returns:
        True between :func:`patch_redis` and :func:`unpatch_redis`.
    """
    import redis

    return redis.Redis is Redis
