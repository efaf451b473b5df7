"""Integrations with the libraries gevent apps use, each in its own module so
that importing one never imports the others' frameworks:

* ``geredis.contrib.django``: a Django cache backend,
  ``"BACKEND": "geredis.contrib.django.RedisCache"``;
* ``geredis.contrib.limits``: the ``geredis://`` storage scheme for limits and
  Flask-Limiter (import the module once to register it);
* ``geredis.contrib.huey``: ``RedisHuey`` and friends on geredis clients;
* ``geredis.contrib.flask_caching``: ``CACHE_TYPE =
  "geredis.contrib.flask_caching.RedisCache"`` for Flask-Caching.

django-redis (``REDIS_CLIENT_CLASS = "geredis.Redis"``), RQ (pass a geredis
client as ``connection``; ``rq worker --connection-class geredis.Redis``) and
libraries that build ``redis.Redis`` themselves (``geredis.patch_redis()``)
need no module here; ``docs/integrations.md`` shows each.
"""
