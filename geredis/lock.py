"""``r.lock(...)``: redis-py's Lua-based Lock, made gevent-friendly.

How this works: :class:`Lock` subclasses ``redis.lock.Lock`` and keeps all
of it (the SET NX PX acquire, the Lua release/extend/reacquire scripts, the
errors) except two things that assume threads:

* a blocking ``acquire`` retries every ``sleep`` seconds with
  ``gevent.sleep``, so while one greenlet waits for the lock every other
  greenlet (including the one holding it) keeps running, whether or not the
  program is monkey-patched (redis-py's ``time.sleep`` would block the hub,
  and with it the holder that should release the lock);
* with ``thread_local=True`` (the default) the token lives in
  ``gevent.local.local``: greenlet-local, as thread-local is for threads, so
  one Lock object shared by greenlets never lets a greenlet release a lock
  another one holds. (Unpatched, ``threading.local`` would be shared by every
  greenlet of the thread.)
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional, Union

import gevent
import gevent.local
import redis.lock

__all__ = ["Lock"]

#: A number of seconds.
Number = Union[int, float]


class _GreenletToken(gevent.local.local):  # type: ignore[misc]
    """The lock's token, one per greenlet; None where nothing was acquired."""

    token: Optional[bytes] = None


class Lock(redis.lock.Lock):  # type: ignore[misc]
    """redis-py's ``Lock`` with a cooperative blocking ``acquire`` and
    greenlet-local tokens. Same constructor as ``redis.lock.Lock``; usually
    made by ``r.lock(name, ...)``.

    ``release()``, ``extend()``, ``reacquire()``, ``locked()``, ``owned()``
    and the context manager are redis-py's, and raise redis-py's
    ``LockError``/``LockNotOwnedError``.

    Args:
        redis_client: the client the lock's commands run on.
        name: the lock's key.
        *args: the arguments below, in ``redis.lock.Lock``'s order.
        **kwargs: the arguments below, by name.

    Keyword Args:
        timeout (float | None): seconds after which the lock expires by
            itself (None: never).
        sleep (float): seconds between tries while a blocking ``acquire``
            waits.
        blocking (bool): whether ``acquire`` waits by default.
        blocking_timeout (float | None): the longest a blocking ``acquire``
            waits by default (None: no bound).
        thread_local (bool): keep the token per greenlet (True, the default)
            rather than per Lock object.
        raise_on_release_error (bool): whether ``release()`` of a lock no
            longer held raises ``LockNotOwnedError``.
    """

    def __init__(self, redis_client: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(redis_client, name, *args, **kwargs)
        if self.thread_local:
            self.local = _GreenletToken()

    def acquire(
        self,
        sleep: Optional[Number] = None,
        blocking: Optional[bool] = None,
        blocking_timeout: Optional[Number] = None,
        token: Optional[Union[str, bytes]] = None,
    ) -> bool:
        """Take the lock.

        Between tries the greenlet sleeps cooperatively (``gevent.sleep``),
        so every other greenlet, the holder included, keeps running.

        Args:
            sleep: seconds between tries (default: the lock's ``sleep``).
            blocking: wait for the lock (default: the lock's ``blocking``);
                False makes one try.
            blocking_timeout: the longest to wait, in seconds (default: the
                lock's; None: no bound).
            token: the value to store in the lock's key (default: a fresh
                random one); the same token is needed to release it.

        Returns:
            True once the lock is held; False if it was not free (without
            ``blocking``) or not before ``blocking_timeout``.
        """
        pause = self.sleep if sleep is None else sleep
        if blocking is None:
            blocking = self.blocking
        if blocking_timeout is None:
            blocking_timeout = self.blocking_timeout
        if token is None:
            value: bytes = uuid.uuid1().hex.encode()
        else:
            value = self.redis.get_encoder().encode(token)
        give_up_at = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        while not self.do_acquire(value):  # type: ignore[arg-type]
            if not blocking:
                return False
            if give_up_at is not None and time.monotonic() + pause > give_up_at:
                return False
            gevent.sleep(pause)
        self.local.token = value
        return True
