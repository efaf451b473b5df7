"""The sentinels' event stream: move the clients as soon as a sentinel says.

How this works: :class:`EventWatcher` subscribes, on every sentinel (one
geredis ``PubSub`` each, not only the first that answers: whichever sentinel
publishes first moves the clients, and one sentinel down costs nothing), to

* ``+failover-state-send-slaveof-noone slave <ip:port> <ip> <port> @ <name>
  <old ip> <old port>``: the leader of a failover is promoting that replica.
  Primary resolvers leave the old primary at once and their new connections
  wait (a few seconds at most) for the replica to answer ``ROLE`` as the
  primary: writes are neither lost on the old primary nor delayed until the
  sentinels notice the promotion (up to a second later). ``-failover-abort-*``
  ends the wait;
* ``+switch-master <name> <old ip> <old port> <new ip> <new port>``: the
  primary of ``name`` changed; every primary resolver of that service moves
  (``SentinelResolver.switched``) and shuts its connections to the old one;
* ``+convert-to-slave slave <ip:port> <ip> <port> @ <name> ...``: a node a
  sentinel turned into a replica is no primary of ``name``, whatever a
  resolver thought;
* ``+sdown slave ... @ <name> ...``: a replica is down; replica resolvers
  shut their connections to it (they reconnect to another replica).

A sentinel that cannot be reached at first is tried again with exponential
backoff and jitter, until :meth:`close`; once subscribed, the ``PubSub``
reconnects by itself. Events published while a subscription was not in
place are lost, so after every (re)subscription the resolvers check the
primary with the sentinels (``Sentinel._resync``).

The same event usually arrives once per sentinel; applying it again
changes nothing.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import gevent
from gevent.greenlet import Greenlet
from redis.exceptions import ConnectionError, TimeoutError

from ..writer import BackgroundGreenlet

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Redis
    from ..pubsub import PubSub
    from .manager import Sentinel

__all__ = ["CHANNELS", "EventWatcher", "parse_event"]

logger = logging.getLogger("geredis.sentinel")

#: The event of a replica being turned into the primary.
PROMOTING = "+failover-state-send-slaveof-noone"
#: The events of an aborted failover.
ABORTS = ("-failover-abort-not-elected", "-failover-abort-no-good-slave",
          "-failover-abort-slave-timeout")
#: The sentinel event channels the watcher subscribes to.
CHANNELS = ("+switch-master", PROMOTING, *ABORTS, "+convert-to-slave", "+sdown")

#: Retry delays for a sentinel that cannot be subscribed to: (base, cap) seconds.
BACKOFF = (0.1, 5.0)


def parse_event(channel: str, data: str) -> Optional[Dict[str, Any]]:
    """An event's fields, or None when it is not one this module acts on.

    ``{"service", "old", "new"}`` for ``+switch-master``; ``{"service",
    "address", "kind"}`` for instance events (``kind`` is ``slave``,
    ``master`` or ``sentinel``), plus ``"master"`` (its primary's address)
    for those about a replica or sentinel.

    Args:
        channel: the event channel (``+switch-master``, ``+sdown``...).
        data: the message, as the sentinel sent it.

    Returns:
        The fields, or None (an unreadable message is logged).
    """
    words = data.split()
    try:
        if channel == "+switch-master":
            return {
                "service": words[0],
                "old": (words[1], int(words[2])),
                "new": (words[3], int(words[4])),
            }
        kind = words[0]
        if kind == "master":  # master <name> <ip> <port>
            return {"kind": kind, "service": words[1], "address": (words[2], int(words[3]))}
        # <kind> <name> <ip> <port> @ <master name> <master ip> <master port>
        at = words.index("@")
        return {"kind": kind, "service": words[at + 1], "address": (words[2], int(words[3])),
                "master": (words[at + 2], int(words[at + 3]))}
    except (IndexError, ValueError):
        logger.warning("cannot read sentinel event %s %r", channel, data)
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class EventWatcher:
    """Subscribes to every sentinel of a :class:`~geredis.sentinel.Sentinel`
    (see the module comment). Started by the first managed connection.

    Args:
        manager: the Sentinel whose sentinels are watched and whose
            resolvers are told.
    """

    def __init__(self, manager: "Sentinel") -> None:
        self.manager = manager
        self.started = False
        self.closed = False
        #: Events acted upon, per channel (tests and benchmarks read them).
        self.seen: Dict[str, int] = {}
        #: Sentinels subscribed to (each PubSub then reconnects by itself).
        self.subscribed = 0
        self._pubsubs: List["PubSub"] = []
        self._greenlets: List[Greenlet] = []

    def start(self) -> None:
        """Subscribe to every sentinel, in the background. Idempotent."""
        if self.started or self.closed:
            return
        self.started = True
        for sentinel in self.manager.sentinels:
            self._greenlets.append(BackgroundGreenlet.spawn(self._subscribe, sentinel))

    def _subscribe(self, sentinel: "Redis") -> None:
        # Until subscribed once (then the PubSub reconnects by itself) or closed.
        failures = 0
        handlers = {channel: self._on_message for channel in CHANNELS}
        while not self.closed:
            pubsub = sentinel.pubsub(on_reconnect=self._on_reconnect, reconnect_messages=False)
            self._pubsubs.append(pubsub)
            try:
                pubsub.subscribe(**handlers)
            except (ConnectionError, TimeoutError) as exc:
                self._pubsubs.remove(pubsub)
                pubsub.close()
                failures += 1
                if failures & (failures - 1) == 0:  # 1, 2, 4, 8...: not every time
                    logger.warning("cannot subscribe to sentinel %s (%d attempts): %r",
                                   sentinel.settings.address, failures, exc)
                base, cap = BACKOFF
                gevent.sleep(min(cap, base * 2 ** min(failures, 16)) * random.uniform(0.5, 1.0))
                continue
            self.subscribed += 1
            self.manager._resync()  # what happened before this subscription
            return

    def _on_reconnect(self, info: Any) -> None:
        self.manager._resync()  # events published during the gap are lost

    def _on_message(self, message: Dict[str, Any]) -> None:
        channel = _text(message["channel"])
        event = parse_event(channel, _text(message["data"]))
        if event is None:
            return
        resolvers = self.manager.resolvers(event["service"])
        if not resolvers:
            return
        self.seen[channel] = self.seen.get(channel, 0) + 1
        if channel == "+switch-master":
            logger.info("sentinel: %s moved from %s:%d to %s:%d", event["service"],
                        *event["old"], *event["new"])
            for resolver in resolvers:
                if resolver.is_master:
                    resolver.switched(event["old"], event["new"])
        elif channel == PROMOTING:
            logger.info("sentinel: %s is promoting %s:%d", event["service"], *event["address"])
            for resolver in resolvers:
                if resolver.is_master:
                    resolver.promoting(event["master"], event["address"])
        elif channel in ABORTS:
            for resolver in resolvers:
                if resolver.is_master:
                    resolver.promotion_aborted()
        elif channel == "+convert-to-slave":
            for resolver in resolvers:
                if resolver.is_master:
                    resolver.not_primary(event["address"])
        elif channel == "+sdown" and event["kind"] == "slave":
            for resolver in resolvers:
                if not resolver.is_master:
                    resolver.drop(event["address"])

    def close(self) -> None:
        """Unsubscribe from every sentinel and stop trying."""
        self.closed = True
        greenlets, self._greenlets = self._greenlets, []
        for greenlet in greenlets:
            greenlet.kill()
        pubsubs, self._pubsubs = self._pubsubs, []
        for pubsub in pubsubs:
            pubsub.close()
