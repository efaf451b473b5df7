"""Which commands cannot share the multiplexed connection, and what to do.

How this works: ``ROUTES`` maps an upper-case command name (as redis-py's
mixins pass it, multi-word names included: ``"CLIENT SETNAME"``) to a check
that runs in the caller before anything is encoded or queued. A check returns
False (the command goes out on the shared connection), True (the command runs
on a dedicated connection: ``Redis._execute_dedicated``), or raises
:class:`~geredis.exceptions.SharedConnectionError` naming the API to use.
Commands absent from ``ROUTES`` (nearly all) cost one dict lookup.

Why each group is refused:

* blocking commands (BLPOP ... WAIT) would stall every greenlet queued behind
  them, and an abandoned one would still pop an item on the server;
* connection state (SELECT, AUTH, HELLO, RESET, CLIENT TRACKING ...) would
  change the connection under every other greenlet;
* CLIENT REPLY OFF/SKIP suppress replies, which would shift every later reply
  onto the wrong caller;
* MULTI/EXEC/WATCH, SUBSCRIBE and MONITOR change what the connection's
  replies mean for everyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

from .exceptions import SharedConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = ["ROUTES"]

Check = Callable[["Redis", str, Tuple[Any, ...]], bool]

_BLOCKING = (
    "BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP WAIT WAITAOF".split()
)
_SUBSCRIBE = "SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE".split()
_TRANSACTION = "MULTI EXEC DISCARD WATCH UNWATCH".split()


def _refuse(why: str) -> Check:
    def check(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
        raise SharedConnectionError(f"{command} {why}")

    return check


def _word(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("ascii", "replace").upper()
    return str(value).upper()


_REPLICATION = "turns its connection into a replication stream; use redis-cli or a replica"
_CLUSTER = "changes connection state for cluster replicas; use a cluster client"

def _blocking(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # Blocking commands run on a dedicated connection.
    return True


def _xread(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # XREAD/XREADGROUP block only with the BLOCK option.
    return any(_word(a) == "BLOCK" for a in args[1:] if isinstance(a, (str, bytes)))


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
        "(client-side caching) is not supported on the shared connection;"
        " use a redis.Redis client for it"
    ),
}


def _client(client: "Redis", command: str, args: Tuple[Any, ...]) -> bool:
    # redis-py passes "CLIENT SETNAME" as one name; users may pass "CLIENT", "SETNAME".
    words = command.split()
    sub = words[1] if len(words) > 1 else (_word(args[1]) if len(args) > 1 else "")
    check = _CLIENT_SUBCOMMANDS.get(sub)
    if check is not None:
        return check(client, "CLIENT " + sub, args)
    return False


ROUTES: Dict[str, Check] = {}
ROUTES.update({name: _blocking for name in _BLOCKING})
ROUTES.update({"XREAD": _xread, "XREADGROUP": _xread})
ROUTES.update(
    {name: _refuse("needs a subscriber connection; use r.pubsub()") for name in _SUBSCRIBE}
)
ROUTES.update(
    {
        name: _refuse("needs a connection of its own; use r.pipeline() or r.transaction()")
        for name in _TRANSACTION
    }
)
ROUTES.update(
    {
        "SELECT": _refuse("would switch the database under every greenlet; pass"
                          " db= to geredis.Redis() (one client per database)"),
        "AUTH": _refuse("would change the shared connection's user; pass"
                        " username=/password= to geredis.Redis()"),
        "HELLO": _refuse("would change the shared connection's protocol; pass"
                         " protocol= to geredis.Redis()"),
        "RESET": _refuse("would reset the connection under every greenlet; use close()"),
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
