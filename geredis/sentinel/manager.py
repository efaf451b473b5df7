"""``geredis.sentinel.Sentinel``: redis-py's Sentinel API, handing out geredis
clients that follow the primary through failovers.

How this works: a :class:`Sentinel` holds one small geredis client per
sentinel (``sentinel_kwargs``; retries off, so a dead sentinel costs one
attempt and discovery moves on) and answers redis-py's questions with
redis-py's rules:

* :meth:`discover_master` asks the sentinels in turn and accepts the first
  answer in which the service is a master, neither subjectively nor
  objectively down, seen by at least ``min_other_sentinels`` other
  sentinels; the sentinel that answered moves to the front of the list.
  Otherwise ``MasterNotFoundError`` lists what each sentinel said.
* :meth:`discover_slaves` returns the replicas the first answering sentinel
  sees up and linked to their primary (``filter_slaves`` is stricter than
  redis-py's: a replica whose link to the primary is down is skipped too).
* :meth:`master_for` / :meth:`slave_for` build a ``geredis.Redis`` (or
  ``redis_class``) whose settings carry a
  :class:`~geredis.sentinel.resolver.SentinelResolver`: a full geredis client
  (pipelines, pub/sub, blocking commands, ``client()``, ``monitor()``) whose
  every connection goes where the sentinels say.
* The first connection of such a client starts the event watcher
  (``events.py``), one subscriber per sentinel, shared by every client of
  this Sentinel. :meth:`close` stops it and closes the sentinel clients; the
  clients from ``master_for``/``slave_for`` are the caller's to close.
"""

from __future__ import annotations

import random
import weakref
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type

from redis.commands import SentinelCommands
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.sentinel import MasterNotFoundError

from ..client import Redis
from .events import EventWatcher
from .resolver import Address, SentinelResolver

__all__ = ["Sentinel"]

#: Arguments of a data-node client that a Sentinel decides itself.
_NOT_FOR_MANAGED = ("host", "port", "unix_socket_path", "address_resolver")


