"""Fan commands out over 1,000 greenlets on a Redis Cluster, one connection per node.

    REDIS_CLUSTER_URL=redis://127.0.0.1:7000 python examples/cluster_fanout.py [greenlets]

Writes and reads one key per greenlet (keys spread over every slot), reads
them all back with one ``mget_nonatomic`` (split by slot, sent to the nodes in
parallel, reassembled in order), runs a pipeline whose commands go to several
nodes, then prints how many connections each primary saw from this process:
one multiplexed connection per node, whatever the number of greenlets.
"""

from __future__ import annotations

import os
import sys
import time

import gevent

import geredis


def main() -> None:
    greenlets = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    url = os.environ.get("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000")
    rc = geredis.RedisCluster.from_url(url, decode_responses=True, client_name="cluster-fanout")
    keys = [f"fanout:{i}" for i in range(greenlets)]

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(rc.set, key, f"value-{i}") for i, key in enumerate(keys)],
                   raise_error=True)
    readers = [gevent.spawn(rc.get, key) for key in keys]
    gevent.joinall(readers, raise_error=True)
    took = time.perf_counter() - started
    correct = sum(g.value == f"value-{i}" for i, g in enumerate(readers))
    print(f"{greenlets} greenlets: {2 * greenlets} commands in {took * 1000:.0f} ms,"
          f" {correct} reads correct")

    values = rc.mget_nonatomic(keys)
    print(f"mget_nonatomic of {len(keys)} keys: {sum(v is not None for v in values)} values,"
          f" in the order asked: {values[:2] == ['value-0', 'value-1']}")

    with rc.pipeline() as pipe:
        for key in keys[:10]:
            pipe.incr(f"{key}:hits")
        print(f"a pipeline over {len({rc.keyslot(k) for k in keys[:10]})} slots: {pipe.execute()}")

    for node in rc.get_primaries():
        clients = rc.client_list(target_nodes=node)
        mine = sum(1 for c in clients if c.get("name") == "cluster-fanout")
        print(f"primary {node.host}:{node.port}: {mine} connection(s) from this program")
    rc.delete(*keys, *[f"{key}:hits" for key in keys[:10]])
    rc.close()


if __name__ == "__main__":
    main()
