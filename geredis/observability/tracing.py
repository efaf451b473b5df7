"""Tracing: make instrumentation that patches redis-py's classes see geredis.

How this works: ``RedisInstrumentor().instrument()`` (opentelemetry-
instrumentation-redis) and similar tools replace ``redis.Redis.execute_command``
and ``redis.client.Pipeline.execute`` / ``immediate_execute_command`` on the
*base classes*. geredis overrides those methods without calling the base
(that is where its speed comes from), so the patch alone would never run for
a geredis client. Instead:

* geredis's own ``execute_command`` starts with one identity test,
  ``redis.Redis.execute_command is PLAIN_EXECUTE_COMMAND`` (a class attribute
  read, measured within the noise of the throughput bench). While nothing
  patched redis-py it is true and the command runs as before.
* Once something patched it, :func:`traced_command` calls the patched
  ``redis.Redis.execute_command`` with the geredis client, exactly as
  ``redis.Redis`` would: the wrapper makes its span (reading ``args``,
  ``connection_pool.connection_kwargs``) and calls redis-py's original, which
  only does ``self._execute_command(*args, **options)``. geredis's
  ``_execute_command`` runs the command itself with the :data:`INSIDE` marker
  option, so the identity test lets it through the second time. This follows
  any patch that ends in redis-py's original, wrapt-based or not, and stops
  the moment it is removed (``uninstrument()``).
* Pipelines: redis-py's ``Pipeline.execute`` does its own I/O and cannot be
  reused, so :func:`traced_pipeline` calls the patch's wrapper function (the
  ``_self_wrapper`` of a wrapt ``FunctionWrapper``, what OpenTelemetry,
  ddtrace and others install) with geredis's own method as the wrapped call.
  A patch that is not a wrapt wrapper is not followed for pipelines.

The cluster client does the same against ``redis.cluster.RedisCluster``
(whose ``execute_command`` ends in ``_internal_execute_command``) and
``redis.cluster.ClusterPipeline.execute``.

``RedisInstrumentor.instrument_client(r)`` needs none of this: it wraps the
instance's ``execute_command`` and ``pipeline``, which geredis honours since
every command method goes through ``self.execute_command``.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Tuple

import redis
import redis.client
import redis.cluster

__all__ = [
    "CLUSTER", "CLUSTER_PIPELINE", "INSIDE", "PLAIN_CLUSTER_EXECUTE",
    "PLAIN_CLUSTER_EXECUTE_COMMAND", "PLAIN_EXECUTE", "PLAIN_EXECUTE_COMMAND", "PLAIN_IMMEDIATE",
    "REDIS", "REDIS_PIPELINE", "traced_command", "traced_pipeline",
]  # fmt: skip

#: redis-py's client class, which instrumentation patches.
REDIS = redis.Redis
#: redis-py's pipeline class, which instrumentation patches.
REDIS_PIPELINE = redis.client.Pipeline
#: ``redis.Redis.execute_command`` as redis-py defines it (unpatched).
PLAIN_EXECUTE_COMMAND = vars(REDIS)["execute_command"]
#: ``redis.client.Pipeline.execute`` as redis-py defines it.
PLAIN_EXECUTE = vars(REDIS_PIPELINE)["execute"]
#: ``redis.client.Pipeline.immediate_execute_command`` as redis-py defines it.
PLAIN_IMMEDIATE = vars(REDIS_PIPELINE)["immediate_execute_command"]
#: redis-py's cluster client class, which instrumentation patches.
CLUSTER = redis.cluster.RedisCluster
#: redis-py's cluster pipeline class, which instrumentation patches.
CLUSTER_PIPELINE = redis.cluster.ClusterPipeline
#: ``redis.cluster.RedisCluster.execute_command`` as redis-py defines it.
PLAIN_CLUSTER_EXECUTE_COMMAND = vars(CLUSTER)["execute_command"]
#: ``redis.cluster.ClusterPipeline.execute`` as redis-py defines it.
PLAIN_CLUSTER_EXECUTE = vars(CLUSTER_PIPELINE)["execute"]

#: The option that marks a command coming back from redis-py's original
#: ``execute_command`` (through ``_execute_command``): run it, do not trace it again.
INSIDE = "_geredis_inside_trace"


def traced_command(client: Any, args: Tuple[Any, ...], options: Dict[str, Any],
                   base: Any = REDIS) -> Any:
    """Run a command through the patched ``execute_command`` of ``base``.

    Args:
        client: the geredis client.
        args: the command's arguments, name first.
        options: redis-py's per-command options.
        base: the redis-py class whose method was patched (``redis.Redis``,
            or ``redis.cluster.RedisCluster`` for the cluster client).

    Returns:
        The command's result.
    """
    return base.execute_command(client, *args, **options)


def traced_pipeline(pipe: Any, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                    base: Any = REDIS_PIPELINE) -> Any:
    """Run ``pipe.<name>(*args, **kwargs)`` (geredis's own method) inside the
    wrapper patched onto ``redis.client.Pipeline.<name>``.

    The pipeline's ``_in_trace`` flag is set meanwhile so that geredis's
    method, called back by the wrapper, runs instead of tracing again.

    Args:
        pipe: the geredis pipeline.
        name: ``"execute"`` or ``"immediate_execute_command"``.
        args: the method's positional arguments.
        kwargs: its keyword arguments.
        base: the redis-py class whose method was patched
            (``redis.client.Pipeline`` or ``redis.cluster.ClusterPipeline``).

    Returns:
        What the method returns.
    """
    own = functools.partial(getattr(type(pipe), name), pipe)
    hook = getattr(vars(base).get(name), "_self_wrapper", None)
    pipe._in_trace = True
    try:
        if hook is None:  # not a wrapt wrapper: nothing we can follow
            return own(*args, **kwargs)
        return hook(own, pipe, args, kwargs)
    finally:
        pipe._in_trace = False
