"""The hiredis-backed reader, and the choice between the two readers.

How this works
--------------
:class:`HiredisReader` is a thin wrapper over ``hiredis.Reader`` configured to
speak this package's interface: it returns :data:`NEED_DATA` when no reply is
complete, builds error replies with ``reply_error`` and raises geredis's
``ProtocolError`` on malformed input.

Invariant: the only exceptions ``gets()`` raises are ``ProtocolError`` and
``UnicodeDecodeError``. hiredis raises others on some garbage (``TypeError``
for an aggregate used as a map key, ``MemoryError`` for a huge aggregate
length); ``garbage()`` turns those into ``ProtocolError`` and the reader stays
dead, as after any protocol error. The shared connection's frame handler, which
calls ``gets`` once per reply, calls hiredis's own ``gets`` (``gets_unchecked``,
one Python call fewer per reply) and hands what it raises to ``garbage()``
itself; the Python reader has the same pair, for the same code.

:data:`Reader` is the fastest reader available; :func:`make_reader` picks one
by name.
"""

from __future__ import annotations

import codecs
from types import ModuleType
from typing import Any, Optional, Tuple, Type, Union

from ..exceptions import ProtocolError, reply_error
from .resp import PythonReader
from .values import NEED_DATA, Push

_hiredis: Optional[ModuleType]
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is an optional speed-up
    _hiredis = None
else:
    _hiredis = hiredis

__all__ = ["HIREDIS_AVAILABLE", "PUSH_TYPES", "HiredisReader", "Reader", "make_reader"]

#: Whether the ``hiredis`` package could be imported.
HIREDIS_AVAILABLE: bool = _hiredis is not None

#: The types a push message (RESP3 ``>``) can have: test with ``isinstance``
#: or ``type(reply) in PUSH_TYPES``.
PUSH_TYPES: Tuple[type, ...] = (
    (Push, _hiredis.PushNotification) if _hiredis is not None else (Push,))


class HiredisReader:
    """``hiredis.Reader`` behind the :class:`PythonReader` interface.

    Differences from :class:`PythonReader`, all hiredis 3.5 behaviour: an
    attribute (``|``) comes back as a separate reply (a list of key, value...)
    before the reply it annotates, or as an extra element when nested (which
    shifts every later element); a blob error (``!``) is a protocol error; an
    aggregate used as a map key and nesting deeper than 1024 are protocol
    errors; the two bytes after a bulk string are skipped without being
    checked; a map with a repeated key gets wrong values (``{a: 1, b: 2,
    a: 3}`` reads as ``{a: None, b: 3}``; servers never send one); push
    messages are ``hiredis.PushNotification``.

    Args:
        encoding: the codec that decodes strings, or None for ``bytes``.
        errors: the codec's error handler.

    Raises:
        RuntimeError: hiredis is not installed.
        LookupError: an unknown ``encoding`` or ``errors`` handler.
    """

    __slots__ = ("_reader", "gets_unchecked")

    def __init__(self, *, encoding: Optional[str] = None, errors: str = "strict") -> None:
        if _hiredis is None:
            raise RuntimeError("hiredis is not installed")
        codecs.lookup_error(errors)
        if encoding is None:
            self._reader = _hiredis.Reader(
                protocolError=ProtocolError, replyError=reply_error,
                notEnoughData=NEED_DATA)
        else:
            self._reader = _hiredis.Reader(
                protocolError=ProtocolError, replyError=reply_error,
                notEnoughData=NEED_DATA, encoding=encoding, errors=errors)
        #: hiredis's own ``gets``, without :meth:`gets`'s Python call (one
        #: fewer per reply, for the shared connection's frame handler): it
        #: may also raise what hiredis raises on some garbage, so its caller
        #: turns any exception but ``UnicodeDecodeError`` into
        #: :meth:`garbage`'s error.
        self.gets_unchecked = self._reader.gets

    def feed(self, data: Union[bytes, bytearray, memoryview], offset: int = 0,
             length: int = -1) -> None:
        """Append ``data[offset:offset+length]`` (hiredis copies it).

        Args:
            data: the bytes received (``bytes``, ``bytearray`` or a
                ``memoryview``), reusable by the caller as soon as this
                returns.
            offset: where in ``data`` the new bytes start.
            length: how many bytes (-1: up to the end of ``data``).
        """
        if length == -1:
            self._reader.feed(data, offset)
        else:
            self._reader.feed(data, offset, length)

    def gets(self, decode: bool = True) -> Any:
        """Return the next complete reply, or :data:`NEED_DATA`.

        Args:
            decode: decode strings with the reader's ``encoding`` (when it
                has one); False returns ``bytes`` for this one reply.

        Returns:
            The next reply (error replies as exception values built by
            :func:`~geredis.exceptions.reply_error`, not raised), or
            :data:`NEED_DATA` when more bytes are needed.

        Raises:
            geredis.ProtocolError: malformed input; the reader is dead
                from then on (every later call raises it again).
            UnicodeDecodeError: a string does not decode with ``encoding``
                and ``errors="strict"``.
        """
        try:
            return self.gets_unchecked(decode)
        except UnicodeDecodeError:
            raise
        except Exception as exc:
            raise self.garbage(exc)

    def garbage(self, exc: Exception) -> ProtocolError:
        """The error to raise for ``exc``, raised by :attr:`gets_unchecked`:
        garbage hiredis chokes on (``TypeError``, ``MemoryError``...) is
        still garbage, a ``ProtocolError``, and the reader is dead from then
        on.

        Args:
            exc: what hiredis raised (not a ``UnicodeDecodeError``).

        Returns:
            ``exc`` when it is a ``ProtocolError`` already, else a new one
            caused by it.
        """
        if isinstance(exc, ProtocolError):
            return exc  # hiredis's reader stays in its error state
        error = ProtocolError(f"Protocol error: unparsable reply ({exc!r})")
        error.__cause__ = exc
        self.gets_unchecked = _raiser(error)
        return error


def _raiser(error: ProtocolError) -> Any:
    def dead(decode: bool = True) -> Any:
        raise ProtocolError(*error.args)
    return dead


#: The reader class to use by default: hiredis's when installed.
Reader: Union[Type[HiredisReader], Type[PythonReader]] = (
    HiredisReader if HIREDIS_AVAILABLE else PythonReader)


def make_reader(*, encoding: Optional[str] = None, errors: str = "strict",
                parser: str = "auto") -> Union[HiredisReader, PythonReader]:
    """A new reader: ``parser`` is ``"auto"``, ``"hiredis"`` or ``"python"``.

    ``"auto"`` picks hiredis when it is installed; asking for ``"hiredis"``
    without it raises ``ValueError``.

    Args:
        encoding: the codec that decodes strings, or None for ``bytes``.
        errors: the codec's error handler.
        parser: ``"auto"``, ``"hiredis"`` or ``"python"``.

    Returns:
        A :class:`HiredisReader` or a :class:`PythonReader`.

    Raises:
        ValueError: another ``parser``, or ``"hiredis"`` without hiredis.
        LookupError: an unknown ``encoding`` or ``errors`` handler.
    """
    if parser == "auto":
        return Reader(encoding=encoding, errors=errors)
    if parser == "python":
        return PythonReader(encoding=encoding, errors=errors)
    if parser == "hiredis":
        if not HIREDIS_AVAILABLE:
            raise ValueError("parser='hiredis' but the hiredis package is not installed")
        return HiredisReader(encoding=encoding, errors=errors)
    raise ValueError(f"parser must be 'auto', 'hiredis' or 'python', not {parser!r}")
