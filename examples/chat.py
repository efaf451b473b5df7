"""A chat room in greenlets: every user subscribes to the room and talks in it.

    REDIS_URL=redis://localhost:6379/0 python examples/chat.py [users] [messages-per-user]

Each simulated user has its own ``PubSub`` (its own connection) with a handler
on the room channel, plus a moderator that watches every room through a
pattern subscription. All users publish through one shared geredis client,
whose commands are auto-pipelined over a single connection. The program ends
by itself once every user has heard every line (or after 30 s), and prints
what each user heard.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any, Dict, List

import gevent
from gevent.event import Event

import geredis

ROOM = "chat:room:lobby"


class User:
    """One chat user: hears the room through a handler, talks through ``r``."""

    def __init__(self, name: str, r: geredis.Redis, expected: int, everyone_done: Any) -> None:
        self.name = name
        self.r = r
        self.heard: List[str] = []
        self.expected = expected
        self.everyone_done = everyone_done
        self.pubsub = r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(**{ROOM: self.on_line})

    def on_line(self, message: Dict[str, Any]) -> None:
        # Runs in this PubSub's dispatcher greenlet, one message at a time.
        self.heard.append(message["data"])
        if len(self.heard) == self.expected:
            self.everyone_done()

    def talk(self, lines: int) -> None:
        for i in range(lines):
            self.r.publish(ROOM, f"{self.name}: message {i + 1}")
            gevent.sleep(random.uniform(0, 0.01))  # people type at different speeds


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    r = geredis.from_url(url, decode_responses=True)
    expected = users * lines

    finished = Event()
    done_count = [0]

    def one_done() -> None:
        done_count[0] += 1
        if done_count[0] == users:
            finished.set()

    moderator_saw: List[str] = []
    with r.pubsub(ignore_subscribe_messages=True) as moderator:
        moderator.psubscribe(**{"chat:room:*": lambda m: moderator_saw.append(m["channel"])})
        people = [User(f"user{i:02d}", r, expected, one_done) for i in range(users)]
        print(f"{users} users joined {ROOM}; each says {lines} lines")

        started = time.perf_counter()
        talkers = [gevent.spawn(person.talk, lines) for person in people]
        gevent.joinall(talkers, raise_error=True)
        complete = finished.wait(30)
        took = time.perf_counter() - started

        for person in people[:3]:
            print(f"{person.name} heard {len(person.heard)} lines, last: {person.heard[-1]!r}")
        if users > 3:
            print(f"... and {users - 3} more users")
        heard_all = sum(len(p.heard) == expected for p in people)
        print(
            f"{heard_all}/{users} users heard all {expected} lines in {took:.2f}s"
            f" ({users * expected / took:,.0f} deliveries/s);"
            f" the moderator saw {len(moderator_saw)} lines"
        )
        for person in people:
            person.pubsub.close()
    r.close()
    if not complete:
        raise SystemExit("some lines were not heard within 30 s")


if __name__ == "__main__":
    main()
