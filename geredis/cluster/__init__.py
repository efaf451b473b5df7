"""Redis Cluster for geredis: ``geredis.RedisCluster``, redis-py's
``RedisCluster`` API with one auto-pipelined connection per node.

How this works, one module each:

* ``client.py``: :class:`RedisCluster`, its constructor and redis-py's
  client-level API over the pieces below.
* ``routing.py``: ``execute_command``: route by slot, send on the node's
  multiplexed connection, follow MOVED/ASK/TRYAGAIN/CLUSTERDOWN, retry only
  what is safe to repeat.
* ``topology.py``: the slot map in redis-py's shape (``NodesManager``), parsed
  from ``CLUSTER SHARDS`` (or ``CLUSTER SLOTS``).
* ``refresh.py``: re-reading the map in the background, one refresh at a
  time shared by every caller that asked; closing nodes that left.
* ``nodes.py``: each node's ``geredis.Redis`` (``node.redis_connection``):
  its shared connection, dedicated pool and pub/sub.

redis-py's cluster exceptions and ``ClusterNode`` are re-exported here, with
:class:`ClusterUnreachableError` (no node could be connected to: both a
``RedisClusterException`` and a ``redis.ConnectionError``).
"""

from redis.cluster import ClusterNode, LoadBalancingStrategy
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    CrossSlotTransactionError,
    MasterDownError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from .client import RedisCluster
from .nodes import NodeRedis
from .refresh import ClusterUnreachableError

__all__ = [
    "AskError",
    "ClusterCrossSlotError",
    "ClusterDownError",
    "ClusterError",
    "ClusterNode",
    "ClusterUnreachableError",
    "CrossSlotTransactionError",
    "LoadBalancingStrategy",
    "MasterDownError",
    "MovedError",
    "NodeRedis",
    "RedisCluster",
    "RedisClusterException",
    "SlotNotCoveredError",
    "TryAgainError",
]
