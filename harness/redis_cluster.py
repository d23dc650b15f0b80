"""A real local Redis Cluster: 3 primaries + 3 replicas (`redis-server --cluster-enabled yes`, `redis-cli --cluster
create`), for tests and benchmarks; nodes can be killed and replicas promoted to exercise a failover."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from harness.ports import free_port
from harness.redis_proc import INSTALL_HINT, reachable


@dataclass
class ClusterNodeProcess:
    """One cluster node's process, port and data folder."""

    port: int
    data_dir: Path
    command: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def info(self, section: str) -> dict:
        return self.client().info(section)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """3 primaries, each with one replica, on free loopback ports (`redis+cluster://` URL)."""

    root: Path
    node_timeout_ms: int = 2000
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes if node.alive)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start 6 nodes, join them with `redis-cli --cluster create`, wait for `cluster_state:ok` everywhere."""
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError(INSTALL_HINT)
        for index in range(6):
            data_dir = self.root / f"node{index}"
            data_dir.mkdir(parents=True, exist_ok=True)
            node = ClusterNodeProcess(port=free_port(), data_dir=data_dir)
            node.command = [
                binary,
                *("--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(data_dir)),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-port", str(free_port())),  # the bus port (default port + 10000 may not exist)
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--repl-diskless-sync-delay", "0"),
            ]
            node.launch()
            self.nodes.append(node)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while not reachable(f"redis://127.0.0.1:{node.port}/0"):
                if not node.alive or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"cluster node on port {node.port} did not start")
                time.sleep(0.05)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
        )
        self.wait_until_ok(deadline - time.monotonic())

    def wait_until_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node reports `cluster_state:ok` and knows every slot's primary, and every replica's
        link to its primary is up (initial sync done)."""
        deadline = time.monotonic() + timeout_s
        while not all(self._node_ok(node) for node in self.nodes if node.alive):
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    @staticmethod
    def _node_ok(node: ClusterNodeProcess) -> bool:
        try:
            info = node.client().cluster("info")
            replication = node.info("replication")
        except (redis.RedisError, OSError):
            return False
        synced = replication.get("role") == "master" or replication.get("master_link_status") == "up"
        return synced and info.get("cluster_state") == "ok" and int(info.get("cluster_slots_ok", 0)) == 16384

    def primary_for(self, key: str) -> ClusterNodeProcess:
        """The node that serves `key`'s slot as primary (per a live node's `CLUSTER SLOTS`)."""
        client = self.live_node().client()
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"no primary serves slot {slot}")

    def replica_of(self, primary: ClusterNodeProcess) -> ClusterNodeProcess:
        """A live replica of `primary` (by its replication info)."""
        for node in self.nodes:
            if node is not primary and node.alive:
                replication = node.info("replication")
                if replication.get("role") == "slave" and int(replication.get("master_port", -1)) == primary.port:
                    return node
        raise LookupError(f"no live replica of port {primary.port}")

    def live_node(self) -> ClusterNodeProcess:
        return next(node for node in self.nodes if node.alive)

    def kill(self, node: ClusterNodeProcess) -> None:
        """SIGKILL a node (a crash: no handover)."""
        if node.process is not None and node.alive:
            node.process.kill()
            node.process.wait(timeout=10)

    def freeze(self, node: ClusterNodeProcess) -> None:
        """SIGSTOP: the node holds its connections but answers nothing (a stalled replica or primary)."""
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGSTOP)

    def thaw(self, node: ClusterNodeProcess) -> None:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGCONT)

    def restart(self, node: ClusterNodeProcess, timeout_s: float = 20.0) -> None:
        """Start a killed node again (same ports and nodes.conf): it rejoins, as a replica of whoever took over
        its slots; returns once the cluster is ok and replicas are in sync."""
        node.launch()
        self.wait_until_ok(timeout_s)

    def promote(self, replica: ClusterNodeProcess, timeout_s: float = 20.0) -> None:
        """`CLUSTER FAILOVER FORCE` on a replica whose primary is gone (unless the cluster's own failover, after
        `node_timeout_ms`, promoted it already), then wait for `cluster_state:ok`."""
        if replica.info("replication").get("role") != "master":
            replica.client().execute_command("CLUSTER", "FAILOVER", "FORCE")
        deadline = time.monotonic() + timeout_s
        while replica.info("replication").get("role") != "master":
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {replica.port} was not promoted")
            time.sleep(0.05)
        self.wait_until_ok(max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                self.thaw(node)
                node.process.terminate()
                node.process.wait(timeout=10)


@contextmanager
def local_cluster(node_timeout_ms: int = 2000) -> Iterator[LocalCluster]:
    """A started 3+3 node cluster in a temporary folder; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="fewshot-cluster-") as tmp:
        cluster = LocalCluster(Path(tmp), node_timeout_ms=node_timeout_ms)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
