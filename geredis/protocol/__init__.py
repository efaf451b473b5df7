"""RESP, the Redis wire protocol, without I/O: bytes in, replies out.

How this works
--------------
Nothing here touches a socket or gevent; the connection does the I/O.

* Sending: :class:`Packer` turns a command's arguments into one RESP array
  of bulk strings (``Packer().pack(("GET", "k"))``), with hiredis's packer
  when it can.
* Receiving: a reader is fed whatever ``recv_into`` produced
  (``reader.feed(buf, 0, n)``, copied, so ``buf`` can be reused at once) and
  drained with ``reader.gets()`` until it returns :data:`NEED_DATA`. Error
  replies are returned as exception objects, not raised; malformed input
  raises ``geredis.exceptions.ProtocolError`` and kills the reader.
  ``gets(decode=False)`` returns bytes for that one reply even when the reader
  has an encoding.
* Two readers share that interface: :class:`HiredisReader` (C, used when
  hiredis is installed) and :class:`PythonReader` (pure Python, the
  fallback). :data:`Reader` is the default one, :func:`make_reader` picks by
  name. Their few differences (attributes, blob errors, map keys, nesting
  depth) are listed in their docstrings.
* RESP3 push messages are :class:`Push` or ``hiredis.PushNotification``: test
  with ``type(reply) in PUSH_TYPES``.
"""

from .hiredis_reader import (
    HIREDIS_AVAILABLE,
    PUSH_TYPES,
    HiredisReader,
    Reader,
    make_reader,
)
from .pack import Packer
from .resp import PythonReader
from .values import NEED_DATA, Push

__all__ = [
    "HIREDIS_AVAILABLE",
    "NEED_DATA",
    "PUSH_TYPES",
    "HiredisReader",
    "Packer",
    "Push",
    "PythonReader",
    "Reader",
    "make_reader",
]
