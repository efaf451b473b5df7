"""Result slots: what the connection's FIFO holds, one per expected reply.

How this works: a slot is anything with ``switch(reply)`` and ``throw(exc)``,
both called **in the hub** only: by the receiver's frame handler, which runs in
the hub for plain sockets, or through a loop callback (TLS reader greenlet,
failures, timeouts).

* A blocking caller's slot is a :class:`~geredis.caller.Caller` (gevent's
  ``Waiter`` idea, plus the hand-off): the caller calls ``get()``, which
  parks its greenlet; the reply (an error reply is a value: the exception
  object) resumes it, and when it waits again it switches straight to the
  next caller the same read answered (``caller.py``). If the caller already
  left (timeout, kill), ``get``'s cleanup has cleared its greenlet and the
  late reply is stored for nobody: it is dropped, never handed to the next
  caller. A plain ``gevent.hub.Waiter`` works as a slot too (the hub resumes
  it).
* :class:`FutureSlot` is an ``AsyncResult`` for the future form
  (``execute_async``); ``switch``/``throw`` set it.
* :class:`ReaderSlot` is the hook for code that must run in the reader as a
  reply is parsed, in stream order (a client-side cache); :class:`RawSlot`,
  one of them, marks a reply to read without decoding (redis-py's
  NEVER_DECODE, e.g. DUMP with ``decode_responses=True``).
* :class:`MarkerSlot` stands for the ECHO marker the connection appends to
  each batch when ``integrity_check`` is on; the reader checks its reply.
* :class:`BatchSlot` collects the replies of a batch (a pipeline) appended
  contiguously; it appears once per expected reply in the FIFO and resolves
  its AsyncResult with the list when the last reply arrives. ``throw`` may
  reach it once per remaining reply: only the first one counts.
"""

from __future__ import annotations

from typing import Any, List

from gevent.event import AsyncResult
from redis.exceptions import ConnectionError as RedisConnectionError

from .exceptions import ConnectionClosedError

__all__ = ["BatchSlot", "FutureSlot", "MarkerSlot", "RawSlot", "ReaderSlot", "failure_for"]


class FutureSlot(AsyncResult):  # type: ignore[misc]
    """An AsyncResult the connection resolves like any slot."""

    def switch(self, reply: Any) -> None:
        """Resolve with the reply (in the hub), unless already resolved: a
        reply that comes after the caller's deadline failed the slot is
        dropped, so the slot keeps the one outcome it was given.

        Args:
            reply: the parsed reply; an error reply is a value here (the
                exception object), set as the result, not raised.
        """
        if not self.ready():
            self.set(reply)

    def throw(self, exc: BaseException) -> None:
        """Fail with ``exc`` (in the hub), unless already resolved.

        Args:
            exc: the caller's error: a ``redis.TimeoutError`` at its
                deadline, or a ``redis.ConnectionError`` when the
                connection broke.
        """
        if not self.ready():
            self.set_exception(exc)


class ReaderSlot:
    """A slot the connection's frame handler looks at before resolving it;
    forwards the outcome to ``target`` (a Caller, a FutureSlot...).

    Subclasses set ``decode = False`` to have the reply read undecoded, and
    override :meth:`parsed` to run code at the moment the reply is parsed:
    in the reader, in stream order (after every earlier frame, push frames
    included, and before any later one), before ``target`` is woken. That is
    where a client-side cache stores a value (issue 11); it must not block
    and should not raise (an exception becomes this caller's reply).
    Costs nothing for the connection's other slots.

    Args:
        target: the slot the outcome goes to, once :meth:`parsed` ran.
    """

    __slots__ = ("target",)

    decode = True

    def __init__(self, target: Any) -> None:
        self.target = target

    def parsed(self, reply: Any) -> Any:
        """Runs in the reader as the reply is parsed (see the class comment;
        with ``integrity_check``, once the batch's marker came back intact).

        Args:
            reply: the reply as parsed (an error reply is the exception
                object; a reply that could not be decoded, the
                ``UnicodeDecodeError``, except on a connection with a
                client-side cache, where that breaks the connection).

        Returns:
            What ``target`` gets: by default the reply itself. If this
            raises an ``Exception``, that exception is ``target``'s reply
            instead; the connection and the other callers are unaffected.
        """
        return reply

    def switch(self, reply: Any) -> None:
        """Hand the reply (what :meth:`parsed` returned) on to ``target``.

        Args:
            reply: the reply.
        """
        self.target.switch(reply)

    def throw(self, exc: BaseException) -> None:
        """Hand a failure on to ``target`` (:meth:`parsed` does not run).

        Args:
            exc: the caller's error (timeout, broken connection).
        """
        self.target.throw(exc)


