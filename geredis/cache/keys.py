"""Which reads can be cached, under what entry key, invalidated by which
Redis keys.

How this works: an entry is found by the command's arguments themselves,
``(COMMAND, *args)`` as a tuple (``("HGET", "k", "f1")`` and
``("HGET", "k", "f2")`` are two entries), so a hit costs one tuple and one
dict lookup and never encodes anything. Arguments that compare equal in
Python but differ on the wire (``1``, ``1.0``, ``True``) must never share an
entry, so :func:`entry_key` passes ``str``/``bytes`` through and turns every
other argument into the bytes the packer would send (``bool`` and other
types are refused: not cached, and the ordinary path raises ``DataError``).

An invalidation names Redis keys, so every entry is also filed under the
Redis keys its command reads: :data:`KEY_SPECS` says where they sit in the
arguments, for the read-only commands of redis-py's allow-list (first
argument, all arguments, ``numkeys`` forms, ``XREAD ... STREAMS``,
``JSON.MGET``). Redis keys are filed as bytes, encoded the way the packer
encodes them, so an invalidation (bytes, or ``str`` with
``decode_responses``) finds ``get("k")`` and ``get(b"k")`` alike.

A spec returns None for arguments it cannot vouch for (``SORT_RO`` with
``BY``/``GET``, which read keys the server does not track): such calls are
never cached.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["FIRST_KEY_WRITES", "KEY_SPECS", "WRITE_KEY_SPECS", "KeyEncoder", "entry_key"]

#: A command and its arguments, as given to ``execute_command``.
Args = Tuple[Any, ...]
#: Finds a command's Redis keys in its arguments (None: cannot tell).
KeySpec = Callable[[Args], Optional[Sequence[Any]]]


def _first(args: Args) -> Optional[Sequence[Any]]:
    return args[1:2] if len(args) > 1 else None


def _first_two(args: Args) -> Optional[Sequence[Any]]:
    return args[1:3] if len(args) > 2 else None


def _all(args: Args) -> Optional[Sequence[Any]]:
    return args[1:] if len(args) > 1 else None


def _numkeys(args: Args) -> Optional[Sequence[Any]]:
    # CMD numkeys key [key ...] [options]
    try:
        count = int(args[1])
    except (IndexError, TypeError, ValueError):
        return None
    keys = args[2:2 + count]
    return keys if count > 0 and len(keys) == count else None


def _xread(args: Args) -> Optional[Sequence[Any]]:
    # XREAD [COUNT n] [BLOCK ms] STREAMS key [key ...] id [id ...]; a blocking
    # one is never cached (it runs on a dedicated connection).
    for i, arg in enumerate(args[1:], 1):
        if isinstance(arg, (str, bytes)) and arg.upper() in ("BLOCK", b"BLOCK"):
            return None
        if isinstance(arg, (str, bytes)) and arg.upper() in ("STREAMS", b"STREAMS"):
            rest = args[i + 1:]
            if not rest or len(rest) % 2:
                return None
            return rest[:len(rest) // 2]
    return None


def _json_mget(args: Args) -> Optional[Sequence[Any]]:
    # JSON.MGET key [key ...] path
    return args[1:-1] if len(args) > 2 else None


def _sort_ro(args: Args) -> Optional[Sequence[Any]]:
    # BY and GET patterns read keys the server does not track for us.
    for arg in args[2:]:
        if isinstance(arg, (str, bytes)) and arg.upper() in ("BY", b"BY", "GET", b"GET"):
            return None
    return _first(args)


_FIRST_KEY = """
BITCOUNT BITFIELD_RO BITPOS GEODIST GEOHASH GEOPOS GEORADIUSBYMEMBER_RO
GEORADIUS_RO GEOSEARCH GET GETBIT GETRANGE HEXISTS HGET HGETALL HKEYS HLEN
HMGET HSTRLEN HVALS JSON.ARRINDEX JSON.ARRLEN JSON.GET JSON.OBJKEYS
JSON.OBJLEN JSON.RESP JSON.STRLEN JSON.TYPE LINDEX LLEN LPOS LRANGE SCARD
SISMEMBER SMEMBERS SMISMEMBER STRLEN SUBSTR TS.GET TS.INFO TS.RANGE
TS.REVRANGE TYPE XLEN XPENDING XRANGE XREVRANGE ZCARD ZCOUNT ZLEXCOUNT
ZMSCORE ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANK ZREVRANGE ZREVRANGEBYLEX
ZREVRANGEBYSCORE ZREVRANK ZSCORE
""".split()

#: Where each cacheable command's Redis keys are: ``spec(args)`` gives the
#: key arguments (``args[0]`` is the command name), or None: not cacheable.
KEY_SPECS: Dict[str, KeySpec] = {name: _first for name in _FIRST_KEY}
KEY_SPECS.update({name: _all for name in ("EXISTS", "MGET", "SDIFF", "SINTER", "SUNION")})
KEY_SPECS.update(
    {name: _numkeys for name in ("SINTERCARD", "ZDIFF", "ZINTER", "ZINTERCARD", "ZUNION")}
)
KEY_SPECS.update(
    {"LCS": _first_two, "XREAD": _xread, "JSON.MGET": _json_mget, "SORT_RO": _sort_ro}
)


def _pairs(args: Args) -> Optional[Sequence[Any]]:
    # MSET key value [key value ...]
    return args[1::2] if len(args) > 2 and len(args) % 2 == 1 else None


_FIRST_KEY_WRITES = """
APPEND DECR DECRBY EXPIRE EXPIREAT GETDEL GETEX GETSET HDEL HINCRBY
HINCRBYFLOAT HMSET HSET HSETNX INCR INCRBY INCRBYFLOAT LINSERT LPOP LPUSH
LPUSHX LREM LSET LTRIM PERSIST PEXPIRE PEXPIREAT PFADD PSETEX RPOP RPUSH
RPUSHX SADD SET SETBIT SETEX SETNX SETRANGE SPOP SREM XADD XDEL XTRIM ZADD
ZINCRBY ZPOPMAX ZPOPMIN ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE
GEOADD HEXPIRE HPEXPIRE HPERSIST
""".split()

#: The writes whose one key is their first argument (the common case,
#: checked first by ``ClientCache.slot``).
FIRST_KEY_WRITES = frozenset(_FIRST_KEY_WRITES)
#: Where the keys a common write changes are: ``spec(args)`` gives the key
#: arguments, or None. The client's own write of a listed command drops
#: exactly those keys from its cache when it is queued; any other write
#: fences the whole cache (``flight.WriteSlot``).
WRITE_KEY_SPECS: Dict[str, KeySpec] = {name: _first for name in _FIRST_KEY_WRITES}
WRITE_KEY_SPECS.update({"DEL": _all, "UNLINK": _all, "MSET": _pairs, "MSETNX": _pairs,
                        "RENAME": _first_two, "RENAMENX": _first_two, "LMOVE": _first_two,
                        "RPOPLPUSH": _first_two, "SMOVE": _first_two, "COPY": _first_two})


class KeyEncoder:
    """Turns arguments into entry keys and Redis keys into the bytes used to
    file entries, with the client's encoding (as the packer does).

    Args:
        encoding: the client's ``encoding``.
        errors: the client's ``encoding_errors``.
    """

    __slots__ = ("encoding", "errors")

    def __init__(self, encoding: str = "utf-8", errors: str = "strict") -> None:
        self.encoding = encoding
        self.errors = errors

    def key_bytes(self, arg: Any) -> bytes:
        """A Redis key as the bytes the packer sends for it.

        Args:
            arg: a key argument: bytes, str, int, float, bytearray or
                memoryview.

        Returns:
            The key's bytes.

        Raises:
            ValueError: ``arg`` cannot be a key (a bool, None, another type),
                or a str does not encode with the client's encoding
                (``UnicodeEncodeError``).
        """
        kind = type(arg)
        if kind is bytes:
            return arg  # type: ignore[no-any-return]
        if kind is str:
            return arg.encode(self.encoding, self.errors)  # type: ignore[no-any-return]
        if kind is int or kind is float:
            return repr(arg).encode()
        if kind is bytearray or kind is memoryview:
            return bytes(arg)
        raise ValueError(f"not a key: {arg!r:.40}")

    def pushed_key(self, key: Any) -> bytes:
        """A key named by an invalidation, as the bytes entries are filed
        under.

        Args:
            key: the key as the invalidation carried it: bytes, or str when
                the connection decodes replies.

        Returns:
            The key's bytes.
        """
        kind = type(key)
        if kind is bytes:
            return key  # type: ignore[no-any-return]
        if kind is str:
            return key.encode(self.encoding, self.errors)  # type: ignore[no-any-return]
        return bytes(key)


def entry_key(command: str, args: Args) -> Optional[Args]:
    """The entry key of a call (see the module comment).

    Args:
        command: the command's upper-case name (replaces ``args[0]``).
        args: the command and its arguments.

    Returns:
        ``(command, *args[1:])`` with str and bytes arguments as they are
        and numbers, bytearrays and memoryviews as the bytes the packer
        sends; None when an argument is of a type that must not be cached
        (a bool, None, anything else).
    """
    rest = args[1:]
    for arg in rest:
        kind = type(arg)
        if kind is not str and kind is not bytes:
            break
    else:
        return (command, *rest)
    out: List[Any] = [command]
    for arg in rest:
        kind = type(arg)
        if kind is str or kind is bytes:
            out.append(arg)
        elif kind is int or kind is float:
            out.append(repr(arg).encode())  # 1 and "1" are the same command
        elif kind is bytearray or kind is memoryview:
            out.append(bytes(arg))
        else:
            return None
    return tuple(out)
