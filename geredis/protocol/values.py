"""What replies are made of: the NEED_DATA sentinel, Push, and the parsers
of RESP's one-line values.

How this works: every function here takes the bytes of one line, without its
type byte and CRLF, and returns the value or raises ``ProtocolError``. They
accept what hiredis 3.5 accepts and reject what it rejects: integers are
canonical int64 decimals (no ``+``, blank, leading zero or ``-0``), doubles
are decimal or ``inf``/``-inf``/``nan`` in any case and must not overflow,
simple strings and errors hold no CR or LF. ``SMALL_INTS`` maps the canonical
spellings of -1..1023 to their value: one dict look-up both parses and
validates the usual lengths and integers.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional

from ..exceptions import ProtocolError, reply_error

__all__ = ["NEED_DATA", "Push"]


class _NeedData:
    """Type of :data:`NEED_DATA`; a singleton."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


#: Returned by ``gets()`` while no complete reply is buffered. Not ``None`` nor
#: ``False``: both are valid RESP3 replies (``_`` and ``#f``).
NEED_DATA: Any = _NeedData()


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push message (``>``): a list that says it was pushed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


#: The largest aggregate size accepted (as hiredis).
MAX_ELEMENTS = (1 << 32) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: Canonical spellings of small integers (-1 to 1023): one dict look-up
#: parses and validates the common lengths and integer replies.
SMALL_INTS: Dict[bytes, int] = {b"%d" % i: i for i in range(-1, 1024)}

_DOUBLE_RE = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BIGNUM_RE = re.compile(rb"-?[0-9]*")
_SPECIAL_DOUBLES = {b"inf": float("inf"), b"-inf": float("-inf"),
                    b"nan": float("nan"), b"-nan": float("nan")}

#: The RESP2/RESP3 type bytes a reply may start with.
KNOWN_TYPES = frozenset(b"$=!*%~>|+-:,#_(")


def parse_int(raw: bytes) -> Optional[int]:
    """The value of a canonical decimal int64 (no ``+``, blank or leading 0).

    Args:
        raw: the digits, with an optional ``-``.

    Returns:
        The int, or None when ``raw`` is not canonical or out of range.
    """
    value = SMALL_INTS.get(raw)
    if value is not None:
        return value
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits.isdigit() or digits[0] == 48 or len(digits) > 19:
        return None
    value = int(raw)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def parse_length(raw: bytes) -> int:
    """A bulk string length: -1 (null) or more.

    Args:
        raw: the length line, without its type byte and CRLF.

    Returns:
        The length.

    Raises:
        geredis.ProtocolError: not a canonical integer, or below -1.
    """
    n = parse_int(raw)
    if n is None:
        raise ProtocolError(f"Bad bulk string length {raw[:40]!r}")
    if n < -1:
        raise ProtocolError(f"Bulk string length out of range: {n}")
    return n


def parse_count(raw: bytes) -> int:
    """An aggregate's element count: -1 (null) or more.

    Args:
        raw: the count line, without its type byte and CRLF.

    Returns:
        The count.

    Raises:
        geredis.ProtocolError: not a canonical integer, below -1, or above
            :data:`MAX_ELEMENTS`.
    """
    n = parse_int(raw)
    if n is None:
        raise ProtocolError(f"Bad aggregate length {raw[:40]!r}")
    if n < -1 or n > MAX_ELEMENTS:
        raise ProtocolError(f"Aggregate length out of range: {n}")
    return n


def parse_integer(raw: bytes) -> int:
    """An integer reply (``:``).

    Args:
        raw: the line, without its type byte and CRLF.

    Returns:
        The int64 value.

    Raises:
        geredis.ProtocolError: not a canonical int64.
    """
    n = parse_int(raw)
    if n is None:
        raise ProtocolError(f"Bad integer value {raw[:40]!r}")
    return n


def verbatim_text(raw: bytes) -> bytes:
    """The text of a verbatim string: "txt:" or another 3-letter format first.

    Args:
        raw: the verbatim string's payload.

    Returns:
        The text after the format prefix.

    Raises:
        geredis.ProtocolError: no 4-byte format prefix.
    """
    if len(raw) < 4 or raw[3] != 58:
        raise ProtocolError("Verbatim string without its 4-byte format prefix")
    return raw[4:]


def parse_double(raw: bytes) -> float:
    """A double reply (``,``): a decimal, ``inf``, ``-inf`` or ``nan``.

    Args:
        raw: the line, without its type byte and CRLF.

    Returns:
        The float.

    Raises:
        geredis.ProtocolError: not a double, or out of a double's range.
    """
    special = _SPECIAL_DOUBLES.get(raw.lower())
    if special is not None:
        return special
    if len(raw) > 325:
        raise ProtocolError("Double value is too large")
    if _DOUBLE_RE.fullmatch(raw) is None:
        raise ProtocolError(f"Bad double value {raw[:40]!r}")
    value = float(raw)
    # Out of range: overflow to inf, or underflow of a non-zero number to 0.
    if value in (float("inf"), float("-inf")) or (
            value == 0.0 and re.split(rb"[eE]", raw)[0].strip(b"-.0")):
        raise ProtocolError(f"Double value out of range {raw[:40]!r}")
    return value


def parse_bool(raw: bytes) -> bool:
    """A boolean reply (``#``): ``t`` or ``f``.

    Args:
        raw: the line, without its type byte and CRLF.

    Returns:
        The bool.

    Raises:
        geredis.ProtocolError: anything else.
    """
    if raw in (b"t", b"T"):
        return True
    if raw in (b"f", b"F"):
        return False
    raise ProtocolError(f"Bad bool value {raw[:40]!r}")


def parse_null(raw: bytes) -> None:
    """A null reply (``_``): an empty line.

    Args:
        raw: the line, without its type byte and CRLF.

    Raises:
        geredis.ProtocolError: the line is not empty.
    """
    if raw:
        raise ProtocolError(f"Bad null value {raw[:40]!r}")


def error_value(raw: bytes) -> Exception:
    """The exception value for a blob error's payload (``!``).

    Args:
        raw: the error text (``ERR ...``, ``WRONGTYPE ...``).

    Returns:
        The redis-py exception it stands for (returned, not raised).
    """
    return reply_error(raw.decode("utf-8", "replace"))


def parse_error_line(raw: bytes) -> Exception:
    """The exception value for a simple error reply (``-``).

    Args:
        raw: the line, without its type byte and CRLF.

    Returns:
        The redis-py exception it stands for (returned, not raised).

    Raises:
        geredis.ProtocolError: a CR or LF inside the line.
    """
    if 13 in raw or 10 in raw:
        raise ProtocolError("Bad error value: CR or LF inside")
    return reply_error(raw.decode("utf-8", "replace"))


def check_bignum(raw: bytes) -> bytes:
    """A big number stays text (as hiredis): an optional "-", then digits.

    Args:
        raw: the line, without its type byte and CRLF.

    Returns:
        ``raw`` itself.

    Raises:
        geredis.ProtocolError: anything else.
    """
    if _BIGNUM_RE.fullmatch(raw) is None:
        raise ProtocolError(f"Bad big number {raw[:40]!r}")
    return raw


#: Line types outside the hot path: type byte -> parser of the raw line.
LINE_PARSERS: Dict[int, Callable[[bytes], Any]] = {
    ord("-"): parse_error_line,
    ord(","): parse_double,
    ord("#"): parse_bool,
    ord("_"): parse_null,
}
