"""The pure-Python RESP2/RESP3 reply parser: :class:`PythonReader`.

How this works
--------------
``feed()`` takes bytes off the socket, ``gets()`` hands back one complete
reply or the :data:`NEED_DATA` sentinel. No I/O happens here.

Invariants:

* ``_buf`` is an immutable ``bytes`` object and ``_pos`` is the offset of the
  first byte of the next *element* not yet consumed. An element (a scalar, or
  the header line of an aggregate) is consumed whole or not at all, so an
  incomplete one is simply parsed again from ``_pos`` once more data came.
* Aggregates being filled sit on ``_stack`` as frames
  ``(items, target, type_byte, freeze)``: the elements read so far, how many
  complete it (two per map entry), and whether it is (inside) a map key, in
  which case it is built as a hashable tuple. Nesting depth is bounded only by
  memory: the loop never recurses.
* Buffering: ``feed()`` copies the caller's bytes (it reuses its buffer).
  When everything fed was consumed, the new chunk simply replaces ``_buf``, so
  consumed bytes are dropped at every feed. When an element is incomplete,
  ``gets()`` records in ``_need`` how many more bytes it needs (0: "a line
  end"); later chunks wait in ``_tail`` until that need is met and are then
  joined once. A 64 MiB bulk string fed in 64 KiB chunks is therefore joined
  once, never rescanned.
* ``gets()`` first tries a fast path for a complete top-level ``$``, ``+`` or
  ``:`` reply with a small length; everything else (aggregates, rarer types,
  incomplete or malformed input) goes through the general loop ``_parse``.
  ``_slow`` is set while the fast path cannot apply: chunks are waiting in
  ``_tail``, an aggregate is half filled, or the reader is dead.
* Malformed input raises ``ProtocolError``; the reader is dead from then on.
  A ``UnicodeDecodeError`` is raised only after the whole reply it belongs to
  was consumed, so the next ``gets()`` returns the next reply (as hiredis).

Deliberate differences from hiredis 3.5 (``HiredisReader``):

* attributes (``|``) are parsed and dropped; hiredis returns one as a reply
  of its own (or as an extra element when nested);
* blob errors (``!``) are supported; hiredis rejects the type byte;
* an unhashable map key (an aggregate) becomes a tuple; hiredis fails;
* the CRLF after a bulk string is checked; hiredis skips two bytes unread;
* no nesting limit; hiredis raises beyond 1024 levels.
"""

from __future__ import annotations

import codecs
from typing import Any, List, Optional, Tuple, Union

from ..exceptions import ProtocolError
from .values import (
    KNOWN_TYPES,
    LINE_PARSERS,
    NEED_DATA,
    SMALL_INTS,
    Push,
    check_bignum,
    error_value,
    parse_count,
    parse_integer,
    parse_length,
    verbatim_text,
)

__all__ = ["NEED_DATA", "Push", "PythonReader"]


_DROPPED: Any = object()  # what a finished attribute yields: nothing


def _finish(kind: int, items: List[Any], freeze: bool) -> Any:
    """Build the value of a complete aggregate from its elements."""
    if kind == 42 or kind == 126:  # "*" array, "~" set (a list, as hiredis)
        return tuple(items) if freeze else items
    if kind == 37:  # "%" map
        pairs = iter(items)
        return tuple(zip(pairs, pairs)) if freeze else dict(zip(pairs, pairs))
    if kind == 62:  # ">" push
        return tuple(items) if freeze else Push(items)
    return _DROPPED  # "|" attribute


def _copy_bytes(data: Any, offset: int, length: int) -> bytes:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    size = len(view)
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} outside a buffer of {size} bytes")
    if length == -1:
        length = size - offset
    elif length < 0 or offset + length > size:
        raise ValueError(f"length {length} at offset {offset} outside a buffer of {size} bytes")
    return bytes(view[offset:offset + length])


_Frame = Tuple[List[Any], int, int, bool]


