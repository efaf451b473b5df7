"""Guards around connections: fork safety, thread affinity, health checks.

How this works:

* Fork. gevent keeps every greenlet of the parent scheduled in a forked child,
  so a child would run the parent's reader on the parent's socket and steal
  its replies. Every :class:`~geredis.connection.Connection` is tracked in a
  weak set; an ``os.register_at_fork`` hook fails each of them in the child
  (``close()`` of the child's copy of the descriptor, never ``shutdown()``,
  which would cut the parent's connection too). The child's next command
  opens its own connection; the parent notices nothing. When ``os`` is not
  monkey-patched, the hook also re-initialises gevent's hub, without which
  the child's DNS resolver can hang.
* Threads. A connection belongs to the hub (event loop) of the OS thread
  that made it. :func:`check_thread` compares the caller's real thread id
  (``gevent.monkey.get_original``, since patching replaces ``get_ident``)
  with the owner's, and raises :class:`ThreadAffinityError` before anything
  is queued.
* Health. :func:`health_check` runs in a connection's own greenlet when
  ``health_check_interval`` is set: after that long without a byte from the
  server it sends a PING; no answer within another interval means the peer
  is dead, and the connection is aborted (pending commands fail with a
  ConnectionError; the next command opens a new connection).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import gevent
from gevent._hub_local import get_hub_if_exists
from gevent.monkey import get_original, is_module_patched
from redis.exceptions import RedisError

from .exceptions import ConnectionClosedError

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["ThreadAffinityError", "check_thread", "health_check", "real_thread_id", "track"]

#: The real OS thread's id (``_thread.get_ident``, not the greenlet id that
#: monkey-patching makes of it).
real_thread_id = get_original("_thread", "get_ident")

_live: "weakref.WeakSet[Connection]" = weakref.WeakSet()


class ThreadAffinityError(RedisError):
    """A geredis client was used from an OS thread other than the one that
    created it.

    Raised before anything is queued; the connection survives. A client is
    driven by the gevent hub (event loop) of the thread that made it, so
    create one client per thread (greenlets of one thread share a client).
    With ``monkey.patch_all()``, ``threading`` threads are greenlets of one
    thread and never raise this.
    """


def check_thread(owner: int) -> None:
    """Raise ThreadAffinityError unless the caller runs in thread ``owner``.

    Args:
        owner: the real (unpatched) thread id of the thread that created the
            client, from :data:`real_thread_id`.

    Raises:
        geredis.ThreadAffinityError: the caller runs in another OS thread. Nothing
            was queued; the connection survives.
    """
    if real_thread_id() != owner:
        raise ThreadAffinityError(
            "this geredis client belongs to another OS thread (its event loop);"
            " create a client per thread"
        )


def track(conn: "Connection") -> None:
    """Remember a live connection so that a fork can disown it in the child.

    Held in a weak set: tracking never keeps a connection alive.

    Args:
        conn: a connection just created (shared, dedicated or pinned).
    """
    _live.add(conn)


def _after_fork_in_child() -> None:
    if not _live:
        return
    if get_hub_if_exists() is not None and not is_module_patched("os"):
        from gevent.hub import reinit

        reinit()
    for conn in list(_live):
        conn.abort(ConnectionClosedError("the process forked: the child opens its own connection"))


os.register_at_fork(after_in_child=_after_fork_in_child)


def health_check(conn: "Connection") -> None:
    """PING a connection that has been silent for ``health_check_interval``;
    abort it when the PING goes unanswered for another interval.

    Runs in a greenlet of the connection's own until the connection leaves
    OPEN. Any reply, an error reply included, proves the peer alive.

    Args:
        conn: the connection to watch; its settings give the interval.
    """
    from .connection import State
    from .slots import FutureSlot

    interval = conn.settings.health_check_interval
    ping = conn._packer.pack(("PING",))
    loop: Any = conn._loop
    while conn.state is State.OPEN:
        gevent.sleep(interval)
        if conn.state is not State.OPEN or loop.now() - conn._last_read < interval:
            continue
        slot = FutureSlot()
        conn.submit(ping, slot)
        slot.wait(interval)
        # A reply (even an error reply) proves the peer alive; no reply, or
        # the PING's own socket_timeout expiring, does not.
        if not slot.successful() and conn.state is State.OPEN:
            conn.abort(
                ConnectionClosedError(
                    f"{conn.settings.address} did not answer a health check PING"
                    f" within {interval}s: the connection is replaced"
                )
            )
