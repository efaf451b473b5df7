"""What a pub/sub handler raises that is not its own ordinary error reaches
the main greenlet, where redis-py's handler thread would have left it: a
``BaseException`` that is not an ``Exception``, and whatever a signal
handler raises while a handler runs (RQ's ``send_shutdown_command``)."""

from __future__ import annotations

import os
import signal
from typing import Any, Iterator, List

import gevent
import pytest

import geredis


class Shutdown(BaseException):
    """Not an Exception: not a handler's ordinary error."""


class StopRequested(Exception):
    """What RQ's SIGINT handler raises."""


@pytest.fixture
def usr1_raises() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise StopRequested(f"signal {signum}")

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


def _wait_in_main(r: geredis.Redis, seconds: float) -> None:
    """The main greenlet waits in a command, as a worker's loop does."""
    r.blpop(["never"], seconds)


def test_base_exception_from_a_handler_is_raised_in_main(r: geredis.Redis) -> None:
    errors: List[BaseException] = []
    got: List[Any] = []

    def handler(message: Any) -> None:
        if message["data"] == b"stop":
            raise Shutdown("stop")
        got.append(message["data"])

    with r.pubsub(on_handler_error=lambda exc, msg: errors.append(exc)) as p:
        p.subscribe(ch=handler)
        gevent.spawn_later(0.1, r.publish, "ch", "stop")
        with pytest.raises(Shutdown):
            _wait_in_main(r, 5)
        r.publish("ch", "after")  # the dispatcher goes on
        for _ in range(100):
            if got:
                break
            gevent.sleep(0.01)
        assert got == [b"after"] and errors == []


def test_a_signal_handlers_exception_is_raised_in_main(r: geredis.Redis, usr1_raises: None) -> None:
    errors: List[BaseException] = []

    def handler(message: Any) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # as RQ's shutdown command does

    with r.pubsub(on_handler_error=lambda exc, msg: errors.append(exc)) as p:
        p.subscribe(cmd=handler)
        gevent.spawn_later(0.1, r.publish, "cmd", "shutdown")
        with pytest.raises(StopRequested, match="signal"):
            _wait_in_main(r, 5)
        assert errors == []


def test_an_ordinary_error_still_goes_to_on_handler_error(r: geredis.Redis) -> None:
    errors: List[BaseException] = []

    def handler(message: Any) -> None:
        raise StopRequested("not from a signal")

    with r.pubsub(on_handler_error=lambda exc, msg: errors.append(exc)) as p:
        p.subscribe(ch=handler)
        r.publish("ch", "x")
        _wait_in_main(r, 0.3)
        assert [str(e) for e in errors] == ["not from a signal"]


def test_run_in_thread_sends_a_signal_handlers_exception_to_main(
    r: geredis.Redis, usr1_raises: None,
) -> None:
    handled: List[BaseException] = []
    p = r.pubsub()
    p.subscribe(cmd=lambda message: os.kill(os.getpid(), signal.SIGUSR1))
    worker = p.run_in_thread(sleep_time=0.1,
                             exception_handler=lambda exc, ps, w: handled.append(exc))
    try:
        gevent.spawn_later(0.1, r.publish, "cmd", "shutdown")
        with pytest.raises(StopRequested):
            _wait_in_main(r, 5)
        assert handled == []
    finally:
        worker.stop()
        worker.join(2)
