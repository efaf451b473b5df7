"""A real Sentinel deployment on loopback: one primary, replicas, sentinels.

How this works: :class:`Topology` starts ``redis-server`` processes (the
primary, then each replica with ``--replicaof``, each on a free port) and
``redis-server --sentinel`` processes that monitor the primary under one
service name, with a small ``down-after-milliseconds`` and
``failover-timeout`` so that a failover takes a few seconds (tests also
shorten the sentinels' INFO and hello periods with ``SENTINEL DEBUG``, so
that they notice a reconfigured replica in a second, not ten). ``wait_ready``
waits, by polling what the sentinels report, until every sentinel knows
the others and every replica is linked: only then is a failover possible.

The helpers talk to the servers through small geredis clients with retries
off (``admin``), so they cooperate with the greenlets under test. The
failover helpers return the new primary's port once every sentinel agrees on
it. ``stop``/``cleanup`` kill every process started here.

Used by ``tests/sentinel`` and by ``bench/sentinel.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import gevent

import geredis
from ..conftest import REDIS_SERVER, RedisServer, free_port

SERVICE = "mymaster"


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; return it. Errors
    count as false. Raise AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - a server may be restarting
            last = exc
        gevent.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class SentinelProcess:
    """One ``redis-server --sentinel`` child process."""

    def __init__(self, directory: str, port: int, primary_port: int, quorum: int,
                 down_after_ms: int, failover_timeout_ms: int, extra: List[str],
                 debug: Tuple[str, ...] = ()) -> None:
        self.port = port
        self.debug = debug
        self.dir = directory
        self.conf = os.path.join(directory, f"sentinel-{port}.conf")
        lines = [
            f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {directory}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}",
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
            *extra,
        ]  # fmt: skip
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.process: Optional["subprocess.Popen[bytes]"] = None

    def start(self) -> "SentinelProcess":
        # The sentinel rewrites its file (known peers, replicas, epoch): a
        # restart keeps what it learnt, as in production.
        self.process = subprocess.Popen(
            [REDIS_SERVER, self.conf, "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _pong(self.port), 10, f"sentinel on {self.port} to start")
        if self.debug:
            _call(self.port, "SENTINEL", "DEBUG", *self.debug)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _call(port: int, *args: Any) -> Any:
    admin = geredis.Redis(host="127.0.0.1", port=port, retry=None, socket_timeout=2,
                          socket_connect_timeout=2)
    try:
        return admin.execute_command(*args)
    finally:
        admin.close()


def _pong(port: int) -> bool:
    return bool(_call(port, "PING"))


class Topology:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels."""

    def __init__(self, replicas: int = 1, sentinels: int = 3, quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 2000,
                 server_args: Tuple[str, ...] = (), sentinel_args: Tuple[str, ...] = (),
                 sentinel_debug: Tuple[str, ...] = ()) -> None:
        self.dir = tempfile.mkdtemp(prefix="geredis-sentinel-")
        self.server_args = list(server_args)
        self.servers: Dict[int, RedisServer] = {}
        self.paused: Set[int] = set()
        self.first_primary = free_port()
        self.replica_count = replicas
        self.sentinels = [
            SentinelProcess(self.dir, free_port(), self.first_primary, quorum, down_after_ms,
                            failover_timeout_ms, list(sentinel_args), sentinel_debug)
            for _ in range(sentinels)
        ]  # fmt: skip

    @property
    def sentinel_addresses(self) -> List[Tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def start(self) -> "Topology":
        try:
            self.start_server(self.first_primary)
            for _ in range(self.replica_count):
                self.start_server(free_port(), "--replicaof", "127.0.0.1", str(self.first_primary))
            for port in list(self.servers)[1:]:
                wait_for(lambda: self.info(port)["master_link_status"] == "up", 20,
                         f"replica {port} to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def start_server(self, port: int, *extra: str) -> RedisServer:
        server = RedisServer(port, *self.server_args, *extra).start()
        self.servers[port] = server
        return server

    # -- asking the servers ----------------------------------------------------

    def admin(self, port: int) -> geredis.Redis:
        """A short-lived client to one process (close it)."""
        return geredis.Redis(host="127.0.0.1", port=port, retry=None, socket_timeout=5,
                             socket_connect_timeout=5, decode_responses=True)

    def call(self, port: int, *args: Any) -> Any:
        admin = self.admin(port)
        try:
            return admin.execute_command(*args)
        finally:
            admin.close()

    def info(self, port: int) -> Dict[str, Any]:
        return dict(self.call(port, "INFO", "replication"))

    def role(self, port: int) -> str:
        return str(self.call(port, "ROLE")[0])

    def master_state(self, sentinel: SentinelProcess) -> Dict[str, Any]:
        admin = self.admin(sentinel.port)
        try:
            return dict(admin.sentinel_master(SERVICE))
        finally:
            admin.close()

    def primary_port(self) -> int:
        """The primary as the first live sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.process is not None:
                return int(self.master_state(sentinel)["port"])
        raise RuntimeError("no sentinel running")

    def replica_ports(self) -> List[int]:
        primary = self.primary_port()
        return [port for port in self.servers if port != primary]

    def wait_ready(self, timeout: float = 40) -> None:
        """Until every live sentinel agrees on the primary, sees the other
        sentinels and every replica up, and every replica is linked to that
        primary (asked directly: a sentinel refreshes that view only every
        10 s): a failover can then happen."""
        live = [s for s in self.sentinels if s.process is not None]
        want_others = len(live) - 1
        want_replicas = len(self.servers) - 1

        def ready() -> bool:
            ports = set()
            for sentinel in live:
                state = self.master_state(sentinel)
                if (state["num-other-sentinels"] < want_others
                        or state["num-slaves"] < want_replicas
                        or state["is_sdown"] or state["is_odown"]
                        or state.get("is_failover_in_progress")):
                    return False
                ports.add(int(state["port"]))
                admin = self.admin(sentinel.port)
                try:
                    replicas = admin.sentinel_slaves(SERVICE)
                finally:
                    admin.close()
                # As the sentinel would pick one for a failover (its view is
                # as old as its last INFO of the replica).
                usable = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])
                          and r.get("role-reported") == "slave"
                          and r.get("master-link-status") == "ok"
                          and not r.get("master-link-down-time")]
                if len(usable) < want_replicas:
                    return False
            if len(ports) != 1:
                return False
            primary = ports.pop()
            if self.role(primary) != "master":
                return False
            for port in self.servers:
                if port != primary:
                    info = self.info(port)
                    if info.get("master_port") != primary or info.get("master_link_status") != "up":
                        return False
            return True

        wait_for(ready, timeout, "sentinels to be ready", every=0.2)

    # -- failing over --------------------------------------------------------------

    def wait_primary_change(self, old: int, timeout: float = 40) -> int:
        """Until every live sentinel reports a primary other than ``old`` and
        it says it is a master; returns its port."""
        live = [s for s in self.sentinels if s.process is not None]

        def moved() -> Optional[int]:
            ports = {int(self.master_state(s)["port"]) for s in live}
            if len(ports) == 1 and old not in ports:
                port = ports.pop()
                if self.role(port) == "master":
                    return port
            return None

        return int(wait_for(moved, timeout, f"a primary other than {old}", every=0.1))

    def failover(self) -> int:
        """``SENTINEL FAILOVER`` through the first live sentinel (no agreement
        needed); returns the old primary's port at once."""
        old = self.primary_port()
        sentinel = next(s for s in self.sentinels if s.process is not None)
        wait_for(lambda: self.call(sentinel.port, "SENTINEL", "FAILOVER", SERVICE), 30,
                 "SENTINEL FAILOVER to be accepted", every=0.3)
        return old

    def kill(self, port: int) -> None:
        """SIGKILL one server (no goodbye to its clients beyond the kernel's)."""
        server = self.servers[port]
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server.process = None

    def pause(self, port: int) -> None:
        """SIGSTOP one server: a hung or cut-off primary. Its kernel still
        accepts connections and data; nothing answers."""
        process = self.servers[port].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        self.paused.add(port)

    def resume(self, port: int) -> None:
        """SIGCONT: the hung server comes back, with its stale configuration."""
        process = self.servers[port].process
        assert process is not None
        process.send_signal(signal.SIGCONT)
        self.paused.discard(port)

    def demote(self, port: int, primary: int) -> None:
        """``REPLICAOF primary`` on ``port``, as the sentinels would do some
        seconds after a failover (tests do it at once, to save the wait)."""
        self.call(port, "REPLICAOF", "127.0.0.1", str(primary))

    def restart(self, port: int, *extra: str) -> None:
        """Start a killed server again on its port (as a primary unless
        ``extra`` says otherwise: the stale configuration of a primary that
        comes back after a failover)."""
        old = self.servers.pop(port)
        old.cleanup()
        self.start_server(port, *extra)

    # -- stopping --------------------------------------------------------------------

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers.values():
            server.cleanup()
        self.servers.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
