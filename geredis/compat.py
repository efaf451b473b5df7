"""What redis-py code expects of a client object, on top of geredis.

How this works: ``geredis.Redis`` subclasses ``redis.Redis`` without running
its constructor, so the pieces redis-py's own code reads from a client are
provided here:

* :func:`settings_from_kwargs` takes ``redis.Redis``'s constructor arguments:
  those geredis applies become a :class:`~geredis.settings.ConnectionSettings`
  (its fields are the supported arguments); any other ``redis.Redis``
  argument is accepted only at its default value, anything else raises
  ``ValueError`` (or ``TypeError`` for a name redis-py does not know) instead
  of being ignored silently;
* :func:`response_callbacks`: redis-py's callback table for the protocol the
  user asked for, read through redis-py's public attribute once per table;
* :class:`Futures`: ``r.futures``, every command method returning an
  ``AsyncResult``.

(``r.connection_pool`` is ``pool.py``.) Everything redis-py is reached
through names bound when this module is imported, so that
``geredis.monkey.patch_redis()`` rebinding ``redis.Redis`` to geredis's class
cannot make geredis call itself.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, Dict, Optional

import redis
from gevent.event import AsyncResult
from redis._parsers.encoders import Encoder
from redis._parsers.helpers import parse_set_result
from redis.client import CaseInsensitiveDict
from redis.commands import CoreCommands

from .settings import ConnectionSettings

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = [
    "Futures", "RedisPy", "is_default_argument", "response_callbacks", "settings_from_kwargs",
]

#: redis-py's own client class, whatever ``redis.Redis`` is bound to later.
RedisPy = redis.client.Redis

_SUPPORTED = set(ConnectionSettings.__dataclass_fields__)
_REDIS_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(RedisPy.__init__).parameters.items()
    if name != "self" and name not in _SUPPORTED
}
# Arguments whose redis-py default is a sentinel object meaning "not given".
_SENTINEL = _REDIS_DEFAULTS.get("driver_info")
_SENTINEL_ARGS = {"lib_name", "lib_version", "socket_keepalive_options"}
_callback_tables: Dict[Any, CaseInsensitiveDict] = {}
_SETTINGS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ConnectionSettings)}


def settings_from_kwargs(kwargs: Dict[str, Any]) -> ConnectionSettings:
    """Connection settings from ``redis.Redis``-style arguments (see above).

    Args:
        kwargs: ``redis.Redis`` constructor arguments. The connection
            settings are popped out of it; what is left must be other
            ``redis.Redis`` arguments at their defaults.

    Returns:
        The settings those arguments stand for.

    Raises:
        TypeError: an argument ``redis.Redis`` does not take.
        ValueError: a ``redis.Redis`` argument geredis does not apply, given
            a value other than its default; or a setting whose value cannot
            be read (from :class:`~geredis.settings.ConnectionSettings`).
    """
    settings_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _SUPPORTED}
    for name in _SENTINEL_ARGS & settings_kwargs.keys():
        if settings_kwargs[name] is _SENTINEL:
            del settings_kwargs[name]
    for name, value in kwargs.items():
        if name not in _REDIS_DEFAULTS:
            raise TypeError(f"geredis.Redis() got an unexpected keyword argument {name!r}")
        default = _REDIS_DEFAULTS[name]
        if value is not default and value != default:
            raise ValueError(
                f"geredis.Redis() does not support {name}={value!r}; leave it at its"
                f" default ({default!r})"
            )
    return ConnectionSettings(**settings_kwargs)


def is_default_argument(name: str, value: Any) -> bool:
    """Whether ``value`` is the default of ``redis.Redis``'s argument ``name``
    (or of geredis's own connection setting).

    Args:
        name: a ``redis.Redis`` argument or a
            :class:`~geredis.settings.ConnectionSettings` field.
        value: the value given for it.

    Returns:
        True if ``value`` is (or equals) that default.

    Raises:
        TypeError: ``name`` is neither.
    """
    if name in _SETTINGS_DEFAULTS:
        default = _SETTINGS_DEFAULTS[name]
    elif name in _REDIS_DEFAULTS:
        default = _REDIS_DEFAULTS[name]
    else:
        raise TypeError(f"geredis.Redis() got an unexpected keyword argument {name!r}")
    return value is default or value == default or (
        name in _SENTINEL_ARGS and value is _SENTINEL
    )


def response_callbacks(protocol: Optional[int], legacy: bool) -> CaseInsensitiveDict:
    """A fresh copy of redis-py's callback table for the user's protocol value
    (None, 2, 3).

    Building a ``redis.Redis`` does no I/O; it is done once per table. The
    copy bypasses ``CaseInsensitiveDict``'s per-key upper-casing (the table's
    keys are upper case already), so building a client stays cheap.

    Args:
        protocol: the ``protocol`` the user asked for: None, 2 or 3.
        legacy: ``legacy_responses``, redis-py 8's choice of reply shapes.

    Returns:
        A new ``CaseInsensitiveDict`` of command name to callback, the
        caller's to change.
    """
    key = (protocol, legacy)
    table = _callback_tables.get(key)
    if table is None:
        probe = RedisPy(protocol=protocol, legacy_responses=legacy)
        table = _callback_tables[key] = CaseInsensitiveDict(probe.response_callbacks)
        probe.close()
        if dict.get(table, "SET") is parse_set_result:
            table["SET"] = set_result
    copy = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    dict.update(copy, table)
    return copy


def set_result(response: Any, **options: Any) -> Any:
    """redis-py's ``parse_set_result`` with the common reply (``OK``, no
    options) answered first: the same results, two Python calls fewer per
    SET, the command web apps send most after GET.

    Args:
        response: SET's reply (``b"OK"``/``"OK"``, None, or the old value
            with ``get=True``).
        **options: the command's options (``get``).

    Returns:
        What ``parse_set_result`` returns: True when set, None when
        ``nx``/``xx`` prevented it, the old value with ``get=True``.
    """
    if not options and (response == b"OK" or response == "OK"):
        return True
    return parse_set_result(response, **options)  # type: ignore[no-untyped-call]


class Futures(CoreCommands):  # type: ignore[misc]
    """``r.futures.get("k")``: every command method, returning an AsyncResult.

    Only for commands that return the server's reply as it is (most of them);
    helpers that post-process in Python (``scan_iter``, ``lock``) need the
    blocking client.

    Args:
        client: the ``geredis.Redis`` whose connection the commands go on.
    """

    _is_async_client = False
    _event_dispatcher = None  # type: ignore[assignment]

    def __init__(self, client: "Redis") -> None:
        self._client = client

    def execute_command(self, *args: Any, **options: Any) -> AsyncResult:
        """Queue one command on the client's connection without waiting.

        Args:
            *args: the command and its arguments, as for
                ``Redis.execute_command``.
            **options: redis-py's per-command options.

        Returns:
            A ``gevent.event.AsyncResult`` set with the reply (after the
            response callback) or with the error (``redis.ResponseError``,
            ``redis.ConnectionError``, ``redis.TimeoutError``...), which
            ``.get()`` raises.

        Raises:
            geredis.SharedConnectionError: the command blocks and cannot share
                the connection; nothing is sent.
            redis.DataError: an argument of a type that cannot be sent.
            geredis.ClientClosedError: the client was closed.
            geredis.ThreadAffinityError: called from another OS thread than
                the client's.
            redis.TimeoutError: ``max_in_flight`` commands stayed pending for
                ``socket_timeout`` seconds.
        """
        return self._client.execute_async(*args, **options)

    def get_encoder(self) -> Encoder:
        """The client's encoder (redis-py's command mixins call this).

        Returns:
            The client's ``Encoder``.
        """
        return self._client.get_encoder()
