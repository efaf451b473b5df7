"""Which commands cannot share the multiplexed connection, and what to do.

How this works: ``ROUTES`` maps an upper-case command name (as redis-py's
mixins pass it, multi-word names included: ``"CLIENT SETNAME"``) to a check
that runs in the caller before anything is encoded or queued. A check returns
False (the command goes out on the shared connection), True (the command runs
on a dedicated connection: ``Redis._execute_dedicated``), or raises
:class:`~geredis.exceptions.SharedConnectionError` naming the API to use.
Commands absent from ``ROUTES`` (nearly all) cost one dict lookup.
:func:`block_seconds` reads how long a blocking command may wait on the
server from its own arguments, so its caller can bound the wait.

Why each group cannot share:

* blocking commands (BLPOP ... WAIT, XREAD BLOCK) would stall every greenlet
  queued behind them, so they run on a dedicated connection from the
  client's pool (``dedicated.py``), which is aborted if its caller gives up
  (an abandoned one would still pop an item on the server);
* connection state (SELECT, AUTH, HELLO, RESET, CLIENT TRACKING ...) would
  change the connection under every other greenlet;
* CLIENT REPLY OFF/SKIP suppress replies, which would shift every later reply
  onto the wrong caller;
* MULTI/EXEC/WATCH, SUBSCRIBE and MONITOR change what the connection's
  replies mean for everyone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

from .exceptions import SharedConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = ["ROUTES", "block_seconds", "is_blocking"]

#: ``check(client, command, args)``: a route's check (see :data:`ROUTES`).
Check = Callable[["Redis", str, Tuple[Any, ...]], bool]

_BLOCKING = (
    "BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP WAIT WAITAOF".split()
)
_BLOCKING_SET = frozenset(_BLOCKING)
_SUBSCRIBE = "SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE".split()
_TRANSACTION = "MULTI EXEC DISCARD WATCH UNWATCH".split()


def _refuse(why: str) -> Check:
    def check(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
        raise SharedConnectionError(f"{command} {why}")

    return check


def command_name(value: Any) -> str:
    """A command name or option word as an upper-case ``str``.

    Args:
        value: ``str``, ``bytes``, ``bytearray``, ``memoryview``, or anything
            ``str()`` takes.

    Returns:
        The upper-case name (bytes decoded as ASCII, undecodable bytes
        replaced).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("ascii", "replace").upper()
    return str(value).upper()


_REPLICATION = "turns its connection into a replication stream; use redis-cli or a replica"
_CLUSTER = "changes connection state for cluster replicas; use a cluster client"

