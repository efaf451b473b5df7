"""``rc.pipeline()``: redis-py's ``ClusterPipeline`` over geredis.

How this works:

* :class:`ClusterPipeline` subclasses ``redis.cluster.ClusterPipeline`` (so
  ``isinstance`` holds and redis-py's list of commands blocked in a cluster
  pipeline stays in force) without its constructor; what it does not hold
  itself (the slot map, callbacks, command flags) it reads from its cluster
  client.
* Without ``transaction`` (redis-py's default for cluster pipelines) the
  queued commands are routed (a command whose keys span slots raises before
  anything is sent) and sent by ``batch.run``: one batch per node, all nodes
  in parallel, redirections re-batched. Results come back in the caller's
  order through redis-py's callbacks; error replies are raised (the first
  one, annotated with its position) or returned with
  ``raise_on_error=False``.
* With ``transaction=True`` every key must map to one slot
  (``CrossSlotTransactionError`` otherwise). The transaction runs as
  ``MULTI ... EXEC`` on that slot's node through a node-level
  ``geredis.Pipeline`` (:class:`SlotPipeline`): contiguous on the shared
  connection, or, once ``watch()`` was called, on a dedicated connection of
  the node leased until ``execute``/``reset``. A transaction refused because
  the slot moved (MOVED/ASK while queueing, so EXEC aborted and nothing ran)
  is sent again to the new owner, with ``ASKING`` first for ASK; while
  WATCHing, a moved slot raises ``WatchError`` instead, since the WATCH was
  on the old node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import redis.cluster
from redis.client import EMPTY_RESPONSE
from redis.exceptions import (
    AskError,
    CrossSlotTransactionError,
    ExecAbortError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
    WatchError,
)

from ..client import finish_reply
from ..observability.tracing import CLUSTER_PIPELINE, PLAIN_CLUSTER_EXECUTE, traced_pipeline
from ..pipeline import Pipeline
from ..routing import command_name
from .batch import Item, route, run
from .routing import RETRY_LATER, on_moved, pause

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = ["ClusterPipeline", "SlotPipeline"]

_ASKING: Tuple[Tuple[Any, ...], Dict[str, Any]] = (("ASKING",), {})


class SlotPipeline(Pipeline):
    """A node's ``geredis.Pipeline`` that can send ``ASKING`` first."""

    asking = False

    def _run(self, commands: Sequence[Any], extra: float,
             consume: Callable[[int, List[Any]], None]) -> None:  # fmt: skip
        if not self.asking:
            return super()._run(commands, extra, consume)

        def shifted(offset: int, replies: List[Any]) -> None:
            consume(max(offset - 1, 0), replies[1:] if offset == 0 else replies)

        super()._run([_ASKING, *commands], extra, shifted)


