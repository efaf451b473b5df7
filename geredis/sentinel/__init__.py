"""Redis Sentinel for geredis: clients that follow the primary through
failovers, with redis-py's ``redis.sentinel`` API.

    from geredis.sentinel import Sentinel
    sentinel = Sentinel([("127.0.0.1", 26379), ("127.0.0.1", 26380)], socket_timeout=0.5)
    primary = sentinel.master_for("mymaster")   # a geredis.Redis
    replica = sentinel.slave_for("mymaster")
    primary.set("k", "v"); replica.get("k")

See ``docs/sentinel.md``.
"""

from redis.sentinel import MasterNotFoundError, ReplicaNotFoundError, SlaveNotFoundError

from .manager import Sentinel
from .resolver import SentinelResolver
from .url import connect, parse_sentinel_url

__all__ = [
    "MasterNotFoundError",
    "ReplicaNotFoundError",
    "Sentinel",
    "SentinelResolver",
    "SlaveNotFoundError",
    "connect",
    "parse_sentinel_url",
]