def _blocking(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # Blocking commands run on a dedicated connection.
    return True


def _block_index(args: Tuple[Any, ...]) -> int:
    # Where XREAD/XREADGROUP's BLOCK option is (0: none); options end at STREAMS.
    for i, arg in enumerate(args[1:], 1):
        if isinstance(arg, (str, bytes)):
            word = command_name(arg)
            if word == "BLOCK":
                return i
            if word == "STREAMS":
                return 0
    return 0


def _xread(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # XREAD/XREADGROUP block only with the BLOCK option.
    return _block_index(args) > 0


def is_blocking(command: str, args: Tuple[Any, ...]) -> bool:
    """Whether a command may block on the server.

    Args:
        command: the upper-case command name.
        args: the whole command, name first, as passed to ``execute_command``.

    Returns:
        True for BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX,
        BZMPOP, WAIT, WAITAOF, and XREAD/XREADGROUP with a BLOCK option.
    """
    if command in _BLOCKING_SET:
        return True
    return command in ("XREAD", "XREADGROUP") and _block_index(args) > 0


# Where each blocking command keeps its timeout: (index, unit in seconds).
_TIMEOUT_ARG = {
    "BLPOP": (-1, 1.0), "BRPOP": (-1, 1.0), "BRPOPLPUSH": (-1, 1.0),
    "BLMOVE": (-1, 1.0), "BZPOPMIN": (-1, 1.0), "BZPOPMAX": (-1, 1.0),
    "BLMPOP": (1, 1.0), "BZMPOP": (1, 1.0), "WAIT": (2, 0.001), "WAITAOF": (3, 0.001),
}  # fmt: skip


def block_seconds(command: str, args: Tuple[Any, ...]) -> float:
    """How long a blocking command may wait on the server, from its own
    arguments.

    Args:
        command: the upper-case name of a blocking command (see
            :func:`is_blocking`).
        args: the whole command, name first.

    Returns:
        The seconds: BLPOP's last argument, BLMPOP's first, XREAD's ``BLOCK``
        milliseconds, WAIT's timeout (ms). ``math.inf`` when it may wait
        forever (a timeout of 0); 0.0 for a timeout it cannot read (the
        server refuses such a command at once).
    """
    try:
        if command in ("XREAD", "XREADGROUP"):
            index, unit = _block_index(args) + 1, 0.001
            if index == 1:
                return 0.0
        else:
            index, unit = _TIMEOUT_ARG[command]
        value = float(args[index])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
    if value == 0:
        return math.inf
    return max(value * unit, 0.0)


def _client_setname(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # Name the shared connection now and every connection opened later.
    name = args[1] if command == "CLIENT SETNAME" else args[2]
    client.settings.client_name = name.decode() if isinstance(name, bytes) else name
    return False


_CLIENT_SUBCOMMANDS: Dict[str, Check] = {
    "SETNAME": _client_setname,
    "REPLY": _refuse(
        "OFF/SKIP would suppress replies and desynchronise the shared connection;"
        " use a redis.Redis client for it"
    ),
    "TRACKING": _refuse(
        "would change what every greenlet's reads track; pass cache_config= to"
        " geredis.Redis() for client-side caching (docs/caching.md)"
    ),
}


def _client(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # redis-py passes "CLIENT SETNAME" as one name; users may pass "CLIENT", "SETNAME".
    words = command.split()
    sub = words[1] if len(words) > 1 else (command_name(args[1]) if len(args) > 1 else "")
    check = _CLIENT_SUBCOMMANDS.get(sub)
    if check is not None:
        return check(client, "CLIENT " + sub, args)
    return False


#: Upper-case command name -> the check that runs before it is encoded: it
#: returns False (the shared connection), True (a dedicated connection), or
#: raises ``SharedConnectionError`` naming the API to use. Commands not here
#: go to the shared connection.
ROUTES: Dict[str, Check] = {}
ROUTES.update({name: _blocking for name in _BLOCKING})
ROUTES.update({"XREAD": _xread, "XREADGROUP": _xread})
ROUTES.update(
    {name: _refuse("needs a subscriber connection; use r.pubsub()") for name in _SUBSCRIBE}
)
ROUTES.update(
    {
        name: _refuse(
            "needs a connection of its own; use r.pipeline() / r.transaction()"
            " (pipe.watch(), pipe.multi()), or r.client() for raw MULTI/WATCH"
        )
        for name in _TRANSACTION
    }
)
ROUTES.update(
    {
        "SELECT": _refuse("would switch the database under every greenlet; pass"
                          " db= to geredis.Redis() (one client per database), or"
                          " use r.client() for a connection of your own"),
        "AUTH": _refuse("would change the shared connection's user; pass"
                        " username=/password= to geredis.Redis()"),
        "HELLO": _refuse("would change the shared connection's protocol; pass"
                         " protocol= to geredis.Redis()"),
        "RESET": _refuse("would reset the connection under every greenlet; use close(),"
                         " or r.client() for connection state of your own"),
        "QUIT": _refuse("would close the connection under every greenlet; use close()"),
        "MONITOR": _refuse("turns its connection into a command feed; use r.monitor()"),
        "SYNC": _refuse(_REPLICATION),
        "PSYNC": _refuse(_REPLICATION),
        "READONLY": _refuse(_CLUSTER),
        "READWRITE": _refuse(_CLUSTER),
    }
)
for _sub in _CLIENT_SUBCOMMANDS:
    ROUTES["CLIENT " + _sub] = _client
ROUTES["CLIENT"] = _client