class Sentinel(SentinelCommands):  # type: ignore[misc]
    """Redis Sentinel: discovers the primary and replicas of a service and
    hands out geredis clients that follow them.

    Args:
        sentinels: ``(host, port)`` of each sentinel.
        min_other_sentinels: an answer counts only from a sentinel that sees
            at least this many other sentinels (as redis-py).
        sentinel_kwargs: ``geredis.Redis`` arguments for the connections to
            the sentinels (password, TLS, timeouts...). Default: the
            ``socket_*`` arguments of ``connection_kwargs``, as redis-py.
            Retries are off unless ``retry`` is given here.
        force_master_ip: use this host instead of the one the sentinels
            report for the primary (NAT), as redis-py.
        **connection_kwargs: ``geredis.Redis`` arguments for the clients that
            ``master_for``/``slave_for`` build.

    Raises:
        ValueError: no sentinel given, or a ``sentinel_kwargs`` value
            ``geredis.Redis`` cannot read.
        TypeError: a ``sentinel_kwargs`` argument ``geredis.Redis`` does not
            take.
    """

    def __init__(
        self,
        sentinels: Iterable[Tuple[str, int]],
        min_other_sentinels: int = 0,
        sentinel_kwargs: Optional[Dict[str, Any]] = None,
        force_master_ip: Optional[str] = None,
        **connection_kwargs: Any,
    ) -> None:
        if sentinel_kwargs is None:
            sentinel_kwargs = {
                k: v for k, v in connection_kwargs.items() if k.startswith("socket_")
            }
        self.sentinel_kwargs = sentinel_kwargs
        kwargs = dict(sentinel_kwargs)
        kwargs.setdefault("retry", None)
        self.sentinels: List[Redis] = [
            Redis(host=host, port=port, **kwargs) for host, port in sentinels
        ]
        if not self.sentinels:
            raise ValueError("Sentinel needs the address of at least one sentinel")
        self.min_other_sentinels = min_other_sentinels
        self.connection_kwargs = connection_kwargs
        self._force_master_ip = force_master_ip
        self._resolvers: "weakref.WeakSet[SentinelResolver]" = weakref.WeakSet()
        #: The sentinels' event stream, shared by this Sentinel's clients.
        self.events = EventWatcher(self)

    def __repr__(self) -> str:
        addresses = ",".join(
            f"{s.settings.host}:{s.settings.port}" for s in self.sentinels
        )
        return f"<geredis.sentinel.Sentinel(sentinels=[{addresses}])>"

    # -- commands on the sentinels ------------------------------------------------

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command on every sentinel (``once=True``: on one at random).

        Args:
            *args: the command and its arguments.
            **kwargs: ``once`` (one sentinel at random),
                ``return_responses`` (the replies rather than a bool), and
                the command's options.

        Returns:
            True if every reply was truthy, or the list of replies with
            ``return_responses=True``, as redis-py.

        Raises:
            redis.ConnectionError: a sentinel could not be reached.
            redis.ResponseError: a sentinel refused the command.
        """
        once = bool(kwargs.pop("once", False))
        return_responses = bool(kwargs.pop("return_responses", False))
        if once:
            reply = random.choice(self.sentinels).execute_command(*args, **kwargs)
            return [reply] if return_responses else bool(reply)
        replies = [s.execute_command(*args, **kwargs) for s in self.sentinels]
        return replies if return_responses else all(replies)

    # -- discovery (redis-py's rules) -------------------------------------------------

    def check_master_state(self, state: Dict[str, Any], service_name: str) -> bool:
        """Whether one sentinel's view names a usable primary.

        Args:
            state: one service's entry of ``SENTINEL MASTERS``.
            service_name: the service (unused, as in redis-py).

        Returns:
            True if the primary is up (not subjectively or objectively
            down) and the sentinel sees at least ``min_other_sentinels``
            others.
        """
        if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
            return False
        return int(state["num-other-sentinels"]) >= self.min_other_sentinels

    def discover_master(self, service_name: str) -> Address:
        """``(host, port)`` of the primary of ``service_name``.

        The first sentinel that answers with a usable primary moves to the
        front of the list, as in redis-py.

        Args:
            service_name: the service.

        Returns:
            The primary's address (its host replaced by ``force_master_ip``
            when given).

        Raises:
            redis.sentinel.MasterNotFoundError: no sentinel answered with a usable primary
                (the message lists each sentinel's error).
        """
        errors: List[str] = []
        for index, sentinel in enumerate(list(self.sentinels)):
            try:
                masters: Any = sentinel.sentinel_masters()
            except (ConnectionError, TimeoutError) as exc:
                errors.append(f"{sentinel.settings.address} - {type(exc).__name__}: {exc}")
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                if index and self.sentinels[index] is sentinel:
                    self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                host = self._force_master_ip if self._force_master_ip is not None else state["ip"]
                return host, int(state["port"])
        detail = f" : {', '.join(errors)}" if errors else ""
        raise MasterNotFoundError(f"No master found for {service_name!r}{detail}")

    def filter_slaves(self, slaves: Sequence[Dict[str, Any]]) -> List[Address]:
        """The replicas that are up and linked to their primary: not
        subjectively or objectively down, not disconnected from the sentinel,
        master link ``ok``.

        Args:
            slaves: the replicas' entries of ``SENTINEL REPLICAS``.

        Returns:
            Their ``(host, port)`` addresses.
        """
        alive = []
        for slave in slaves:
            if slave["is_odown"] or slave["is_sdown"] or slave.get("is_disconnected"):
                continue
            if slave.get("master-link-status", "ok") != "ok":
                continue
            alive.append((slave["ip"], int(slave["port"])))
        return alive

    def discover_slaves(self, service_name: str) -> List[Address]:
        """The usable replicas of ``service_name`` as the first sentinel that
        knows some reports them.

        Args:
            service_name: the service.

        Returns:
            Their ``(host, port)`` addresses; [] when none (sentinels that
            fail to answer are skipped).
        """
        for sentinel in list(self.sentinels):
            try:
                slaves = sentinel.sentinel_slaves(service_name)
            except (ConnectionError, ResponseError, TimeoutError):
                continue
            usable = self.filter_slaves(slaves)
            if usable:
                return usable
        return []

    filter_replicas = filter_slaves
    discover_replicas = discover_slaves

    # -- clients ---------------------------------------------------------------------

    def master_for(self, service_name: str, redis_class: Type[Redis] = Redis,
                   connection_pool_class: Any = None, **kwargs: Any) -> Redis:
        """A geredis client that follows the primary of ``service_name``.

        ``kwargs`` are ``geredis.Redis`` arguments, on top of this Sentinel's
        ``connection_kwargs``. ``check_connection`` is accepted (every
        connection is checked with ROLE anyway). Nothing is connected until
        the first command.

        Args:
            service_name: the service, as the sentinels know it
                (``mymaster``).
            redis_class: ``geredis.Redis`` or a subclass of it.
            connection_pool_class: refused: geredis clients own their
                connections.
            **kwargs: ``geredis.Redis`` arguments, on top of this
                Sentinel's ``connection_kwargs``.

        Returns:
            A ``redis_class`` client whose connections go to the primary
            found at each connect.

        Raises:
            ValueError: ``connection_pool_class``, ``host``/``port`` or
                ``unix_socket_path`` given (the Sentinel decides those), or
                an argument value ``geredis.Redis`` cannot read.
            TypeError: ``redis_class`` is not ``geredis.Redis`` or a
                subclass, or an argument ``geredis.Redis`` does not take.
        """
        return self._client_for(service_name, True, redis_class, connection_pool_class, kwargs)

    def slave_for(self, service_name: str, redis_class: Type[Redis] = Redis,
                  connection_pool_class: Any = None, **kwargs: Any) -> Redis:
        """A geredis client on a replica of ``service_name`` (round-robin per
        connection, the primary when no replica is usable).

        Args:
            service_name: the service, as the sentinels know it
                (``mymaster``).
            redis_class: ``geredis.Redis`` or a subclass of it.
            connection_pool_class: refused: geredis clients own their
                connections.
            **kwargs: ``geredis.Redis`` arguments, on top of this
                Sentinel's ``connection_kwargs``.

        Returns:
            A ``redis_class`` client whose connections go to a replica.

        Raises:
            ValueError: ``connection_pool_class``, ``host``/``port`` or
                ``unix_socket_path`` given (the Sentinel decides those), or
                an argument value ``geredis.Redis`` cannot read.
            TypeError: ``redis_class`` is not ``geredis.Redis`` or a
                subclass, or an argument ``geredis.Redis`` does not take.
        """
        return self._client_for(service_name, False, redis_class, connection_pool_class, kwargs)

    replica_for = slave_for

    def _client_for(self, service_name: str, is_master: bool, redis_class: Type[Redis],
                    connection_pool_class: Any, kwargs: Dict[str, Any]) -> Redis:
        if connection_pool_class is not None:
            raise ValueError(
                "geredis clients own their connections; connection_pool_class does not"
                " apply to geredis.sentinel (leave it out)"
            )
        if not (isinstance(redis_class, type) and issubclass(redis_class, Redis)):
            raise TypeError("redis_class must be geredis.Redis or a subclass of it")
        options = dict(self.connection_kwargs)
        options.update(kwargs)
        options.pop("check_connection", None)
        options.pop("is_master", None)
        for name in _NOT_FOR_MANAGED:
            if name in options:
                raise ValueError(f"{name}= does not apply to a Sentinel-managed client")
        resolver = SentinelResolver(self, service_name, is_master)
        self._resolvers.add(resolver)
        client = redis_class(address_resolver=resolver, **options)
        resolver.on_failover = _count_failover(weakref.ref(client))
        return client

    # -- events ----------------------------------------------------------------------

    def resolvers(self, service_name: str) -> List[SentinelResolver]:
        """The live resolvers (one per client) of ``service_name``.

        Args:
            service_name: the service.

        Returns:
            The :class:`~geredis.sentinel.resolver.SentinelResolver` of each
            client of that service still alive.
        """
        return [r for r in list(self._resolvers) if r.service_name == service_name]

    def _watch_events(self) -> None:
        self.events.start()

    def _resync(self) -> None:
        # Events may have been missed: check with the sentinels every primary
        # a client is connected to (the others discover at their first connect).
        for resolver in list(self._resolvers):
            if resolver.primary is not None:
                resolver.refresh()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching the sentinels' events and close the connections to
        the sentinels. Clients from ``master_for``/``slave_for`` are not
        closed (close them yourself); after this they can no longer
        discover a new primary."""
        self.events.close()
        for sentinel in self.sentinels:
            sentinel.close()

    def __enter__(self) -> "Sentinel":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _count_failover(client: "weakref.ref[Redis]") -> Any:
    # Held weakly: a resolver never keeps its client alive.
    def failed_over() -> None:
        alive = client()
        if alive is not None:
            alive._stats.failed_over()

    return failed_over
