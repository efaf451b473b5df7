"""Flask-Caching, limits and Flask-Limiter on geredis, each with 200
concurrent greenlets checking their own results on one connection."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

flask = pytest.importorskip("flask")
pytest.importorskip("flask_caching")
pytest.importorskip("flask_limiter")

from flask import Flask  # noqa: E402
from flask_caching import Cache  # noqa: E402
from flask_limiter import Limiter  # noqa: E402
from flask_limiter.util import get_remote_address  # noqa: E402
from limits import parse  # noqa: E402
from limits.storage import storage_from_string  # noqa: E402
from limits.strategies import (  # noqa: E402
    FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter,
)

import geredis  # noqa: E402
import geredis.contrib.limits  # noqa: E402,F401 - registers geredis://

from ..conftest import RedisServer  # noqa: E402
from .conftest import in_flight_together  # noqa: E402


def cached_app(config: Dict[str, Any]) -> Flask:
    app = Flask("cached")
    cache = Cache(app, config={"CACHE_DEFAULT_TIMEOUT": 60, **config})

    @app.route("/user/<int:i>")
    def user(i: int) -> Any:
        key = f"page:{i}"
        page = cache.get(key)
        if page is None:
            page = f"<p>user {i}</p>"
            cache.set(key, page)
        cache.cache.inc(f"views:{i}")
        return {"page": page, "views": cache.get(f"views:{i}")}

    return app


def hit_user_pages(app: Flask, i: int) -> None:
    client = app.test_client()
    for views in (1, 2):
        reply = client.get(f"/user/{i}").get_json()
        assert reply == {"page": f"<p>user {i}</p>", "views": views}


@pytest.mark.parametrize("how", ["client object", "contrib backend", "patched URL"])
def test_flask_caching(server: RedisServer, how: str, request: pytest.FixtureRequest) -> None:
    if how == "client object":
        client = geredis.Redis(port=server.port)
        config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": client}
    elif how == "contrib backend":
        config = {"CACHE_TYPE": "geredis.contrib.flask_caching.RedisCache",
                  "CACHE_REDIS_URL": f"{server.url}/3", "CACHE_OPTIONS": {"socket_timeout": 10}}
    else:
        request.getfixturevalue("patched_redis")
        config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": f"{server.url}/4"}
    app = cached_app(config)
    backend = app.extensions["cache"][next(iter(app.extensions["cache"]))]
    assert isinstance(backend._write_client, geredis.Redis)
    seen = in_flight_together(lambda i: hit_user_pages(app, i), server.port)
    assert len(seen) == 1, seen


@pytest.fixture
def limited_app(server: RedisServer) -> Iterator[Flask]:
    app = Flask("limited")
    limiter = Limiter(get_remote_address, app=app, storage_uri=f"geredis://127.0.0.1:{server.port}/5",
                      strategy="moving-window")

    @app.route("/api/<int:i>")
    @limiter.limit("3/minute", key_func=lambda: f"user-{flask.request.view_args['i']}")  # type: ignore[index]
    def api(i: int) -> str:
        return f"ok {i}"

    yield app


def test_flask_limiter_with_the_geredis_scheme(server: RedisServer, limited_app: Flask) -> None:
    def caller(i: int) -> None:
        client = limited_app.test_client()
        codes = [client.get(f"/api/{i}").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429], (i, codes)

    seen = in_flight_together(caller, server.port)
    assert len(seen) == 1, seen


@pytest.mark.parametrize(
    "strategy", [FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter]
)
def test_limits_strategies(server: RedisServer, strategy: Any) -> None:
    storage = storage_from_string(f"geredis://127.0.0.1:{server.port}/6")
    assert type(storage).__name__ == "GeredisStorage"
    limiter = strategy(storage)
    rate = parse("5/minute")

    def caller(i: int) -> None:
        allowed = [limiter.hit(rate, "user", str(i)) for _ in range(7)]
        assert allowed == [True] * 5 + [False] * 2, (i, allowed)
        assert limiter.get_window_stats(rate, "user", str(i)).remaining == 0

    seen = in_flight_together(caller, server.port)
    assert len(seen) == 1, seen
    storage.reset()
