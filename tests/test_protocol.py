"""Tests of geredis.protocol: the packer and both readers, without a server.

How this works: one table of (wire bytes, expected reply) cases is run in four
feeding modes (whole, byte by byte, followed by another reply, through
offset/length into a buffer overwritten right after ``feed``) against both
readers. Replies are compared through ``norm()``, which keeps the type (so
``True`` is not ``1``), compares exceptions by class and args, NaN by being
NaN, and treats ``Push`` and ``hiredis.PushNotification`` as the same thing.
Hypothesis then checks random nested replies in random splits, and random
garbage.
"""

from __future__ import annotations

import math
import pathlib
import re
import subprocess
import sys
import time
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import DataError, NoScriptError, ResponseError

from geredis.exceptions import ProtocolError, reply_error
from geredis.protocol import (
    HIREDIS_AVAILABLE,
    NEED_DATA,
    PUSH_TYPES,
    HiredisReader,
    Packer,
    Push,
    PythonReader,
    Reader,
    make_reader,
)
from geredis.protocol.pack import GET_TEMPLATE, SET_TEMPLATE

pytestmark = pytest.mark.timeout(60)

PARSERS = ["python", pytest.param("hiredis", marks=pytest.mark.skipif(
    not HIREDIS_AVAILABLE, reason="hiredis not installed"))]
needs_hiredis = pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed")
PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent / "geredis" / "protocol"


def norm(value: Any) -> Any:
    """A comparable, type-keeping image of a reply."""
    if isinstance(value, BaseException):
        return ("error", type(value), value.args)
    if type(value) in PUSH_TYPES:
        return ("push", [norm(v) for v in value])
    if isinstance(value, list):
        return ("list", [norm(v) for v in value])
    if isinstance(value, tuple):
        return ("tuple", [norm(v) for v in value])
    if isinstance(value, dict):
        return ("map", [(norm(k), norm(v)) for k, v in value.items()])
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, value)


def drain(reader: Any, decode: bool = True, limit: int = 10_000) -> List[Any]:
    """Every complete reply the reader holds."""
    out: List[Any] = []
    for _ in range(limit):
        reply = reader.gets(decode)
        if reply is NEED_DATA:
            return out
        out.append(reply)
    raise AssertionError("reader never returned NEED_DATA")


