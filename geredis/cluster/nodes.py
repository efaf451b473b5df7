"""One cluster node's connections: ``node.redis_connection``.

How this works: every node of the cluster (primary or replica) gets one
:class:`NodeRedis`, a ``geredis.Redis`` bound to that node's address, built
from the cluster client's settings (``Redis._setup``, the single-node
constructor's second half). So each node has exactly what a single-server
client has, and nothing is written twice:

* one multiplexed shared :class:`~geredis.connection.Connection`, opened
  lazily and opened anew after it broke, on which every greenlet's commands
  to that node coalesce;
* a bounded pool of dedicated connections (blocking commands, WATCH
  transactions, large pipelines, ``client()``, ``monitor()``);
* ``pubsub()`` on a connection of its own.

The cluster client routes a command to a node and then uses that node's
pieces directly (``_usable_connection()``, ``_dedicated``); users may also
call ``rc.get_node(...).redis_connection`` like redis-py's per-node
``Redis``, e.g. ``.info()`` or ``.client()`` for a connection pinned to that
node. Its own retries are off: the cluster client decides what is retried,
after looking at the slot map again.

:class:`NodeSettings` adds ``READONLY`` to the handshake when the cluster
reads from replicas (on every node, as redis-py does: roles change with
failovers, and READONLY is harmless on a primary). Over TLS every node
reuses the cluster client's one ``SSLContext`` (building one reads the CA
and certificate files: tens of milliseconds of the loop's time per node).
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

from ..client import Redis
from ..dedicated import MAX_DEDICATED
from ..network import TLSError, share_ssl_context
from ..retry import RetryPolicy
from ..settings import ConnectionSettings, HandshakeStep

__all__ = ["NodeRedis", "NodeSettings"]


@dataclasses.dataclass
class NodeSettings(ConnectionSettings):
    """A node's connection settings: the cluster's, with its own address.

    Its fields are :class:`~geredis.settings.ConnectionSettings`'s, plus
    ``readonly``; build it with :meth:`for_node`.
    """

    #: Send READONLY after the handshake (reads from replicas).
    readonly: bool = False

    def handshake(self) -> List[HandshakeStep]:
        """The cluster's handshake, then ``READONLY`` when ``readonly``.

        Returns:
            ``(args, optional)`` pairs, as
            :meth:`ConnectionSettings.handshake <geredis.settings.ConnectionSettings.handshake>`.
        """
        steps = super().handshake()
        if self.readonly:
            steps.append((("READONLY",), False))
        return steps

    @classmethod
    def for_node(cls, base: ConnectionSettings, host: str, port: int,
                 readonly: bool) -> "NodeSettings":  # fmt: skip
        """``base`` (the cluster's settings) pointed at ``host:port``, with
        ``base``'s ``SSLContext`` over TLS.

        Args:
            base: the cluster client's settings.
            host: the node's host.
            port: the node's port.
            readonly: send READONLY after the handshake.

        Returns:
            New settings for that node.
        """
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(ConnectionSettings)}
        values.update(host=host, port=port)
        settings = cls(readonly=readonly, **values)
        try:
            share_ssl_context(base, settings)
        except TLSError:  # unreadable TLS files: the node's connect raises it, as usual
            pass
        return settings


class NodeRedis(Redis):
    """The ``geredis.Redis`` of one cluster node (see the module comment).

    Args:
        settings: the node's settings (``NodeSettings.for_node``).
        parser: as for ``geredis.Redis``, taken from the cluster client.
        max_dedicated: as for ``geredis.Redis``, taken from the cluster
            client.
        dedicated_timeout: as for ``geredis.Redis``, taken from the cluster
            client.
        pipeline_threshold: as for ``geredis.Redis``, taken from the cluster
            client (None: the default).
    """

    def __init__(self, settings: NodeSettings, *, parser: str = "auto",
                 max_dedicated: int = MAX_DEDICATED,
                 dedicated_timeout: Optional[float] = None,
                 pipeline_threshold: Optional[int] = None) -> None:  # fmt: skip
        extra: Any = {} if pipeline_threshold is None else {"pipeline_threshold": pipeline_threshold}
        self._setup(settings, RetryPolicy(None), parser, max_dedicated, dedicated_timeout,
                    **extra)  # fmt: skip

    def __repr__(self) -> str:
        return "<geredis.cluster.NodeRedis" + super().__repr__()[len("<geredis.Redis"):]
