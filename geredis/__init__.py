"""geredis: a Redis client for gevent that auto-pipelines many greenlets'
commands over one connection, with redis-py's API.

    import geredis
    r = geredis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    r.set("k", "v"); r.get("k")          # from any number of greenlets
"""

from . import speedups as _speedups

_speedups.install()  # GEREDIS_PURE_PYTHON=1: the .py files, even where compiled

from .__about__ import __version__
from .client import Redis, from_url
from .cluster import ClusterNode, RedisCluster
from .compat import Futures
from .connection import Connection, State
from .exceptions import (
    ClientClosedError,
    ConnectionClosedError,
    PoolExhaustedError,
    ProtocolError,
    SharedConnectionError,
)
from .guards import ThreadAffinityError
from .monkey import patch_redis, unpatch_redis
from .pool import ConnectionPool
from .server import ServerConnections

#: True when the hot path runs compiled (see ``geredis/speedups.py``): a
#: wheel built where Cython and a C compiler were present, and
#: ``GEREDIS_PURE_PYTHON`` unset.
COMPILED: bool = len(_speedups.compiled_modules()) == len(_speedups.COMPILED_MODULES)

__all__ = [
    "COMPILED",
    "ClientClosedError",
    "ClusterNode",
    "Connection",
    "ConnectionPool",
    "ConnectionClosedError",
    "Futures",
    "PoolExhaustedError",
    "ProtocolError",
    "Redis",
    "RedisCluster",
    "ServerConnections",
    "SharedConnectionError",
    "State",
    "ThreadAffinityError",
    "__version__",
    "from_url",
    "patch_redis",
    "unpatch_redis",
]
