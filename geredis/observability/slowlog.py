"""The slow-command log: commands slower than a threshold, logged without
their arguments.

How this works: :class:`SlowLog` is an
:class:`~geredis.observability.observers.Observer`. For each command that
took at least ``threshold`` seconds it logs one line on the
``geredis.slow`` logger (WARNING by default) with the command's name, how
many keys it names (:func:`key_count`), the time, the server and database,
and the error's class name when it failed. Never an argument, a key, a
value, a password or an error message (a server error message may quote the
arguments). Pipelines and transactions log their command count.

The time is what the caller waited: the round trip plus the time spent
queued behind other greenlets' commands on the shared connection, which is
what a slow request in the application sees.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Tuple

from ..routing import command_name
from .observers import Observer, served_by

__all__ = ["SlowLog", "key_count"]

#: Commands whose every argument is a key.
_ALL_KEYS = frozenset((
    "DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH", "SDIFF", "SINTER", "SUNION",
    "SDIFFSTORE", "SINTERSTORE", "SUNIONSTORE", "PFCOUNT", "PFMERGE", "RENAME", "RENAMENX",
))  # fmt: skip
#: Commands of key/value pairs.
_PAIRS = frozenset(("MSET", "MSETNX"))
#: Commands whose third argument counts the keys that follow.
_NUMKEYS = frozenset(("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"))
#: Blocking pops: keys, then a timeout.
_KEYS_THEN_TIMEOUT = frozenset(("BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"))
#: Commands that name no key.
_NO_KEYS = frozenset((
    "PING", "ECHO", "AUTH", "HELLO", "SELECT", "INFO", "TIME", "DBSIZE", "FLUSHDB", "FLUSHALL",
    "CLIENT", "CONFIG", "SCRIPT", "FUNCTION", "COMMAND", "ACL", "CLUSTER", "SLOWLOG", "MEMORY",
    "SCAN", "KEYS", "RANDOMKEY", "MULTI", "EXEC", "DISCARD", "UNWATCH", "WAIT", "SAVE", "BGSAVE",
    "LASTSAVE", "PUBLISH", "SPUBLISH", "PUBSUB", "SUBSCRIBE", "PSUBSCRIBE", "MONITOR", "QUIT",
    "DEBUG",
))  # fmt: skip


def key_count(name: str, args: Tuple[Any, ...]) -> int:
    """How many keys a command names: exact for the common multi-key
    commands, 1 for any other command with arguments.

    Args:
        name: the command's name, upper case.
        args: the command's arguments, name first.

    Returns:
        The key count.
    """
    n = len(args) - 1
    if name in _ALL_KEYS:
        return n
    if name in _PAIRS:
        return n // 2
    if name in _NUMKEYS:
        try:
            return int(args[2])
        except (IndexError, TypeError, ValueError):
            return 0
    if name in _KEYS_THEN_TIMEOUT:
        return max(n - 1, 0)
    if name in _NO_KEYS:
        return 0
    return 1 if n > 0 else 0


class SlowLog(Observer):
    """Logs commands and pipelines slower than ``threshold`` seconds.

    Args:
        threshold: seconds; a command that took at least this long is logged.
        logger: where to log (default: the ``geredis.slow`` logger).
        level: the log level (default WARNING).

    Raises:
        ValueError: ``threshold`` is negative.
    """

    def __init__(self, threshold: float, logger: Optional[logging.Logger] = None,
                 level: int = logging.WARNING) -> None:
        if threshold < 0:
            raise ValueError("the slow-command threshold must be at least 0 seconds")
        self.threshold = threshold
        self.logger = logger or logging.getLogger("geredis.slow")
        self.level = level

    def __repr__(self) -> str:
        return f"<geredis.SlowLog threshold={self.threshold}s>"

    def command(self, client: Any, args: Tuple[Any, ...], seconds: float,
                error: Optional[BaseException]) -> None:
        """Log the command if it took at least ``threshold`` seconds: its
        name, key count and time (never its values).

        Args:
            client: the client that ran it.
            args: the command's arguments, name first.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """
        if seconds < self.threshold:
            return
        name = command_name(args[0])
        keys = key_count(name, args)
        where, db = client.settings.address, client.settings.db
        if hasattr(client, "nodes_manager"):  # a cluster client: the key's node
            server, port, db = served_by(client, args)
            where = "the cluster" if server is None else f"{server}:{port}"
        self.logger.log(
            self.level, "slow command %s (%d key%s) took %.3fs on %s db %s%s", name, keys,
            "" if keys == 1 else "s", seconds, where, db, _failure(error),
        )

    def pipeline(self, client: Any, operation: str, commands: Sequence[Tuple[Any, ...]],
                 seconds: float, error: Optional[BaseException]) -> None:
        """Log the pipeline or transaction if it took at least ``threshold``
        seconds: its size and time.

        Args:
            client: the client that ran it.
            operation: ``"PIPELINE"`` or ``"MULTI"``.
            commands: each queued command's arguments.
            seconds: how long the caller waited.
            error: what it raised, or None.
        """
        if seconds < self.threshold:
            return
        kind = "transaction" if operation == "MULTI" else "pipeline"
        where = "the cluster" if hasattr(client, "nodes_manager") else client.settings.address
        self.logger.log(
            self.level, "slow %s of %d commands took %.3fs on %s db %s%s", kind, len(commands),
            seconds, where, client.settings.db, _failure(error),
        )


def _failure(error: Optional[BaseException]) -> str:
    # The class name only: a server's error message may quote the arguments.
    return "" if error is None else f" (failed: {type(error).__name__})"
