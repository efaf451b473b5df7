"""Client-side caching, server-assisted (CLIENT TRACKING), race-free.

How this works, in one place (details in each module):

* ``config.py``: :class:`CacheConfig` (redis-py's, plus bytes, TTL, modes)
  resolved into frozen settings at construction;
* ``keys.py``: which reads are cacheable, their entry keys, their Redis keys;
* ``store.py``: one :class:`~geredis.cache.store.Store` per connection:
  entries (LRU by count and bytes, TTL), reads in flight, counters;
* ``flight.py``: the slots the connection's reader runs in stream order
  (fill, PTTL, OPTIN, write fence, barrier), which is what rules out the
  read/invalidate/insert race;
* ``client_cache.py``: ``r.cache`` (:class:`ClientCache`) and the command
  path of a caching client; ``commands.py``: ``r.cached``.

Usage::

    from redis.cache import CacheConfig
    r = geredis.Redis(protocol=3, cache_config=CacheConfig(max_size=10_000))
    r.get("flags")          # from Redis once, then locally until invalidated
    r.cache.stats()         # hits, misses, invalidations, evictions, entries, bytes
"""

from .client_cache import ClientCache
from .commands import CachedCommands
from .config import MODES, CacheConfig, CacheSettings

__all__ = ["MODES", "CacheConfig", "CacheSettings", "CachedCommands", "ClientCache"]