class ClusterPipeline(redis.cluster.ClusterPipeline):  # type: ignore[misc]
    """``rc.pipeline(transaction=False)``; see the module comment.

    Args:
        cluster: the cluster client the commands run on.
        transaction: MULTI/EXEC, every key in one slot.
    """

    def __init__(self, cluster: "RedisCluster", transaction: bool = False) -> None:
        self._cluster = cluster
        self._is_transaction = bool(transaction)
        self.command_stack: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = []
        self.watching = False
        self.explicit_transaction = False
        self._in_trace = False  # inside a wrapper patched onto redis-py's ClusterPipeline
        self._slots: Set[int] = set()
        self._watched: Optional[SlotPipeline] = None  # the node pipeline holding the WATCH

    def __getattr__(self, name: str) -> Any:
        # The cluster's state (nodes_manager, encoder, callbacks, flags...).
        if name == "_cluster":
            raise AttributeError(name)
        return getattr(self._cluster, name)

    def __repr__(self) -> str:
        return (f"<geredis.ClusterPipeline commands={len(self.command_stack)}"
                f" transaction={self._is_transaction} watching={self.watching}>")  # fmt: skip

    def __len__(self) -> int:
        return len(self.command_stack)

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> "ClusterPipeline":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.reset()

    def __del__(self) -> None:
        try:
            self.reset()
        except Exception:  # interpreter shutdown
            pass

    # -- queueing ----------------------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue a command (or, while WATCHing before ``multi()``, run it now
        on the WATCHed node).

        Args:
            *args: the command and its arguments.
            **options: redis-py's per-command options.

        Returns:
            The pipeline (to chain calls), or the command's result when it
            ran at once.

        Raises:
            redis.CrossSlotTransactionError: in a transaction, a key of
                another slot than the ones before.
            redis.WatchError: while WATCHing, the slot moved to another node.
        """
        if not self._is_transaction:
            self.command_stack.append((args, options))
            return self
        command = _name(args[0])
        slot = None if command == "UNWATCH" else self._cluster._slot_of(command, args)
        if self.watching and not self.explicit_transaction:
            self._same_slot(slot)
            assert self._watched is not None
            try:
                return self._watched.execute_command(*args, **options)
            except (MovedError, AskError) as exc:
                self.reset()
                raise WatchError("Slot rebalancing occurred while watching keys") from exc
        if slot is not None:
            self._slots.add(slot)
        self.command_stack.append((args, options))
        return self

    pipeline_execute_command = execute_command

    def _same_slot(self, slot: Optional[int]) -> None:
        if slot is not None and self._slots and slot not in self._slots:
            raise CrossSlotTransactionError("Cannot watch or send commands on different slots")
        if slot is not None:
            self._slots.add(slot)

    def watch(self, *names: Any) -> bool:  # type: ignore[override]
        """WATCH ``names`` (all in one slot) on a dedicated connection of the
        slot's node, kept until ``execute()`` or ``reset()``.

        Args:
            *names: the keys, all in one slot (and the slot of any command
                queued before).

        Returns:
            True once watched.

        Raises:
            redis.RedisClusterException: not a transactional pipeline, or
                still redirected after ``max_redirections``.
            redis.CrossSlotTransactionError: keys of several slots.
            redis.RedisError: called after ``multi()``.
        """
        if not self._is_transaction:
            raise RedisClusterException(
                "method watch() is not supported outside of transactional context")
        if self.explicit_transaction:
            raise RedisError("Cannot issue a WATCH after a MULTI")
        cluster = self._cluster
        slot = cluster._slot_of("WATCH", ("WATCH", *names))
        self._same_slot(slot)
        for redirect in range(cluster.max_redirections + 1):
            if self._watched is None:
                node = cluster.nodes_manager.slots_cache[slot][0]
                self._watched = SlotPipeline(node.redis_connection, transaction=True)
            try:
                result = self._watched.watch(*names)
            except MovedError as exc:
                self._watched.reset()
                self._watched = None
                on_moved(cluster, exc)  # nothing is watched yet: try the new owner
                continue
            self.watching = True
            return bool(result)
        raise RedisClusterException(f"WATCH kept being redirected ({slot})")

    def unwatch(self) -> bool:  # type: ignore[override]
        """UNWATCH the keys :meth:`watch` watched.

        Returns:
            True.

        Raises:
            redis.RedisClusterException: not a transactional pipeline.
        """
        if not self._is_transaction:
            raise RedisClusterException(
                "method unwatch() is not supported outside of transactional context")
        if self._watched is not None:
            self._watched.unwatch()
        self.watching = False
        return True

    def multi(self) -> None:
        """Start queueing the transaction's commands (after :meth:`watch`).

        Raises:
            redis.RedisClusterException: not a transactional pipeline.
            redis.RedisError: called twice, or after commands were queued
                without a WATCH.
        """
        if not self._is_transaction:
            raise RedisClusterException(
                "method multi() is not supported outside of transactional context")
        if self.explicit_transaction:
            raise RedisError("Cannot issue nested calls to MULTI")
        if self.command_stack:
            raise RedisError("Commands without an initial WATCH have already been issued")
        self.explicit_transaction = True

    def reset(self) -> None:  # type: ignore[override]
        """Forget the queued commands, UNWATCH, and give back the dedicated
        connection a WATCH held; the pipeline can be used again."""
        self.command_stack = []
        self._slots = set()
        self.watching = False
        self.explicit_transaction = False
        watched, self._watched = self._watched, None
        if watched is not None:
            watched.reset()

    def discard(self) -> None:
        """As :meth:`reset` (redis-py's name for it in a transaction)."""
        self.reset()

    def delete(self, *names: Any) -> Any:
        """Queue ``DEL``.

        Args:
            *names: the keys; one outside a transaction, as redis-py.

        Returns:
            The pipeline.

        Raises:
            redis.RedisClusterException: several keys outside a transaction.
        """
        if not self._is_transaction and len(names) != 1:
            raise RedisClusterException(
                "deleting multiple keys is not implemented in pipeline command")
        return self.execute_command("DEL", *names)

    def unlink(self, *names: Any) -> Any:
        """Queue ``UNLINK``.

        Args:
            *names: the keys; one outside a transaction, as redis-py.

        Returns:
            The pipeline.

        Raises:
            redis.RedisClusterException: several keys outside a transaction.
        """
        if not self._is_transaction and len(names) != 1:
            raise RedisClusterException(
                "unlinking multiple keys is not implemented in pipeline command")
        return self.execute_command("UNLINK", *names)

    def exists(self, *keys: Any) -> Any:
        """Queue ``EXISTS``.

        Args:
            *keys: the keys.

        Returns:
            The pipeline.
        """
        return self.execute_command("EXISTS", *keys)

    # -- execute -------------------------------------------------------------------

    def execute(self, raise_on_error: bool = True) -> List[Any]:
        """Run the queued commands; their results in order.

        Without a transaction the commands are grouped per node and sent to
        every node at once, each redirected command followed on its own.
        The pipeline is reset afterwards, whatever happens.

        Args:
            raise_on_error: raise the first error reply (annotated with the
                command's position); False leaves error replies in the list.

        Returns:
            One result per queued command, in order.

        Raises:
            redis.ResponseError: a command's error reply, with
                ``raise_on_error``.
            redis.ConnectionError: a node's connection broke under a
                command that was not safe to send again.
            redis.WatchError: a watched key changed (the transaction did
                not run), or its slot moved.
            redis.CrossSlotTransactionError: a transaction's keys span
                several slots.
            redis.RedisClusterException: a transaction with no key, or still
                redirected after ``max_redirections``.
        """
        if CLUSTER_PIPELINE.execute is not PLAIN_CLUSTER_EXECUTE and not self._in_trace:
            return traced_pipeline(  # type: ignore[no-any-return]
                self, "execute", (raise_on_error,), {}, CLUSTER_PIPELINE)
        try:
            if self._is_transaction:
                return self._execute_transaction(raise_on_error)
            return self._execute_batch(raise_on_error)
        finally:
            self.reset()

    def _execute_batch(self, raise_on_error: bool) -> List[Any]:
        if not self.command_stack:
            return []
        cluster = self._cluster
        items = [Item(_name(args[0]), args, dict(options)) for args, options in self.command_stack]
        for item in items:
            route(cluster, item)
        run(cluster, items)
        results = [_result(cluster, item) for item in items]
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ResponseError):
                raise result  # a connection that broke under a command not repeated
        if raise_on_error:
            for i, result in enumerate(results):
                if isinstance(result, Exception):
                    self.annotate_exception(result, i + 1, items[i].args)
                    raise result
        return results

    def annotate_exception(self, exception: BaseException, number: int, command: Any) -> None:
        """Prefix an error's message with the command that caused it, as
        redis-py does.

        Args:
            exception: the error reply.
            number: the command's position in the pipeline, from 1.
            command: the command's arguments.
        """
        cmd = " ".join(map(str, command))
        msg = f"Command # {number} ({cmd}) of pipeline caused error: {exception.args[0]}"
        exception.args = (msg,) + exception.args[1:]

    def _execute_transaction(self, raise_on_error: bool) -> List[Any]:
        stack = self.command_stack
        if not stack and not self.watching:
            return []
        if len(self._slots) > 1:
            raise CrossSlotTransactionError(
                "All keys involved in a cluster transaction must map to the same slot")
        if self._watched is not None:
            self._watched.command_stack = list(stack)
            self._watched.explicit_transaction = True
            try:
                return self._watched.execute(raise_on_error)  # type: ignore[no-any-return]
            except ExecAbortError as exc:
                if isinstance(exc.__cause__, (MovedError, AskError)):
                    raise WatchError("Slot rebalancing occurred while watching keys") from exc
                raise
        if not self._slots:
            raise RedisClusterException("At least a command with a key is needed to identify"
                                        " a node")  # fmt: skip
        return self._run_transaction(stack, self._slots.pop(), raise_on_error)

    def _run_transaction(self, stack: List[Any], slot: int, raise_on_error: bool) -> List[Any]:
        cluster = self._cluster
        node = cluster.nodes_manager.slots_cache[slot][0]
        asking = False
        failures = 0
        for _ in range(cluster.max_redirections + 1):
            pipe = SlotPipeline(node.redis_connection, transaction=True)
            pipe.asking = asking
            pipe.command_stack = list(stack)
            try:
                return pipe.execute(raise_on_error)  # type: ignore[no-any-return]
            except ExecAbortError as exc:
                cause = exc.__cause__
                if isinstance(cause, (MovedError, AskError)):  # nothing ran: resend
                    if type(cause) is MovedError:
                        on_moved(cluster, cause)
                    node = cluster.nodes_manager.node_for(cause.host, cause.port)
                    asking = type(cause) is AskError
                    continue
                if isinstance(cause, RETRY_LATER):
                    failures += 1
                    if pause(cluster, failures, None, cluster.max_redirections):
                        node = cluster.nodes_manager.slots_cache[slot][0]
                        asking = False
                        continue
                raise
        raise RedisClusterException(f"transaction on slot {slot} kept being redirected")


def _name(raw: Any) -> str:
    return raw.upper() if type(raw) is str else command_name(raw)


def _result(cluster: "RedisCluster", item: Item) -> Any:
    """An item's reply through redis-py's callbacks; error replies stay
    values."""
    reply = item.reply
    options = item.options
    if isinstance(reply, Exception):
        if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
            return options[EMPTY_RESPONSE]
        return reply
    result = finish_reply(cluster.response_callbacks, item.command, reply, options)
    callback = cluster.cluster_response_callbacks.get(item.command)
    return result if callback is None else callback(result, **options)
