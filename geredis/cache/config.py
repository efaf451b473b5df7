"""What a client's cache is allowed to do: :class:`CacheConfig` (redis-py's,
extended) and the resolved :class:`CacheSettings`.

How this works: ``geredis.Redis(cache_config=...)`` takes redis-py's
``redis.cache.CacheConfig`` (``max_size`` and its allow-list are honoured)
or this module's :class:`CacheConfig`, a subclass that adds what redis-py
lacks: a size limit in bytes, a maximum TTL per entry, and the tracking
mode (``"default"``, ``"optin"`` or ``"bcast"`` with key prefixes).
:func:`settings_from_config` turns either one into one frozen
:class:`CacheSettings`, refusing at construction what cannot work (limits
that are not positive numbers, an unknown mode, prefixes outside
``"bcast"``); ``client_cache.cache_option`` refuses a redis-py cache object
and ``client_cache.check`` refuses RESP2.

The cacheable commands are the read-only commands of redis-py's allow-list
whose keys geredis knows how to find (``keys.KEY_SPECS``), filtered by the
config's ``is_allowed_to_cache``: a subclass that narrows the list narrows
geredis's too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, FrozenSet, Iterable, Tuple, Union

import redis.cache

from .keys import KEY_SPECS

__all__ = ["CacheConfig", "CacheSettings", "MODES", "settings_from_config"]

#: The tracking modes: server-assisted per read, per opted-in read, or broadcast.
MODES = ("default", "optin", "bcast")


class CacheConfig(redis.cache.CacheConfig):
    """redis-py's ``CacheConfig`` with geredis's extra bounds and modes.

    Args:
        max_size: at most this many entries (LRU beyond); redis-py's name.
        max_bytes: at most about this many bytes of entries (LRU beyond);
            sizes are estimated with ``sys.getsizeof`` (see docs/caching.md).
        ttl: the longest an entry lives, in seconds, even if no invalidation
            ever comes; an entry whose key has a shorter TTL on the server
            lives only that long (its PTTL is read with it).
        mode: ``"default"`` caches every allow-listed read, tracked by the
            server per key read; ``"optin"`` caches only reads made through
            ``r.cached`` (``CLIENT CACHING YES`` is sent with each); ``"bcast"``
            caches every allow-listed read of keys under ``prefixes``, and
            the server reports every change under them.
        prefixes: key prefixes for ``"bcast"`` (str or bytes); none means all.
        fetch_ttl: read each key's PTTL with a cached read (one more small
            command per key on a miss) so entries never outlive their keys;
            False trusts expiry invalidations and ``ttl`` alone.
        cache_class: as in redis-py; accepted for compatibility and not
            used (geredis keeps its own store per connection).
        eviction_policy: as in redis-py; accepted for compatibility and not
            used (geredis's store is an LRU).

    Nothing is checked here: a bad value raises ``ValueError`` when a client
    is made with this config (:func:`settings_from_config`).
    """

    def __init__(
        self,
        max_size: int = redis.cache.CacheConfig.DEFAULT_MAX_SIZE,
        cache_class: Any = redis.cache.CacheConfig.DEFAULT_CACHE_CLASS,
        eviction_policy: Any = redis.cache.CacheConfig.DEFAULT_EVICTION_POLICY,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 60.0,
        mode: str = "default",
        prefixes: Iterable[Union[str, bytes]] = (),
        fetch_ttl: bool = True,
    ) -> None:
        super().__init__(max_size, cache_class, eviction_policy)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.mode = mode
        self.prefixes = tuple(prefixes)
        self.fetch_ttl = fetch_ttl


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """A client cache's resolved, validated settings
    (:func:`settings_from_config`); hashable, so equal configs share
    connections."""

    #: At most this many entries per connection (the config's ``max_size``).
    max_entries: int = redis.cache.CacheConfig.DEFAULT_MAX_SIZE
    #: At most about this many bytes of entries per connection (estimated).
    max_bytes: int = 64 * 1024 * 1024
    #: The longest an entry lives, in seconds.
    ttl: float = 60.0
    #: The tracking mode: one of :data:`MODES`, lower case.
    mode: str = "default"
    #: The ``"bcast"`` key prefixes, encoded (empty: every key).
    prefixes: Tuple[bytes, ...] = ()
    #: Whether each cached read also reads its keys' PTTL.
    fetch_ttl: bool = True
    #: The cacheable commands: ``keys.KEY_SPECS`` that the config allows.
    commands: FrozenSet[str] = frozenset()

    def tracking_command(self) -> Tuple[Any, ...]:
        """The ``CLIENT TRACKING ON ...`` command that starts tracking (sent
        in each connection's handshake).

        Returns:
            The command and its arguments: ``OPTIN`` in ``"optin"`` mode,
            ``BCAST`` and a ``PREFIX`` pair per prefix in ``"bcast"`` mode.
        """
        args: Tuple[Any, ...] = ("CLIENT", "TRACKING", "ON")
        if self.mode == "optin":
            return args + ("OPTIN",)
        if self.mode == "bcast":
            args += ("BCAST",)
            for prefix in self.prefixes:
                args += ("PREFIX", prefix)
        return args

    @property
    def transparent(self) -> bool:
        """Whether plain reads (``r.get``) are cached, not only ``r.cached``."""
        return self.mode != "optin"


def settings_from_config(config: Any, encoding: str = "utf-8") -> CacheSettings:
    """Validated settings from a redis-py or geredis ``CacheConfig``.

    A redis-py config gets geredis's defaults for what it lacks (bytes,
    TTL, mode).

    Args:
        config: the ``CacheConfig`` (any
            ``redis.cache.CacheConfigurationInterface``).
        encoding: the client's encoding, for str prefixes.

    Returns:
        The resolved settings; the cacheable commands are those of
        ``keys.KEY_SPECS`` that ``config.is_allowed_to_cache`` allows.

    Raises:
        ValueError: not a CacheConfig, an unknown mode, prefixes outside
            ``"bcast"``, or a limit that is not a positive number.
    """
    if not isinstance(config, redis.cache.CacheConfigurationInterface):
        raise ValueError(
            f"cache_config must be a redis.cache.CacheConfig, not {type(config).__name__}"
        )
    extra = config if isinstance(config, CacheConfig) else CacheConfig()
    mode = str(extra.mode).lower()
    if mode not in MODES:
        raise ValueError(f"cache mode must be one of {', '.join(MODES)}, not {extra.mode!r}")
    if extra.prefixes and mode != "bcast":
        raise ValueError("cache prefixes apply to mode='bcast' only")
    prefixes = tuple(
        p.encode(encoding) if isinstance(p, str) else bytes(p) for p in extra.prefixes
    )
    max_entries = config.get_max_size()
    for name, value in (("max_size", max_entries), ("max_bytes", extra.max_bytes),
                        ("ttl", extra.ttl)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"cache {name} must be a positive number, not {value!r}")
    commands = frozenset(name for name in KEY_SPECS if config.is_allowed_to_cache(name))
    return CacheSettings(
        max_entries=int(max_entries), max_bytes=int(extra.max_bytes), ttl=float(extra.ttl),
        mode=mode, prefixes=prefixes, fetch_ttl=bool(extra.fetch_ttl), commands=commands,
    )
