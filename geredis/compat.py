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
* :class:`PoolView`: the ``connection_pool`` attribute (``connection_kwargs``,
  ``get_encoder``, ``get_protocol``) that redis-py modules inspect;
* :class:`Futures`: ``r.futures``, every command method returning an
  ``AsyncResult``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Dict, Optional

import redis
from gevent.event import AsyncResult
from redis._parsers.encoders import Encoder
from redis.client import CaseInsensitiveDict
from redis.commands import CoreCommands

from .settings import ConnectionSettings

if TYPE_CHECKING:  # pragma: no cover
    from .client import Redis

__all__ = ["Futures", "PoolView", "response_callbacks", "settings_from_kwargs"]

_SUPPORTED = set(ConnectionSettings.__dataclass_fields__)
_REDIS_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(redis.Redis.__init__).parameters.items()
    if name != "self" and name not in _SUPPORTED
}
# Arguments whose redis-py default is a sentinel object meaning "not given".
_SENTINEL = _REDIS_DEFAULTS.get("driver_info")
_SENTINEL_ARGS = {"lib_name", "lib_version", "socket_keepalive_options"}
_callback_tables: Dict[Any, Dict[str, Any]] = {}


def settings_from_kwargs(kwargs: Dict[str, Any]) -> ConnectionSettings:
    """Connection settings from ``redis.Redis``-style arguments (see above)."""
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


def response_callbacks(protocol: Optional[int], legacy: bool) -> CaseInsensitiveDict:
    """redis-py's callback table for the user's protocol value (None, 2, 3).

    Building a ``redis.Redis`` does no I/O; it is done once per table.
    """
    key = (protocol, legacy)
    if key not in _callback_tables:
        probe = redis.Redis(protocol=protocol, legacy_responses=legacy)
        _callback_tables[key] = dict(probe.response_callbacks)
        probe.close()
    return CaseInsensitiveDict(_callback_tables[key])


class PoolView:
    """Enough of ``connection_pool`` for redis-py code that inspects a client
    (``connection_kwargs``, ``get_encoder``, ``get_protocol``)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings

    @property
    def connection_kwargs(self) -> Dict[str, Any]:
        return self.settings.connection_kwargs()

    def get_encoder(self) -> Encoder:
        s = self.settings
        return Encoder(s.encoding, s.encoding_errors, s.decode_responses)  # type: ignore[no-untyped-call]

    def get_protocol(self) -> Optional[int]:
        return self.settings.protocol


class Futures(CoreCommands):  # type: ignore[misc]
    """``r.futures.get("k")``: every command method, returning an AsyncResult.

    Only for commands that return the server's reply as it is (most of them);
    helpers that post-process in Python (``scan_iter``, ``lock``) need the
    blocking client.
    """

    _is_async_client = False
    _event_dispatcher = None  # type: ignore[assignment]

    def __init__(self, client: "Redis") -> None:
        self._client = client

    def execute_command(self, *args: Any, **options: Any) -> AsyncResult:
        return self._client.execute_async(*args, **options)

    def get_encoder(self) -> Encoder:
        return self._client.get_encoder()


def _command_name(name: Any) -> str:
    if isinstance(name, (bytes, bytearray, memoryview)):
        return bytes(name).decode("ascii", "replace").upper()
    return str(name).upper()


_REDIS_SENTINEL = _REDIS_DEFAULTS.get("driver_info")
