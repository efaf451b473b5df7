"""Command packing: Python arguments to one RESP array of bulk strings.

How this works
--------------
``Packer.pack(("SET", "k", 1.5))`` returns
``b"*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$3\\r\\n1.5\\r\\n"``.

* Accepted arguments: ``bytes``, ``bytearray``, ``memoryview`` (its bytes),
  ``str`` (encoded with the packer's encoding and errors), ``int`` and
  ``float`` (their ``repr()``, as redis-py's ``Encoder``). ``bool``, ``None``
  and anything else raise ``redis.exceptions.DataError`` and nothing is
  returned. A ``str`` the codec cannot encode raises ``UnicodeEncodeError``.
* A first argument holding a space (``"CONFIG GET"``) is split into words.
* Fast path: with the hiredis package installed and a strict UTF-8 packer,
  ``hiredis.pack_command`` packs the tuple. It raises ``TypeError`` for what it
  does not take (``bool``, ``None``, ``bytearray``, subclasses of ``int``...);
  the pure-Python path then packs it or raises ``DataError``. Both paths give
  the same bytes for every accepted argument, with one exception guarded
  here: hiredis 3.5 packs a non-contiguous ``memoryview`` wrongly (it reads
  the first ``nbytes`` bytes of its memory), so such commands go the pure way.
"""

from __future__ import annotations

import codecs
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from redis.exceptions import DataError

_hiredis_pack: Optional[Callable[[Tuple[Any, ...]], bytes]]
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is an optional speed-up
    _hiredis_pack = None
else:
    _hiredis_pack = hiredis.pack_command

__all__ = ["GET_TEMPLATE", "Packer", "SET_TEMPLATE"]


#: ``GET key`` and ``SET key value`` with the arguments' lengths and bytes
#: left to ``%``: ``Redis.get``/``set`` fill them in for ``bytes`` arguments
#: and, with a :attr:`Packer.utf8_strict` packer, ``str`` ones (``.encode()``):
#: the same bytes as :meth:`Packer.pack` without a Python call or a loop over
#: the arguments (and faster than hiredis, which formats lengths with ``sprintf``).
GET_TEMPLATE = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n"
SET_TEMPLATE = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"

_ARRAY_HEADERS = [b"*%d\r\n" % n for n in range(64)]
_BULK_HEADERS = [b"$%d\r\n" % n for n in range(1024)]


def _split_name(args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """``("CONFIG GET", x)`` -> ``("CONFIG", "GET", x)``; str or bytes."""
    first = args[0]
    if (" " if isinstance(first, str) else b" ") in first:
        return (*first.split(), *args[1:])
    return args


def _invalid(arg: Any) -> DataError:
    return DataError(
        f"Invalid input of type: '{type(arg).__name__}'."
        " Convert to a bytes, string, int or float first.")


class Packer:
    """Packs commands for one connection's encoding settings.

    ``encoding`` and ``errors`` apply to ``str`` arguments only.

    Args:
        encoding: the codec for ``str`` arguments.
        errors: the codec's error handler.

    Raises:
        LookupError: an unknown ``encoding`` or ``errors`` handler.
    """

    __slots__ = ("encoding", "errors", "utf8_strict", "_hiredis")

    def __init__(self, encoding: str = "utf-8", errors: str = "strict") -> None:
        codec = codecs.lookup(encoding)  # LookupError now, not per command
        codecs.lookup_error(errors)
        self.encoding = encoding
        self.errors = errors
        #: ``str`` arguments are encoded as ``str.encode()`` does by default
        #: (UTF-8, strict): what the ``GET``/``SET`` templates' users check.
        self.utf8_strict = codec.name == "utf-8" and errors == "strict"
        self._hiredis: Optional[Callable[[Tuple[Any, ...]], bytes]] = (
            _hiredis_pack if self.utf8_strict else None)

    def pack(self, args: Sequence[Any]) -> bytes:
        """One command (a tuple of arguments) as a RESP array.

        A first argument with a space (``"CONFIG GET"``) is split into
        words, as redis-py does.

        Args:
            args: the command name and its arguments: ``bytes``, ``str``,
                ``int``, ``float``, ``bytearray`` or ``memoryview``.

        Returns:
            The RESP array of bulk strings.

        Raises:
            redis.DataError: an empty command, or an argument of another
                type (``None``, ``bool``, a ``dict``...).
            UnicodeEncodeError: a ``str`` that does not encode with
                ``encoding`` and ``errors="strict"``.
        """
        if type(args) is not tuple:
            args = tuple(args)
        try:
            first = args[0]
        except IndexError:
            raise DataError("Cannot pack an empty command") from None
        if type(first) is str:
            if " " in first:
                args = _split_name(args)
        elif isinstance(first, (str, bytes)):
            args = _split_name(args)
        if self._hiredis is not None:
            for arg in args:
                if type(arg) is memoryview and not arg.c_contiguous:
                    break  # hiredis would pack it wrong
            else:
                try:
                    return self._hiredis(args)
                except TypeError:
                    pass  # something hiredis does not take: decide below
        return self._pack_python(args)

    def pack_commands(self, commands: Iterable[Sequence[Any]]) -> bytes:
        """Several commands, packed one after another (for a pipeline).

        Args:
            commands: the commands, each as :meth:`pack` takes it.

        Returns:
            The packed commands, concatenated.

        Raises:
            redis.DataError: as for :meth:`pack`.
        """
        return b"".join([self.pack(args) for args in commands])

    def _pack_python(self, args: Tuple[Any, ...]) -> bytes:
        encoding = self.encoding
        errors = self.errors
        count = len(args)
        out: List[bytes] = [_ARRAY_HEADERS[count] if count < 64 else b"*%d\r\n" % count]
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                data = arg
            elif kind is str:
                data = arg.encode(encoding, errors)
            elif kind is int or kind is float:
                data = repr(arg).encode()
            else:
                data = self._coerce(arg)
            size = len(data)
            out += (_BULK_HEADERS[size] if size < 1024 else b"$%d\r\n" % size, data, b"\r\n")
        return b"".join(out)

    def _coerce(self, arg: Any) -> bytes:
        """Bytes for the argument types outside the hot path, or DataError."""
        if isinstance(arg, (bytes, bytearray, memoryview)):
            return bytes(arg)
        if isinstance(arg, str):
            return arg.encode(self.encoding, self.errors)
        if isinstance(arg, bool):
            raise _invalid(arg)
        if isinstance(arg, (int, float)):
            return repr(arg).encode()
        raise _invalid(arg)
