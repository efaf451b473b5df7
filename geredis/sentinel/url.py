"""Sentinel URLs: ``redis+sentinel://`` as the ``redis-sentinel-url`` package
(and several frameworks) spell them.

How this works: :func:`connect` splits
``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?options]``
(``sentinel://`` and ``rediss+sentinel://`` too; the default port is 26379)
into the sentinels' addresses, the service name and the client's options.
The options are ``redis://`` URL options (``socket_timeout``, ``protocol``,
``decode_responses``...) checked by ``settings.parse_url``, plus:

* ``client_type``: ``master`` (default) or ``slave``/``replica``;
* ``sentinel_username``/``sentinel_password``: credentials for the sentinels
  (the user and password before ``@`` are for the Redis nodes);
* ``min_other_sentinels``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ..client import Redis
from ..settings import parse_url
from .manager import Sentinel

__all__ = ["connect", "parse_sentinel_url"]

_SCHEMES = {"redis+sentinel": False, "sentinel": False, "rediss+sentinel": True}
_OWN_OPTIONS = ("client_type", "sentinel_username", "sentinel_password", "min_other_sentinels")


def parse_sentinel_url(url: str) -> Dict[str, Any]:
    """Read a Sentinel URL.

    ``redis+sentinel://[[user]:pass@]host[:port][,host[:port]...]/service[/db][?opt=v]``
    (``rediss+sentinel://`` over TLS; ``sentinel://`` is an alias). Options
    of its own: ``client_type`` (``master``, ``slave`` or ``replica``),
    ``sentinel_username``, ``sentinel_password``, ``min_other_sentinels``;
    the others are the data clients' ``geredis.Redis`` options, as in a
    Redis URL.

    Args:
        url: the URL.

    Returns:
        ``{"sentinels", "service_name", "is_master", "sentinel_kwargs",
        "min_other_sentinels", "connection_kwargs"}``.

    Raises:
        ValueError: another scheme, no host, no service name, or an unknown
            or invalid option.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError("Sentinel URL must start with redis+sentinel://, rediss+sentinel://"
                         " or sentinel://")
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels: List[Tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"invalid sentinel address {item!r} in Sentinel URL")
        try:
            sentinels.append((unquote(host.strip("[]")), int(port) if port else 26379))
        except ValueError:
            raise ValueError(f"invalid port in sentinel address {item!r}") from None
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("Sentinel URL needs the service name: redis+sentinel://host/mymaster")
    query = parse_qs(parts.query)
    own = {name: query.pop(name)[0] for name in _OWN_OPTIONS if name in query}
    scheme = "rediss" if _SCHEMES[parts.scheme] else "redis"
    rest = f"{scheme}://{credentials + '@' if credentials else ''}localhost"
    if len(path) > 1:
        rest += f"/{path[1]}"
    if query:
        rest += "?" + urlencode({k: v[0] for k, v in query.items()})
    connection_kwargs = parse_url(rest)
    connection_kwargs.pop("host", None)
    client_type = own.get("client_type", "master")
    if client_type not in ("master", "slave", "replica"):
        raise ValueError(f"client_type must be master, slave or replica, not {client_type!r}")
    sentinel_kwargs = {k: v for k, v in connection_kwargs.items() if k.startswith("socket_")}
    if "sentinel_username" in own:
        sentinel_kwargs["username"] = own["sentinel_username"]
    if "sentinel_password" in own:
        sentinel_kwargs["password"] = own["sentinel_password"]
    return {
        "sentinels": sentinels,
        "service_name": path[0],
        "is_master": client_type == "master",
        "sentinel_kwargs": sentinel_kwargs,
        "min_other_sentinels": int(own.get("min_other_sentinels", 0)),
        "connection_kwargs": connection_kwargs,
    }


def connect(url: str, **kwargs: Any) -> Tuple[Sentinel, Redis]:
    """``(sentinel, client)`` for a Sentinel URL: the client follows the
    primary (or the replicas, ``client_type=slave``). ``kwargs`` are
    ``geredis.Redis`` arguments for the client and win over the URL's.
    Close both: ``client.close(); sentinel.close()``.

    Args:
        url: a Sentinel URL (see :func:`parse_sentinel_url`).
        **kwargs: ``geredis.Redis`` arguments for the client.

    Returns:
        The :class:`~geredis.sentinel.Sentinel` and its client (a
        ``geredis.Redis``; nothing is connected until the first command).

    Raises:
        ValueError: the URL cannot be read, or an argument value is refused.
        TypeError: an argument ``geredis.Redis`` does not take.
    """
    parsed = parse_sentinel_url(url)
    sentinel = Sentinel(parsed["sentinels"], min_other_sentinels=parsed["min_other_sentinels"],
                        sentinel_kwargs=parsed["sentinel_kwargs"], **parsed["connection_kwargs"])
    if parsed["is_master"]:
        return sentinel, sentinel.master_for(parsed["service_name"], **kwargs)
    return sentinel, sentinel.slave_for(parsed["service_name"], **kwargs)