# (id, wire bytes, expected reply); "py:" ids are pure-reader only.
CASES = [
    ("simple", b"+OK\r\n", b"OK"),
    ("simple-empty", b"+\r\n", b""),
    ("error", b"-ERR unknown command\r\n", reply_error("ERR unknown command")),
    ("error-noscript", b"-NOSCRIPT No matching script\r\n", reply_error("NOSCRIPT No matching script")),
    ("error-empty", b"-\r\n", reply_error("")),
    # redis-py's mapping cannot build these (no slot and address): plain errors.
    ("error-ask-bare", b"-ASK\r\n", ResponseError("ASK")),
    ("error-moved-short", b"-MOVED 12\r\n", ResponseError("MOVED 12")),
    ("int-zero", b":0\r\n", 0),
    ("int-negative", b":-12\r\n", -12),
    ("int-12345", b":12345\r\n", 12345),
    ("int-max", b":9223372036854775807\r\n", 2**63 - 1),
    ("int-min", b":-9223372036854775808\r\n", -(2**63)),
    ("bulk", b"$5\r\nhello\r\n", b"hello"),
    ("bulk-empty", b"$0\r\n\r\n", b""),
    ("bulk-null", b"$-1\r\n", None),
    ("bulk-crlf-inside", b"$4\r\na\r\nb\r\n", b"a\r\nb"),
    ("bulk-binary", b"$3\r\n\x00\xff\r\r\n", b"\x00\xff\r"),
    ("bulk-2000", b"$2000\r\n" + b"x" * 2000 + b"\r\n", b"x" * 2000),
    ("array-empty", b"*0\r\n", []),
    ("array-null", b"*-1\r\n", None),
    ("array", b"*3\r\n$3\r\nfoo\r\n:1\r\n$-1\r\n", [b"foo", 1, None]),
    ("array-nested", b"*2\r\n*2\r\n:1\r\n*0\r\n*1\r\n*1\r\n+x\r\n", [[1, []], [[b"x"]]]),
    ("array-error-inside", b"*2\r\n-WRONGTYPE bad\r\n:7\r\n", [reply_error("WRONGTYPE bad"), 7]),
    ("null", b"_\r\n", None),
    ("true", b"#t\r\n", True),
    ("false", b"#f\r\n", False),
    ("double", b",1.5\r\n", 1.5),
    ("double-int", b",3\r\n", 3.0),
    ("double-exp", b",-1.25e-3\r\n", -1.25e-3),
    ("double-inf", b",inf\r\n", math.inf),
    ("double-neg-inf", b",-inf\r\n", -math.inf),
    ("double-nan", b",nan\r\n", math.nan),
    ("bignum", b"(3492890328409238509324850943850943825024385\r\n",
     b"3492890328409238509324850943850943825024385"),
    ("bignum-negative", b"(-12\r\n", b"-12"),
    ("bignum-empty", b"(\r\n", b""),
    ("verbatim", b"=15\r\ntxt:Some string\r\n", b"Some string"),
    ("verbatim-empty", b"=4\r\nmkd:\r\n", b""),
    ("verbatim-null", b"=-1\r\n", None),
    ("map", b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*1\r\n#f\r\n", {b"first": 1, b"second": [False]}),
    ("map-empty", b"%0\r\n", {}),
    ("map-null", b"%-1\r\n", None),
    ("set", b"~3\r\n+a\r\n:1\r\n_\r\n", [b"a", 1, None]),
    ("set-empty", b"~0\r\n", []),
    ("push", b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", Push([b"message", b"ch", b"hi"])),
    ("push-nested", b"*1\r\n>1\r\n:1\r\n", [Push([1])]),
    ("push-empty", b">0\r\n", Push()),
    ("py:blob-error", b"!21\r\nSYNTAX invalid syntax\r\n", reply_error("SYNTAX invalid syntax")),
    ("py:blob-error-null", b"!-1\r\n", None),
    ("py:attribute", b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:2039123\r\n", 2039123),
    ("py:attribute-nested", b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", [1, 2]),
    ("py:attribute-empty", b"|0\r\n+OK\r\n", b"OK"),
    ("py:map-aggregate-key", b"%1\r\n*2\r\n:1\r\n%1\r\n+k\r\n*1\r\n:2\r\n+v\r\n",
     {(1, ((b"k", (2,)),)): b"v"}),
]


def cases_for(parser: str) -> List[Any]:
    return [c for c in CASES if parser == "python" or not c[0].startswith("py:")]


def check_whole(parser: str, wire: bytes, expected: Any) -> None:
    reader = make_reader(parser=parser)
    assert reader.gets() is NEED_DATA
    reader.feed(wire)
    assert norm(reader.gets()) == norm(expected)
    assert reader.gets() is NEED_DATA


def check_byte_by_byte(parser: str, wire: bytes, expected: Any) -> None:
    reader = make_reader(parser=parser)
    for i in range(len(wire) - 1):
        reader.feed(wire[i:i + 1])
        assert reader.gets() is NEED_DATA, wire[:i + 1]
    reader.feed(wire[-1:])
    assert norm(reader.gets()) == norm(expected)
    assert reader.gets() is NEED_DATA


def check_followed_by_more(parser: str, wire: bytes, expected: Any) -> None:
    reader = make_reader(parser=parser)
    reader.feed(wire + b"+next\r\n$3\r\nab")
    assert norm(reader.gets()) == norm(expected)
    assert reader.gets() == b"next"
    assert reader.gets() is NEED_DATA
    reader.feed(b"c\r\n")
    assert reader.gets() == b"abc"


def check_offset_length_copies(parser: str, wire: bytes, expected: Any) -> None:
    reader = make_reader(parser=parser)
    buf = bytearray(b"garbage" + wire + b"trailing garbage")
    half = len(wire) // 2
    reader.feed(buf, 7, half)
    buf[:] = b"?" * len(buf)  # the caller reuses its buffer at once
    assert reader.gets() is NEED_DATA
    buf[:] = b"?" * 3 + wire + b"?" * 5
    reader.feed(memoryview(buf), 3 + half, len(wire) - half)
    buf[:] = b"\r\n" * (len(buf) // 2) + b"?" * (len(buf) % 2)
    assert norm(reader.gets()) == norm(expected)
    assert reader.gets() is NEED_DATA


@pytest.mark.parametrize("check", [check_whole, check_byte_by_byte, check_followed_by_more,
                                   check_offset_length_copies])
@pytest.mark.parametrize("parser", PARSERS)
def test_cases(parser: str, check: Any) -> None:
    """Every case of the table (one test, to keep the per-test overhead low)."""
    failures = []
    for name, wire, expected in cases_for(parser):
        try:
            check(parser, wire, expected)
        except Exception as exc:  # report every failing case, not the first
            failures.append(f"{name}: {exc!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("parser", PARSERS)
def test_feed_offset_without_length_and_bad_bounds(parser: str) -> None:
    reader = make_reader(parser=parser)
    reader.feed(b"xx+OK\r\n", 2)
    assert reader.gets() == b"OK"
    for args in [(10,), (-1,), (0, 99), (1, -2)]:
        with pytest.raises(ValueError):
            reader.feed(b"+OK\r\n", *args)


@needs_hiredis
def test_hiredis_divergences_are_as_documented() -> None:
    reader = make_reader(parser="hiredis")
    # An attribute is a separate reply before the real one.
    reader.feed(b"|1\r\n+ttl\r\n:3600\r\n:1\r\n")
    assert drain(reader) == [[b"ttl", 3600], 1]
    for garbage in [b"!3\r\nERR\r\n", b"%1\r\n*1\r\n:1\r\n:2\r\n", b"*1\r\n" * 1025 + b":1\r\n"]:
        reader = make_reader(parser="hiredis")
        reader.feed(garbage)
        with pytest.raises(ProtocolError):
            reader.gets()
        with pytest.raises(ProtocolError):
            reader.gets()
    reader = make_reader(parser="hiredis")
    reader.feed(b"*1\r\n" * 1024 + b":1\r\n")
    assert reader.gets() is not NEED_DATA


@needs_hiredis
def test_hiredis_wrapper_turns_other_exceptions_into_protocol_errors() -> None:
    for exc in [TypeError("unhashable type: 'list'"), MemoryError(), ValueError("x")]:
        reader = HiredisReader()

        def broken(decode: bool = True, exc: BaseException = exc) -> Any:
            raise exc

        reader.gets_unchecked = broken
        with pytest.raises(ProtocolError) as info:
            reader.gets()
        assert info.value.__cause__ is exc
        reader.feed(b"+OK\r\n")
        with pytest.raises(ProtocolError):  # and it stays dead
            reader.gets()


@needs_hiredis
def test_hiredis_gets_unchecked_and_garbage() -> None:
    # The frame handler's pair: hiredis's gets itself, and garbage() for what it raises.
    reader = HiredisReader()
    reader.feed(b"+OK\r\n%1\r\n*1\r\n:1\r\n:2\r\n")
    assert reader.gets_unchecked() == b"OK"
    with pytest.raises(TypeError) as info:
        reader.gets_unchecked()
    error = reader.garbage(info.value)
    assert isinstance(error, ProtocolError) and error.__cause__ is info.value
    for gets in (reader.gets, reader.gets_unchecked):  # dead from then on
        with pytest.raises(ProtocolError):
            gets()
    protocol_error = ProtocolError("x")
    assert HiredisReader().garbage(protocol_error) is protocol_error
    bug = ValueError("a bug")
    assert PythonReader().garbage(bug) is bug  # the Python reader's bugs stay bugs
    python = PythonReader()
    python.feed(b":1\r\n")
    assert python.gets_unchecked() == 1


def test_make_reader_without_hiredis(monkeypatch: pytest.MonkeyPatch) -> None:
    import geredis.protocol.hiredis_reader as module

    monkeypatch.setattr(module, "HIREDIS_AVAILABLE", False)
    with pytest.raises(ValueError, match="hiredis"):
        module.make_reader(parser="hiredis")
    assert type(module.make_reader(parser="python")) is PythonReader


def test_python_reader_drops_consumed_bytes() -> None:
    reader = PythonReader()
    wire = b"".join(b"$%d\r\n%b\r\n" % (i % 50, b"v" * (i % 50)) for i in range(20_000))
    count = 0
    for start in range(0, len(wire), 4093):  # chunk ends fall mid-reply
        reader.feed(wire[start:start + 4093])
        count += len(drain(reader))
        assert len(reader._buf) < 2 * 4093
    assert count == 20_000


# -- decoding ---------------------------------------------------------------

DECODE_WIRE = (b"$2\r\n\xc3\xa9\r\n+ok\r\n=7\r\ntxt:\xc3\xa9!\r\n(12\r\n*2\r\n$1\r\na\r\n:1\r\n"
               b"%1\r\n+k\r\n+v\r\n>1\r\n+m\r\n-ERR \xc3\xa9\r\n")


@pytest.mark.parametrize("parser", PARSERS)
def test_decode_utf8(parser: str) -> None:
    reader = make_reader(parser=parser, encoding="utf-8")
    reader.feed(DECODE_WIRE)
    got = drain(reader)
    assert [norm(v) for v in got] == [norm(v) for v in [
        "é", "ok", "é!", "12", ["a", 1], {"k": "v"}, Push(["m"]), reply_error("ERR é")]]


@pytest.mark.parametrize("parser", PARSERS)
def test_decode_false_gives_bytes_for_that_reply(parser: str) -> None:
    reader = make_reader(parser=parser, encoding="utf-8")
    reader.feed(DECODE_WIRE)
    got = [reader.gets(False) for _ in range(8)]
    assert [norm(v) for v in got] == [norm(v) for v in [
        b"\xc3\xa9", b"ok", b"\xc3\xa9!", b"12", [b"a", 1], {b"k": b"v"}, Push([b"m"]),
        reply_error("ERR é")]]
    reader.feed(b"+x\r\n")
    assert reader.gets() == "x"


@pytest.mark.parametrize("parser", PARSERS)
def test_decode_latin1_and_errors_always_utf8(parser: str) -> None:
    reader = make_reader(parser=parser, encoding="latin-1")
    reader.feed(b"$2\r\n\xc3\xa9\r\n-ERR \xc3\xa9\xff\r\n")
    assert reader.gets() == "Ã©"
    assert norm(reader.gets()) == norm(reply_error("ERR é\ufffd"))


@pytest.mark.parametrize("parser", PARSERS)
def test_decode_error_consumes_the_reply(parser: str) -> None:
    for wire in [b"$3\r\n\xff\xfe\xfd\r\n", b"+a\xffb\r\n", b"*2\r\n$1\r\n\xff\r\n:1\r\n",
                 b"%1\r\n$1\r\n\xff\r\n*1\r\n$1\r\n\xfe\r\n", b"=5\r\ntxt:\xff\r\n"]:
        check_decode_error_consumes_the_reply(parser, wire)


def check_decode_error_consumes_the_reply(parser: str, wire: bytes) -> None:
    reader = make_reader(parser=parser, encoding="utf-8")
    reader.feed(wire + b"+next\r\n")
    with pytest.raises(UnicodeDecodeError):
        reader.gets()
    assert reader.gets() == "next"
    assert reader.gets() is NEED_DATA
    reader = make_reader(parser=parser, encoding="utf-8")
    for i in range(len(wire) - 1):  # also when the reply arrives in pieces
        reader.feed(wire[i:i + 1])
        assert reader.gets() is NEED_DATA
    reader.feed(wire[-1:] + b"+next\r\n")
    with pytest.raises(UnicodeDecodeError):
        reader.gets()
    assert reader.gets() == "next"


@pytest.mark.parametrize("parser", PARSERS)
def test_decode_errors_replace(parser: str) -> None:
    reader = make_reader(parser=parser, encoding="utf-8", errors="replace")
    reader.feed(b"$3\r\na\xffb\r\n")
    assert reader.gets() == "a\ufffdb"


@pytest.mark.parametrize("parser", PARSERS)
def test_unknown_codec_or_handler_fails_at_construction(parser: str) -> None:
    with pytest.raises(LookupError):
        make_reader(parser=parser, encoding="no-such-codec")
    with pytest.raises(LookupError):
        make_reader(parser=parser, encoding="utf-8", errors="no-such-handler")


# -- malformed input -----------------------------------------------------------

MALFORMED = [
    b"?\r\n", b"\r\n", b"?", b"$x\r\n", b"$-2\r\n", b"$ 3\r\nabc\r\n", b"$+3\r\nabc\r\n",
    b"$03\r\nabc\r\n", b"$99999999999999999999\r\n", b"*-2\r\n", b"*x\r\n",
    b"*4294967296\r\n", b":abc\r\n", b":1x\r\n", b":\r\n", b":+3\r\n", b":-0\r\n",
    b":0012\r\n", b":9223372036854775808\r\n", b":-9223372036854775809\r\n",
    b",abc\r\n", b",\r\n", b",1e400\r\n", b",Infinity\r\n", b",+1.5\r\n", b", 1\r\n",
    b",1_0\r\n", b"," + b"9" * 400 + b"\r\n", b"#x\r\n", b"#\r\n", b"_x\r\n",
    b"(abc\r\n", b"(+1\r\n", b"=3\r\ntxt\r\n", b"=5\r\nab:cd\r\n", b"~-2\r\n",
    b"*2\r\n:1\r\n?\r\n", b"%1\r\n+k\r\n:z\r\n", b"+a\nb\r\n", b"+a\rb\r\n",
    b"+a\r\r\n", b"-a\nb\r\n", b"*1\r\n-a\rb\r\n", b"#t\n\r\n", b":1\r\r\n",
]


@pytest.mark.parametrize("parser", PARSERS)
def test_malformed_raises_protocol_error_and_stays_dead(parser: str) -> None:
    for wire in MALFORMED:
        for pieces in [[wire], [wire[i:i + 1] for i in range(len(wire))]]:
            reader = make_reader(parser=parser)
            with pytest.raises(ProtocolError):
                for piece in pieces:
                    reader.feed(piece)
                    assert reader.gets() is NEED_DATA
                raise AssertionError(f"{wire!r} parsed")
            reader.feed(b"+OK\r\n")
            with pytest.raises(ProtocolError):
                reader.gets()


@pytest.mark.parametrize("wire", [b"$3\r\nabcX\r\n", b"=4\r\ntxt:ab\r\n"])
def test_python_reader_checks_bulk_crlf(wire: bytes) -> None:
    # hiredis returns b"abc" and skips two bytes unchecked.
    reader = PythonReader()
    reader.feed(wire)
    with pytest.raises(ProtocolError):
        reader.gets()
    with pytest.raises(ProtocolError):
        reader.gets()


def test_error_reply_mapping() -> None:
    for parser in ["python"] + (["hiredis"] if HIREDIS_AVAILABLE else []):
        reader = make_reader(parser=parser)
        reader.feed(b"-NOSCRIPT No matching script\r\n-WRONGTYPE Operation against a key\r\n")
        noscript, wrongtype = reader.gets(), reader.gets()
        assert type(noscript) is NoScriptError and noscript.args == ("No matching script",)
        assert type(wrongtype) is ResponseError
        assert wrongtype.args == ("WRONGTYPE Operation against a key",)


# -- size and depth ------------------------------------------------------------

def test_python_reader_deep_nesting_without_recursion() -> None:
    depth = 100_000
    reader = PythonReader()
    reader.feed(b"*1\r\n" * depth + b"%1\r\n*1\r\n:1\r\n:2\r\n")
    reply = reader.gets()
    for _ in range(depth):
        assert type(reply) is list and len(reply) == 1
        reply = reply[0]
    assert reply == {(1,): 2}


@pytest.mark.parametrize("parser", PARSERS)
def test_big_bulk_in_64k_chunks(parser: str) -> None:
    size, chunk = 8 << 20, 64 << 10
    payload = bytes(range(256)) * (size // 256)
    wire = b"$%d\r\n%b\r\n:1\r\n" % (size, payload)
    reader = make_reader(parser=parser)
    buf = bytearray(chunk)
    started = time.perf_counter()
    replies = []
    for start in range(0, len(wire), chunk):
        piece = wire[start:start + chunk]
        buf[:len(piece)] = piece
        reader.feed(buf, 0, len(piece))
        replies += drain(reader)
    assert replies == [payload, 1]
    assert time.perf_counter() - started < 5


def test_python_reader_long_line_in_small_chunks() -> None:
    reader = PythonReader()
    line = b"+" + b"x" * (1 << 20) + b"\r\n"
    for start in range(0, len(line), 1024):
        reader.feed(line[start:start + 1024])
        if start + 1024 < len(line):
            assert reader.gets() is NEED_DATA
    assert reader.gets() == line[1:-2]


# -- the packer ------------------------------------------------------------------

def packers(encoding: str = "utf-8", errors: str = "strict") -> List[Packer]:
    """The fast-path packer and a forced pure-Python one."""
    fast, pure = Packer(encoding, errors), Packer(encoding, errors)
    pure._hiredis = None
    return [fast, pure]


def test_pack_types() -> None:
    for packer in packers():
        assert packer.pack(("SET", b"k", 1, 1.5, memoryview(b"mv"), bytearray(b"ba"), "é")) == (
            b"*7\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n1.5\r\n$2\r\nmv\r\n"
            b"$2\r\nba\r\n$2\r\n\xc3\xa9\r\n")
        assert packer.pack(["GET", "k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        assert packer.pack(("X", -0.0, 1e16, 2**70, -5)) == (
            b"*5\r\n$1\r\nX\r\n$4\r\n-0.0\r\n$5\r\n1e+16\r\n$22\r\n1180591620717411303424\r\n"
            b"$2\r\n-5\r\n")


def test_pack_splits_the_command_name() -> None:
    for packer in packers():
        assert packer.pack(("CONFIG GET", "maxmemory")) == packer.pack(("CONFIG", "GET", "maxmemory"))
        assert packer.pack((b"CLIENT  LIST",)) == packer.pack((b"CLIENT", b"LIST"))
        assert packer.pack(("ECHO", "a b")) == b"*2\r\n$4\r\nECHO\r\n$3\r\na b\r\n"


def test_pack_fast_path_only_for_strict_utf8() -> None:
    assert Packer()._hiredis is not None or not HIREDIS_AVAILABLE
    for spelling in ["utf-8", "utf8", "UTF-8", "U8"]:
        assert (Packer(spelling)._hiredis is not None) == HIREDIS_AVAILABLE
    assert Packer("latin-1")._hiredis is None
    assert Packer("utf-8", "replace")._hiredis is None
    assert Packer().utf8_strict and Packer("U8").utf8_strict
    assert not Packer("latin-1").utf8_strict and not Packer("utf-8", "replace").utf8_strict


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=30), st.text(max_size=10)),
       st.one_of(st.binary(max_size=30), st.text(max_size=10)))
def test_get_set_templates_agree_with_pack(key: Any, value: Any) -> None:
    # Redis.get/set fill these in for bytes, and str with a utf8_strict packer.
    try:
        k = key.encode() if isinstance(key, str) else key
        v = value.encode() if isinstance(value, str) else value
    except UnicodeEncodeError:  # surrogates: the packer refuses them too
        with pytest.raises(UnicodeEncodeError):
            Packer().pack(("SET", key, value))
        return
    for packer in packers():
        assert GET_TEMPLATE % (len(k), k) == packer.pack(("GET", key))
        assert SET_TEMPLATE % (len(k), k, len(v), v) == packer.pack(("SET", key, value))


def test_pack_encodings() -> None:
    assert Packer().pack(("é",)) == b"*1\r\n$2\r\n\xc3\xa9\r\n"
    assert Packer("UTF8").pack(("é",)) == b"*1\r\n$2\r\n\xc3\xa9\r\n"
    assert Packer("latin-1").pack(("é",)) == b"*1\r\n$1\r\n\xe9\r\n"
    assert Packer("ascii", "replace").pack(("é",)) == b"*1\r\n$1\r\n?\r\n"
    with pytest.raises(UnicodeEncodeError):
        Packer("ascii").pack(("é",))
    with pytest.raises(LookupError):
        Packer("no-such-codec")


def test_pack_rejects() -> None:
    for bad in [True, False, None, object(), [1], {"a": 1}, 1j]:
        for packer in packers():
            with pytest.raises(DataError, match=f"Invalid input of type: '{type(bad).__name__}'"):
                packer.pack(("SET", "k", bad))
    with pytest.raises(DataError):
        Packer().pack(())


def test_pack_fast_and_pure_paths_agree() -> None:
    import array
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Name(str, enum.Enum):
        X = "x"

    class Float(float):
        pass

    commands = [
        ("PING",), ("SET", "k", "v"), ("CONFIG GET", "*"), (b"SET", b"\x00\xff", b""),
        ("X", 0, -1, 2**63, -(2**64), 1.5, -0.0, 1e-7, 1e300, math.inf, -math.inf, math.nan),
        ("X", memoryview(b"abc"), memoryview(b"abcdef")[::2], bytearray(b"xy")),
        ("X", memoryview(array.array("i", [1, 2]))), ("X", Color.RED, Name.X, Float(2.5)),
        ("X", "é€𝄞", "x" * 100_000), ("X", b"y" * 5000),
    ]
    fast, pure = packers()
    for args in commands:
        assert fast.pack(args) == pure.pack(args), args
    assert fast.pack_commands(commands) == b"".join(pure.pack(c) for c in commands)
    assert pure.pack(("X", memoryview(b"abcdef")[::2])) == b"*2\r\n$1\r\nX\r\n$3\r\nace\r\n"


# -- isolation -------------------------------------------------------------------

def test_protocol_imports_neither_gevent_nor_socket_itself() -> None:
    # geredis/__init__.py imports the client (and so gevent): load the
    # protocol package under a bare parent package to see its own imports.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('geredis')\n"
        f"pkg.__path__ = [{str(PACKAGE_DIR.parent)!r}]\n"
        "sys.modules['geredis'] = pkg\n"
        "import geredis.protocol\n"
        "r = geredis.protocol.PythonReader(); r.feed(b'+OK\\r\\n'); assert r.gets() == b'OK'\n"
        "assert 'gevent' not in sys.modules, 'gevent imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_protocol_sources_do_no_io() -> None:
    sources = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(sources) >= 4
    for path in sources:
        text = path.read_text()
        for forbidden in ["import socket", "from socket", "import gevent", "from gevent",
                          "import select", "import asyncio"]:
            assert forbidden not in text, (path.name, forbidden)


def test_public_names() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert Push in PUSH_TYPES and isinstance(Push([1]), list) and Push([1]) == [1]
    assert Reader is (HiredisReader if HIREDIS_AVAILABLE else PythonReader)
    assert type(make_reader()) is Reader
    assert type(make_reader(parser="python")) is PythonReader
    with pytest.raises(ValueError):
        make_reader(parser="nope")
    if HIREDIS_AVAILABLE:
        assert type(make_reader(parser="hiredis")) is HiredisReader


# -- property tests ----------------------------------------------------------------

LINE_TEXT = st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)
ERROR_TEXT = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
                     max_size=20)


def _scalars() -> st.SearchStrategy[Any]:
    """(wire, expected) pairs of scalar replies."""
    return st.one_of(
        LINE_TEXT.map(lambda b: (b"+" + b + b"\r\n", b)),
        ERROR_TEXT.map(lambda t: (b"-" + t.encode() + b"\r\n", reply_error(t))),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: (b":%d\r\n" % i, i)),
        st.binary(max_size=40).map(lambda b: (b"$%d\r\n%b\r\n" % (len(b), b), b)),
        st.just((b"$-1\r\n", None)), st.just((b"*-1\r\n", None)), st.just((b"_\r\n", None)),
        st.booleans().map(lambda v: (b"#t\r\n" if v else b"#f\r\n", v)),
        st.floats(allow_nan=True).map(
            lambda f: (b",%s\r\n" % repr(f).encode(), f)),
        st.integers().map(lambda i: (b"(%d\r\n" % i, b"%d" % i)),
        st.binary(max_size=20).map(
            lambda b: (b"=%d\r\ntxt:%b\r\n" % (len(b) + 4, b), b)),
    )


def _aggregates(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def build(kind: bytes, items: List[Any]) -> Any:
        wire = kind + b"%d\r\n" % len(items) + b"".join(w for w, _ in items)
        values = [v for _, v in items]
        return wire, {b"*": values, b"~": values, b">": Push(values)}[kind]

    def build_map(pairs: List[Any]) -> Any:
        wire = b"%%%d\r\n" % len(pairs) + b"".join(kw + vw for (kw, _), (vw, _) in pairs)
        return wire, {kv: vv for (_, kv), (_, vv) in pairs}

    hashable_keys = st.one_of(
        LINE_TEXT.map(lambda b: (b"+" + b + b"\r\n", b)),
        st.integers(-100, 100).map(lambda i: (b":%d\r\n" % i, i)),
        st.binary(max_size=10).map(lambda b: (b"$%d\r\n%b\r\n" % (len(b), b), b)))
    return st.one_of(
        st.tuples(st.sampled_from([b"*", b"~", b">"]), st.lists(children, max_size=5)).map(
            lambda a: build(*a)),
        # Unique keys: hiredis 3.5 garbles the values of a map with a repeated key.
        st.lists(st.tuples(hashable_keys, children), max_size=4,
                 unique_by=lambda pair: pair[0][1]).map(build_map),
    )


REPLIES = st.recursive(_scalars(), _aggregates, max_leaves=30)


def _feed_in_pieces(reader: Any, wire: bytes, cuts: List[int]) -> List[Any]:
    replies: List[Any] = []
    last = 0
    for cut in sorted(set(c % (len(wire) + 1) for c in cuts)) + [len(wire)]:
        reader.feed(wire[last:cut])
        last = cut
        replies += drain(reader)
    return replies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(REPLIES, min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_replies_in_random_pieces(replies: List[Any], cuts: List[int]) -> None:
    wire = b"".join(w for w, _ in replies)
    expected = [norm(v) for _, v in replies]
    for parser in ["python"] + (["hiredis"] if HIREDIS_AVAILABLE else []):
        got = _feed_in_pieces(make_reader(parser=parser), wire, cuts)
        assert [norm(v) for v in got] == expected, parser


GARBAGE_TOKENS = st.sampled_from([
    b"$", b"*", b"+", b"-", b":", b",", b"#", b"_", b"(", b"=", b"!", b"%", b"~", b">", b"|",
    b"0", b"1", b"2", b"3", b"12", b"-1", b"-", b"\r\n", b"\r\n", b"\r", b"\n", b"t", b"f",
    b"inf", b"nan", b".", b"e", b"txt:", b"a", b"\xff", b"\xc3", b" ", b"?",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=60), st.lists(GARBAGE_TOKENS, max_size=40).map(b"".join)),
       st.lists(st.integers(0, 100), max_size=5), st.sampled_from([None, "utf-8"]))
def test_garbage_only_raises_protocol_errors(data: bytes, cuts: List[int],
                                             encoding: Any) -> None:
    allowed = (ProtocolError, UnicodeDecodeError) if encoding else (ProtocolError,)
    for parser in ["python"] + (["hiredis"] if HIREDIS_AVAILABLE else []):
        if parser == "hiredis" and re.search(rb"[*%~>|]-?[0-9]{8}", data):
            continue  # hiredis allocates a list that big at once: slow, not wrong
        reader = make_reader(parser=parser, encoding=encoding)
        last = 0
        dead = False
        for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
            reader.feed(data[last:cut])
            last = cut
            for _ in range(len(data) + 2):  # each reply takes 3 bytes or more
                try:
                    if reader.gets() is NEED_DATA:
                        break
                except allowed as exc:
                    if isinstance(exc, ProtocolError):
                        dead = True
                        break
            else:
                raise AssertionError(f"{parser} reader never returned NEED_DATA")
            if dead:
                with pytest.raises(ProtocolError):
                    reader.gets()
                break


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=30), st.text(max_size=10),
    st.integers(), st.floats(), st.binary(max_size=10).map(bytearray),
    st.binary(max_size=10).map(lambda b: memoryview(b))), min_size=1, max_size=6))
