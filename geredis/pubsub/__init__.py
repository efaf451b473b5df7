"""Pub/sub for geredis: a subscriber greenlet that routes messages to handlers.

How this works, one module each:

* ``api.py``: :class:`PubSub`, redis-py's PubSub API (``r.pubsub()``), and
  :class:`PubSubWorker` (``run_in_thread``).
* ``subscriber.py``: the channel/pattern/shard tables and the reader
  greenlet that serves them, reconnecting with backoff and resubscribing
  everything after a drop.
* ``stream.py``: one connection's life: handshake, the write queue with its
  PING fences, and the read loop that turns RESP3 pushes (or RESP2 arrays)
  into redis-py message dicts.
* ``delivery.py``: the bounded handler queue and its dispatcher greenlet, and
  the ``get_message()`` queue. When full, the oldest messages are dropped.

Normal commands never share this connection, so a subscription, or a slow
handler, never delays ``r.get()`` and friends; ``r.publish``/``r.spublish``
go through the client's auto-pipelined connection.
"""

from .api import PubSub, PubSubWorker
from .delivery import ReconnectInfo, report_handler_error
from .subscriber import SubscriberState

__all__ = ["PubSub", "PubSubWorker", "ReconnectInfo", "SubscriberState", "report_handler_error"]
