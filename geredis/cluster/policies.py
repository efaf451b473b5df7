"""redis-py's routing rules, set up for a client built without redis-py's
constructor.

How this works: ``redis.cluster.RedisCluster.__init__`` connects with
blocking sockets, so geredis never runs it; the few tables it builds that
redis-py's own routing methods (``_determine_nodes``, ``determine_slot``,
``_process_result``) read are built here the same way:

* :func:`tables`: from node flags (``PRIMARIES``, ``RANDOM``...) to request
  policies, and from policies to the nodes they pick;
* :func:`cluster_callbacks`: the callbacks redis-py applies after a node's
  own (``CLUSTER SHARDS`` has one per protocol);
* :func:`targets`: where a command goes (``_internal_execute_command``'s
  decision, without its I/O): the nodes ``target_nodes=`` or the command's
  flag name, or "by its keys' slot";
* :func:`single_key_commands`: from the server's ``COMMAND`` table, the
  commands whose one key is their first argument, for the fast path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
from redis.client import CaseInsensitiveDict
from redis.cluster import (
    SLOT_ID,
    AbstractRedisCluster,
    ClusterNode,
    parse_cluster_shards_unified,
    parse_cluster_shards_with_str_keys,
)
from redis.exceptions import RedisClusterException

from ..routing import ROUTES
from ..settings import ConnectionSettings

if TYPE_CHECKING:  # pragma: no cover
    from .client import RedisCluster

__all__ = ["cluster_callbacks", "single_key_commands", "slot_of", "tables", "targets"]

_C = AbstractRedisCluster
#: Commands whose keys redis-py finds in its own way (numkeys, functions).
_NOT_SPLIT = frozenset(("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"))


def tables(rc: "RedisCluster") -> Tuple[Dict[str, Any], Dict[Any, Callable[..., Any]]]:
    """``(_command_flags_mapping, _policies_callback_mapping)`` for ``rc``.

    Args:
        rc: the cluster client.

    Returns:
        redis-py's node flag -> request policy table, and request/response
        policy -> the callable that picks the nodes or combines the replies.
    """
    flags = {
        _C.RANDOM: RequestPolicy.DEFAULT_KEYLESS,
        _C.PRIMARIES: RequestPolicy.ALL_SHARDS,
        _C.ALL_NODES: RequestPolicy.ALL_NODES,
        _C.REPLICAS: RequestPolicy.ALL_REPLICAS,
        _C.DEFAULT_NODE: RequestPolicy.DEFAULT_NODE,
        SLOT_ID: RequestPolicy.DEFAULT_KEYED,
    }
    picks: Dict[Any, Callable[..., Any]] = {
        RequestPolicy.DEFAULT_KEYLESS: lambda name: [rc.get_random_primary_or_all_nodes(name)],
        RequestPolicy.DEFAULT_KEYED: lambda command, *args: rc.get_nodes_from_slot(command, *args),
        RequestPolicy.DEFAULT_NODE: lambda: [rc.get_default_node()],
        RequestPolicy.ALL_SHARDS: rc.get_primaries,
        RequestPolicy.ALL_NODES: rc.get_nodes,
        RequestPolicy.ALL_REPLICAS: rc.get_replicas,
        RequestPolicy.MULTI_SHARD: lambda *args, **kwargs: rc._split_multi_shard_command(
            *args, **kwargs),
        RequestPolicy.SPECIAL: rc.get_special_nodes,
        ResponsePolicy.DEFAULT_KEYLESS: lambda res: res,
        ResponsePolicy.DEFAULT_KEYED: lambda res: res,
    }  # fmt: skip
    return flags, picks


def cluster_callbacks(settings: ConnectionSettings) -> CaseInsensitiveDict:
    """redis-py's cluster-level response callbacks for these settings.

    Args:
        settings: the cluster client's settings (protocol and reply shapes).

    Returns:
        A new callback table.
    """
    callbacks = dict(_C.CLUSTER_COMMANDS_RESPONSE_CALLBACKS)
    if not settings.legacy_responses:
        callbacks["CLUSTER SHARDS"] = parse_cluster_shards_unified
    elif settings.protocol is None:
        callbacks["CLUSTER SHARDS"] = parse_cluster_shards_with_str_keys
    return CaseInsensitiveDict(callbacks)  # type: ignore[arg-type]


def single_key_commands(commands: Dict[str, Any], command_flags: Dict[str, Any]) -> FrozenSet[str]:
    """Commands whose one key is their first argument (the fast path),
    from a parsed ``COMMAND`` reply; never one with a route, a flag or keys
    found another way.

    Args:
        commands: redis-py's parsed ``COMMAND`` reply (name -> info).
        command_flags: redis-py's command -> node flag table.

    Returns:
        The upper-case names.
    """
    names = set()
    for name, info in commands.items():
        flags = info.get("flags") or ()
        if "movablekeys" in flags or "pubsub" in flags:
            continue
        if info.get("first_key_pos") == 1 and info.get("last_key_pos") == 1:
            names.add(str(name).upper())
    return frozenset(names - set(ROUTES) - set(command_flags) - _NOT_SPLIT)


def slot_of(rc: "RedisCluster", command: str, args: Tuple[Any, ...]) -> int:
    """The one slot of a keyed command (redis-py's ``determine_slot``, with
    its errors for keys in several slots or no key).

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        args: the command and its arguments.

    Returns:
        The hash slot.

    Raises:
        redis.RedisClusterException: keys in several slots, or no key.
    """
    if command in rc._single_key and len(args) > 1:
        return int(rc.keyslot(args[1]))
    slot = rc.determine_slot(*args)
    if slot is None:
        raise RedisClusterException(f"{command} cannot be routed: pass target_nodes=")
    return int(slot)


def targets(rc: "RedisCluster", command: str, args: Tuple[Any, ...],
            target: Any) -> Tuple[Optional[List[ClusterNode]], CommandPolicies]:  # fmt: skip
    """Where a command goes, by redis-py's rules: ``(nodes, policies)``, or
    ``(None, ...)`` when it goes by its keys' slot. A node flag given as
    ``target_nodes`` wins over the command's own flag.

    Args:
        rc: the cluster client.
        command: the command's upper-case name.
        args: the command and its arguments.
        target: ``target_nodes`` as given: a node, a list of nodes, a node
            flag, or None.

    Returns:
        ``(nodes, policies)``; ``nodes`` is None for a keyed command.

    Raises:
        redis.RedisClusterException: no node found for the command.
    """
    if target is not None and not rc._is_nodes_flag(target):
        return list(rc._parse_target_nodes(target)), CommandPolicies()
    policies = rc._policy_resolver.resolve(command.lower())
    if not policies:
        flag_name = command
        if len(args) >= 2 and isinstance(args[1], (str, bytes)):
            second = args[1].decode() if isinstance(args[1], bytes) else args[1]
            if f"{command} {second}".upper() in rc.command_flags:
                flag_name = f"{command} {second}".upper()
        flag = target if target is not None else rc.command_flags.get(flag_name)
        if not flag:
            return None, CommandPolicies(RequestPolicy.DEFAULT_KEYED, ResponsePolicy.DEFAULT_KEYED)
        request = rc._command_flags_mapping.get(flag, RequestPolicy.DEFAULT_KEYLESS)
        policies = CommandPolicies(request)  # type: ignore[arg-type]
    nodes = rc._determine_nodes(*args, request_policy=policies.request_policy, nodes_flag=target)
    if not nodes:
        raise RedisClusterException(f"No targets were found to execute {args} command on")
    return list(nodes), policies
