"""`FEWSHOT_REDIS_URL` names a single server or (`redis+cluster://`) a Redis Cluster's seed nodes."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster

from app.store import connect, is_cluster_url
from app.store.client import cluster_seed_nodes
from harness.redis_cluster import LocalCluster


def test_cluster_urls_name_seed_nodes_and_credentials() -> None:
    nodes, options = cluster_seed_nodes("rediss+cluster://app:s%40cret@10.0.0.1:6379, redis-1.svc:7000")
    assert [(node.host, node.port) for node in nodes] == [("10.0.0.1", 6379), ("redis-1.svc", 7000)]
    assert options == {"ssl": True, "username": "app", "password": "s@cret"}
    assert cluster_seed_nodes("redis+cluster://:pw@h:1")[1] == {"ssl": False, "username": None, "password": "pw"}
    assert is_cluster_url("REDIS+CLUSTER://h:1") and not is_cluster_url("redis://h:6379/0")
    with pytest.raises(ValueError, match="host:port"):
        cluster_seed_nodes("redis+cluster://h1:6379,h2")


def test_the_cluster_url_gives_a_cluster_client(redis_cluster: LocalCluster) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
    client.close()