def test_pack_paths_agree_and_round_trip(args: List[Any]) -> None:
    fast, pure = packers()
    command = ("X", *args)
    try:
        packed = fast.pack(command)
    except UnicodeEncodeError:  # surrogates: both paths refuse
        with pytest.raises(UnicodeEncodeError):
            pure.pack(command)
        return
    assert packed == pure.pack(command)
    reader = PythonReader()
    reader.feed(packed)
    assert reader.gets() == [b"X"] + [bytes(a) if isinstance(a, (bytearray, memoryview)) else
                             a.encode() if isinstance(a, str) else
                             repr(a).encode() if isinstance(a, (int, float)) else a
                             for a in args]


def _drain_bounded(reader: Any, budget: int, allowed: Any) -> List[Any]:
    """Replies until NEED_DATA; a ProtocolError ends it; never loops forever."""
    out: List[Any] = []
    for _ in range(budget):
        try:
            reply = reader.gets()
        except allowed as exc:
            if isinstance(exc, ProtocolError):
                out.append("<protocol error>")
                return out
            continue
        if reply is NEED_DATA:
            return out
        out.append(reply)
    raise AssertionError("reader never returned NEED_DATA")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(REPLIES, min_size=1, max_size=3), st.integers(0, 10_000),
       st.sampled_from(["flip", "insert", "delete"]), st.binary(min_size=1, max_size=1))
def test_mutated_streams_only_raise_protocol_errors(
    replies: List[Any], where: int, how: str, byte: bytes
) -> None:
    # A valid stream with one byte changed, added or removed: each reader
    # returns replies, NEED_DATA or a ProtocolError, and nothing else.
    wire = bytearray(b"".join(w for w, _ in replies))
    at = where % len(wire)
    if how == "flip":
        wire[at] = byte[0]
    elif how == "insert":
        wire[at:at] = byte
    else:
        del wire[at]
    data = bytes(wire)
    for parser in ["python"] + (["hiredis"] if HIREDIS_AVAILABLE else []):
        if parser == "hiredis" and re.search(rb"[*%~>|]-?[0-9]{8}", data):
            continue  # hiredis allocates a list that big at once: slow, not wrong
        reader = make_reader(parser=parser)
        reader.feed(data)
        _drain_bounded(reader, len(data) + 2, (ProtocolError,))
