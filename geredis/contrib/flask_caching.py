"""Flask-Caching on geredis without patching redis-py.

    app.config.update(
        CACHE_TYPE="geredis.contrib.flask_caching.RedisCache",
        CACHE_REDIS_URL="redis://127.0.0.1:6379/0",      # or CACHE_REDIS_HOST/PORT/DB/PASSWORD
        CACHE_OPTIONS={"socket_timeout": 2},             # geredis.Redis arguments
    )

How this works: Flask-Caching builds a backend through its class's
``factory(app, config, args, kwargs)``. :class:`RedisCache` is Flask-Caching's
own ``RedisCache`` (cachelib's key prefixes, serialisation and timeouts)
whose factory makes a ``geredis.Redis`` from the same configuration keys and
hands it over as the client object, which Flask-Caching documents as an
alternative to a host name. ``CACHE_OPTIONS`` are ``geredis.Redis``
arguments. Every app with the same settings shares one connection.

(With ``geredis.patch_redis()`` Flask-Caching's own ``"RedisCache"`` builds
geredis clients as well; this module is for apps that do not patch.)
"""

from __future__ import annotations

from typing import Any, Dict, List

from flask_caching.backends import rediscache

from ..client import Redis

__all__ = ["RedisCache"]


class RedisCache(rediscache.RedisCache):  # type: ignore[misc]
    """Flask-Caching's Redis backend with a ``geredis.Redis`` client."""

    @classmethod
    def factory(cls, app: Any, config: Dict[str, Any], args: List[Any],
                kwargs: Dict[str, Any]) -> "RedisCache":
        """Build the backend from Flask-Caching's ``CACHE_*`` configuration.

        ``CACHE_REDIS_URL`` (with ``CACHE_REDIS_DB`` as the default
        database), or ``CACHE_REDIS_HOST``/``PORT``/``DB``/``PASSWORD``;
        ``CACHE_OPTIONS`` are ``geredis.Redis`` arguments; ``CACHE_KEY_PREFIX``
        the key prefix.

        Args:
            app: the Flask app.
            config: the app's configuration.
            args: positional arguments for the backend (Flask-Caching's
                ``CACHE_ARGS``).
            kwargs: keyword arguments for the backend (``CACHE_OPTIONS``
                among them; those are given to the client instead).

        Returns:
            The backend, its client a ``geredis.Redis``.

        Raises:
            ValueError: the URL or an option cannot be read.
            TypeError: an option ``geredis.Redis`` does not take.
        """
        options = dict(config.get("CACHE_OPTIONS") or {})
        kwargs = {k: v for k, v in kwargs.items() if k not in options}
        url = config.get("CACHE_REDIS_URL")
        if url:
            if "CACHE_REDIS_DB" in config:
                options.setdefault("db", config["CACHE_REDIS_DB"])
            client = Redis.from_url(url, **options)
        else:
            client = Redis(
                host=config.get("CACHE_REDIS_HOST", "localhost"),
                port=config.get("CACHE_REDIS_PORT", 6379),
                db=config.get("CACHE_REDIS_DB", 0),
                password=config.get("CACHE_REDIS_PASSWORD"),
                **options,
            )
        if config.get("CACHE_KEY_PREFIX"):
            kwargs["key_prefix"] = config["CACHE_KEY_PREFIX"]
        kwargs["host"] = client
        return cls(*args, **kwargs)
