"""Fixtures for the client-side caching tests.

* ``cached``: a caching geredis client (default tracking mode) on the
  session server, once with hiredis and once with the pure-Python parser;
* ``writer``: a plain geredis client on the same server: "another client";
* :func:`make_cached` builds more (modes, limits, decode_responses);
* :func:`settle` waits (event-driven, bounded) for a condition, and
  :func:`round_trip` is the one round trip on the cached client's own
  connection after which every earlier invalidation has been applied.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, List

import gevent
import pytest

import geredis
from geredis.cache import CacheConfig
from geredis.protocol import HIREDIS_AVAILABLE

from ..conftest import RedisServer

PARSERS = ["hiredis", "python"] if HIREDIS_AVAILABLE else ["python"]


def make_cached(server: RedisServer, **kwargs: Any) -> geredis.Redis:
    """A caching client on ``server``; ``cache=`` keyword arguments of
    ``CacheConfig`` go in ``config``."""
    config = kwargs.pop("config", {})
    kwargs.setdefault("cache_config", CacheConfig(**config))
    return geredis.Redis(host="127.0.0.1", port=server.port, protocol=3, **kwargs)


def round_trip(client: geredis.Redis) -> None:
    """One round trip on the client's shared connection (PING)."""
    assert client.ping() is True


def settle(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true (polling every 10 ms), at most
    ``timeout`` seconds; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        gevent.sleep(0.01)


@pytest.fixture(params=PARSERS)
def cached(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = make_cached(redis_server, parser=request.param)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def writer(redis_server: RedisServer) -> Iterator[geredis.Redis]:
    client = geredis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    client.close()


@pytest.fixture
def clients() -> Iterator[List[geredis.Redis]]:
    """Clients a test builds itself; closed at the end."""
    made: List[geredis.Redis] = []
    yield made
    for client in made:
        client.close()