class RawSlot(ReaderSlot):
    """Tells the reader not to decode this reply (redis-py's NEVER_DECODE)."""

    __slots__ = ()

    decode = False


class MarkerSlot:
    """The slot of an integrity marker: the reply must be ``expected``.

    The connection holds a batch's replies until the marker's reply comes
    back and :meth:`matches`; a mismatch fails the connection with a
    ``ProtocolError`` and every held caller with a ConnectionError.

    Args:
        expected: the ECHO argument sent, which the reply must equal.
    """

    __slots__ = ("expected",)

    def __init__(self, expected: bytes) -> None:
        self.expected = expected

    def matches(self, reply: Any) -> bool:
        """Whether the marker came back intact.

        Args:
            reply: the marker's reply (``str`` with ``decode_responses``).

        Returns:
            True when the reply equals ``expected``.
        """
        if isinstance(reply, str):
            reply = reply.encode()
        return bool(reply == self.expected)

    def switch(self, reply: Any) -> None:  # checked by the reader instead
        """Nothing: the frame handler checks the reply with :meth:`matches`.

        Args:
            reply: the marker's reply.
        """
        pass

    def throw(self, exc: BaseException) -> None:
        """Nothing: no caller waits on a marker.

        Args:
            exc: ignored.
        """
        pass


class BatchSlot:
    """Collects ``count`` replies, then resolves ``result`` with the list.

    The same BatchSlot is appended to the FIFO once per reply it expects,
    contiguously (``Connection.submit_batch``).

    Args:
        count: how many replies make the batch.
    """

    __slots__ = ("count", "replies", "result")

    def __init__(self, count: int) -> None:
        self.count = count
        self.replies: List[Any] = []
        self.result = AsyncResult()

    def switch(self, reply: Any) -> None:
        """Collect the next reply; resolve ``result`` with the list when it
        is the last one.

        Args:
            reply: one command's reply; an error reply is a value in the list
                (the exception object).
        """
        replies = self.replies
        replies.append(reply)
        if len(replies) == self.count and not self.result.ready():
            self.result.set(replies)  # not after a failure (a timeout): that stands

    def throw(self, exc: BaseException) -> None:
        """Fail ``result`` with ``exc``, unless already resolved: the first
        failure of the batch counts, those of its other replies are dropped.

        Args:
            exc: the error (a timeout, a broken connection).
        """
        if not self.result.ready():
            self.result.set_exception(exc)


def failure_for(exc: BaseException, address: str) -> BaseException:
    """A fresh ConnectionError for one pending caller of a broken connection.

    Each caller gets its own instance (tracebacks are per raise); the original
    error is kept as ``__cause__``. redis-py ConnectionErrors (an
    ``AuthenticationError`` from the handshake, a ``ProtocolError``) keep their
    class so that ``except redis.AuthenticationError`` works.

    Args:
        exc: what broke the connection.
        address: the server, for the message.

    Returns:
        A new exception to raise in one caller: a copy of ``exc`` when it is
        a ``redis.ConnectionError`` (a
        :class:`~geredis.exceptions.ConnectionClosedError` if its class
        cannot be built from its ``args``), otherwise a
        :class:`~geredis.exceptions.ConnectionClosedError` saying the
        connection to ``address`` was lost.
    """
    if isinstance(exc, RedisConnectionError):
        try:
            err = type(exc)(*exc.args)
        except Exception:  # an exotic constructor: fall back to our class
            err = ConnectionClosedError(str(exc))
        err.__cause__ = exc.__cause__ or exc
        return err
    err = ConnectionClosedError(f"connection to {address} lost: {exc!r}")
    err.__cause__ = exc
    return err