class PythonReader:
    """Pure-Python RESP2/RESP3 reader with the interface of ``hiredis.Reader``.

    ``feed(data, offset=0, length=-1)`` copies bytes in; ``gets(decode=True)``
    returns one reply or :data:`NEED_DATA`. Error replies are *returned*, built
    by ``reply_error``. With ``encoding`` set and ``decode`` true, bulk, simple
    and verbatim strings and big numbers come back as ``str``.

    Differences from hiredis 3.5: attributes (``|``) are dropped (hiredis
    returns each as a separate reply before the real one); an aggregate used
    as a map key becomes a tuple (hiredis raises ``TypeError``); blob errors
    (``!``) are supported; the CRLF after a bulk string is checked; nesting
    depth is unlimited (hiredis stops at 1024).

    Args:
        encoding: the codec that decodes strings, or None for ``bytes``.
        errors: the codec's error handler.

    Raises:
        LookupError: an unknown ``encoding`` or ``errors`` handler.
    """

    __slots__ = ("_encoding", "_errors", "_buf", "_pos", "_stack", "_tail",
                 "_tail_len", "_need", "_hold", "_slow", "_error", "_decode_error")

    def __init__(self, *, encoding: Optional[str] = None, errors: str = "strict") -> None:
        codecs.lookup_error(errors)  # LookupError now rather than mid-stream
        if encoding is not None:
            codecs.lookup(encoding)
        self._encoding = encoding
        self._errors = errors
        self._buf = b""
        self._pos = 0
        self._stack: List[_Frame] = []
        self._tail: List[bytes] = []  # chunks waiting for _need to be met
        self._tail_len = 0
        self._need = 1  # bytes beyond _buf the element at _pos needs; 0: a CRLF
        self._hold = False  # gets() cannot progress: tail waiting, or dead
        self._slow = False  # _hold, or an aggregate is being filled
        self._error: Optional[str] = None
        self._decode_error: Optional[UnicodeDecodeError] = None

    def feed(self, data: Union[bytes, bytearray, memoryview], offset: int = 0,
             length: int = -1) -> None:
        """Append ``data[offset:offset+length]`` (a copy) to the input.

        Args:
            data: the bytes received (``bytes``, ``bytearray`` or a
                ``memoryview``), reusable by the caller as soon as this
                returns.
            offset: where in ``data`` the new bytes start.
            length: how many bytes (-1: up to the end of ``data``).
        """
        if offset or length != -1 or type(data) is not bytes:
            data = _copy_bytes(data, offset, length)
        if self._pos == len(self._buf):  # all consumed: drop it
            self._buf = data
            self._pos = 0
            return
        if self._error is not None:
            return
        tail = self._tail
        tail.append(data)
        self._tail_len += len(data)
        need = self._need
        if (self._tail_len >= need) if need else (10 in data):
            tail.insert(0, self._buf[self._pos:])
            self._buf = b"".join(tail)
            self._pos = 0
            tail.clear()
            self._tail_len = 0
            self._need = 1
            self._hold = False
            self._slow = bool(self._stack)
        else:
            self._hold = self._slow = True

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
        if not self._slow:  # fast path: a whole top-level "$", "+" or ":" reply
            buf = self._buf
            pos = self._pos
            end = buf.find(b"\r\n", pos)
            if end > pos:
                kind = buf[pos]
                if kind == 36:  # "$"
                    n = SMALL_INTS.get(buf[pos + 1:end])
                    if n is not None:
                        if n < 0:
                            self._pos = end + 2
                            return None
                        pos = end + 2
                        end = pos + n
                        if buf[end:end + 2] == b"\r\n":
                            self._pos = end + 2
                            if decode and self._encoding:
                                return buf[pos:end].decode(self._encoding, self._errors)
                            return buf[pos:end]
                elif kind == 43:  # "+"
                    value = buf[pos + 1:end]
                    if 13 not in value and 10 not in value:
                        self._pos = end + 2
                        if decode and self._encoding:
                            return value.decode(self._encoding, self._errors)
                        return value
                elif kind == 58:  # ":"
                    n = SMALL_INTS.get(buf[pos + 1:end])
                    if n is not None:
                        self._pos = end + 2
                        return n
        elif self._hold:
            if self._error is not None:
                raise ProtocolError(self._error)
            return NEED_DATA
        try:
            return self._parse(self._encoding if decode else None)
        except ProtocolError as exc:
            self._die(str(exc))
            raise

    #: :meth:`gets` itself: this reader raises only what :meth:`gets` says.
    gets_unchecked = gets

    def garbage(self, exc: Exception) -> Exception:
        """The error to raise for ``exc``, raised by :attr:`gets_unchecked`
        (the interface of :meth:`HiredisReader.garbage
        <geredis.protocol.HiredisReader.garbage>`): ``exc`` itself, a
        ``ProtocolError`` or, for anything else, a bug to report as it is.

        Args:
            exc: what :meth:`gets` raised (not a ``UnicodeDecodeError``).

        Returns:
            ``exc``.
        """
        return exc

    def _die(self, message: str) -> None:
        self._error = message
        self._hold = self._slow = True
        self._buf = b""
        self._pos = 0
        self._stack.clear()
        self._tail.clear()
        self._decode_error = None

    def _decode(self, raw: bytes, encoding: str) -> Any:
        try:
            return raw.decode(encoding, self._errors)
        except UnicodeDecodeError as exc:  # raised once the reply is consumed
            if self._decode_error is None:
                self._decode_error = exc
            return raw

    def _parse(self, encoding: Optional[str]) -> Any:
        """The general loop: any type, any nesting, resumable."""
        buf = self._buf
        size = len(buf)
        pos = self._pos
        stack = self._stack
        value: Any
        # The innermost frame's items and target, kept in step with stack[-1].
        items: Optional[List[Any]] = stack[-1][0] if stack else None
        target = stack[-1][1] if stack else 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if pos < size and buf[pos] not in KNOWN_TYPES:
                    raise ProtocolError(f"Protocol error, got {chr(buf[pos])!r} as reply type byte")
                self._pos = pos
                self._need = 0
                self._slow = bool(stack)
                return NEED_DATA
            kind = buf[pos]
            if kind == 36 or kind == 61 or kind == 33:  # "$" "=" "!": length, payload, CRLF
                n = SMALL_INTS.get(buf[pos + 1:end])
                if n is None:
                    n = parse_length(buf[pos + 1:end])
                if n >= 0:
                    stop = end + 2 + n
                    if stop + 2 > size:
                        self._pos = pos
                        self._need = stop + 2 - size
                        self._slow = bool(stack)
                        return NEED_DATA
                    if buf[stop:stop + 2] != b"\r\n":
                        raise ProtocolError("Bulk string not terminated by CRLF")
                    value = buf[end + 2:stop]
                    pos = stop + 2
                    if kind == 36:
                        if encoding:
                            value = self._decode(value, encoding)
                    elif kind == 61:
                        value = verbatim_text(value)
                        if encoding:
                            value = self._decode(value, encoding)
                    else:
                        value = error_value(value)
                else:
                    value = None
                    pos = end + 2
            elif kind == 58:  # ":"
                value = SMALL_INTS.get(buf[pos + 1:end])
                if value is None:
                    value = parse_integer(buf[pos + 1:end])
                pos = end + 2
            elif kind == 43:  # "+"
                value = buf[pos + 1:end]
                if 13 in value or 10 in value:
                    raise ProtocolError("Bad simple string value: CR or LF inside")
                if encoding:
                    value = self._decode(value, encoding)
                pos = end + 2
            elif kind == 42 or kind == 37 or kind == 126 or kind == 62 or kind == 124:
                n = SMALL_INTS.get(buf[pos + 1:end])
                if n is None:
                    n = parse_count(buf[pos + 1:end])
                pos = end + 2
                if items is not None:
                    parent = stack[-1]
                    freeze = parent[3] or (parent[2] == 37 and not len(items) & 1)
                else:
                    freeze = False
                if n > 0:
                    items = []
                    target = n * 2 if kind == 37 or kind == 124 else n
                    stack.append((items, target, kind, freeze))
                    continue
                if kind == 124:  # empty or null attribute: nothing
                    continue
                value = None if n < 0 else _finish(kind, [], freeze)
            elif kind == 40:  # "(" big number, kept as text like hiredis
                value = check_bignum(buf[pos + 1:end])
                if encoding:
                    value = self._decode(value, encoding)
                pos = end + 2
            else:
                parse_line = LINE_PARSERS.get(kind)
                if parse_line is None:
                    raise ProtocolError(f"Protocol error, got {chr(kind)!r} as reply type byte")
                value = parse_line(buf[pos + 1:end])
                pos = end + 2
            # Deliver the value to the aggregates it completes, innermost first.
            while items is not None:
                items.append(value)
                if len(items) < target:
                    break
                _, _, kind, freeze = stack.pop()
                value = _finish(kind, items, freeze)
                if stack:
                    items, target = stack[-1][:2]
                else:
                    items = None
                if value is _DROPPED:
                    break
            else:
                self._pos = pos
                self._slow = False
                if pos == size and size > 65536:
                    self._buf = b""  # do not keep a big consumed buffer alive
                    self._pos = 0
                if self._decode_error is not None:
                    exc, self._decode_error = self._decode_error, None
                    raise exc
                return value
