"""The process's one Redis client: a single server or a Redis Cluster, one error translation, bounded retries.

`FEWSHOT_REDIS_URL` names a cluster with the `redis+cluster://` (or TLS: `rediss+cluster://`) scheme and one or
more seed nodes, e.g. `redis+cluster://:password@10.0.0.1:6379,10.0.0.2:6379`; the client discovers the rest
of the cluster from them. Any other URL is a single server (`redis://`, `rediss://`, `unix://`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, ClusterError, MasterDownError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from app.store.base import StoreUnavailable

T = TypeVar("T")

RedisClient = redis.Redis | RedisCluster
"""What `connect` returns; store, API keys and rate limiter share it."""

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
"""URL scheme -> TLS, for a Redis Cluster."""

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,  # CLUSTERDOWN: a slot has no primary (failover in progress)
    TryAgainError,  # TRYAGAIN: a multi-key command during resharding
    MasterDownError,  # MASTERDOWN: a replica lost its primary
    ClusterError,  # too many redirections (a topology that keeps moving)
    RedisClusterException,  # no reachable seed node, slots not covered
)
"""Errors that mean "the store cannot serve right now" (503 `store_unavailable`), never a 500."""


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis being unreachable, timing out or failing over becomes `StoreUnavailable` (503): the one
    translation of Redis errors for store, keys and rate limits."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(f"redis unavailable: {exc}") from exc


def translate_errors(method: Callable[..., T]) -> Callable[..., T]:
    """`redis_errors` around a method."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with redis_errors():
            return method(*args, **kwargs)

    return wrapper


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_seed_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """(seed nodes, connection options) of a `redis+cluster://[user:password@]host:port[,host:port...]` URL."""
    parts = urlsplit(url)
    options: dict[str, Any] = {"ssl": CLUSTER_SCHEMES[parts.scheme.lower()]}
    credentials, _, hosts = parts.netloc.rpartition("@")
    if credentials:
        user, _, password = credentials.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster seed node {host_port!r} is not host:port")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return nodes, options


def connect(url: str, timeout_s: float = 2.0) -> RedisClient:
    """A Redis client (one connection pool, or one per cluster node) for everything a process keeps in Redis.

    Single server: one immediate retry on a broken connection (a restarted Redis leaves stale pooled sockets),
    none on timeouts (a write's outcome is unknown): a call takes at most ~2 x timeout_s.
    Cluster: MOVED/ASK redirections are followed by the client; connection errors, TRYAGAIN and CLUSTERDOWN
    (a failover or resharding in progress) are retried 3 times with a short backoff (50 ms doubling, at most
    0.5 s), the topology re-read in between; then `StoreUnavailable`. A cluster client reads the slot map when
    it is made: no reachable seed node is a `StoreUnavailable` here (the process does not start).
    """
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 15,
        "decode_responses": False,
    }
    if is_cluster_url(url):
        nodes, options = cluster_seed_nodes(url)
        with redis_errors():
            return RedisCluster(
                startup_nodes=nodes,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                **common,
                **options,
            )
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)), **common)


def glob_escape(text: str) -> str:
    """`text` as a literal inside a Redis MATCH pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def node_client(client: RedisClient, key: str) -> redis.Redis:
    """A plain client for the server that holds `key` (the client itself when it is not a cluster)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def primaries(client: RedisClient) -> list[redis.Redis]:
    """A plain client per primary (the client itself when it is not a cluster): what SCAN must visit."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def ping(client: RedisClient) -> None:
    """PING the server; on a cluster, the primaries until one answers. A dead primary (or replica) makes only
    its slots unavailable, so it must not mark every API pod unready: its tenants get 503 meanwhile."""
    if not isinstance(client, RedisCluster):
        client.ping()
        return
    errors: list[BaseException] = []
    for primary in primaries(client):
        try:
            primary.ping()
            return
        except UNAVAILABLE_ERRORS as exc:
            errors.append(exc)
    raise RedisConnectionError(f"no primary answers PING: {errors[-1] if errors else 'no primaries known'}")


def refresh_topology(client: RedisClient) -> None:
    """Re-read the cluster's slot map (after a redirection a node-pinned call could not follow)."""
    if isinstance(client, RedisCluster):
        client.nodes_manager.initialize()
