"""Private redis-server processes for tests that kill, pause or cluster their own Redis.

Every start is bounded in time and every process is killed by whoever started it. Servers
work in directories of their own, not pytest's tmp_path: several pytest sessions on one
machine prune each other's old tmp_path folders, which would pull a folder from under a
running server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from relaykit.stores.redis import RedisStore

StoreFactory = Callable[..., RedisStore]

START_TIMEOUT_S = 10.0


def free_port(*, also_free_above: int = 0) -> int:
    """A free loopback port; with ``also_free_above``, one whose port that much higher is free
    too (a cluster node listens on its port + 10000 for its bus, which must stay below 65536)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not also_free_above:
            return port
        if port + also_free_above < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + also_free_above))
                except OSError:
                    continue
            return port
    raise AssertionError("no free pair of loopback ports found")


def redis_binary() -> str:
    found = shutil.which("redis-server")
    assert found is not None, (
        "the redis-server binary is missing: `make test` installs it (scripts/ensure-redis.sh)"
    )
    return found


def wait_until_answers(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
        while True:
            try:
                client.ping()
                return
            except redis.AuthenticationError:  # it answers: with "authenticate first"
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # real-time: a server process is starting


class PrivateRedis:
    """One redis-server on its own loopback port, which a test may stop and start again."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="relaykit-redis-"))
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_answers(self.port)

    def kill(self) -> None:
        """Stop the server at once, as a crash would (its data goes with it)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


class Cluster:
    """Three redis-server nodes in cluster mode on loopback ports, no replicas."""

    def __init__(self) -> None:
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        self.nodes = [
            PrivateRedis(*extra, port=free_port(also_free_above=10_000)) for _ in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in self.nodes:
            with node.client() as client:
                while client.cluster("info").get("cluster_state") != "ok":
                    assert time.monotonic() < deadline, "the test cluster did not become ready"
                    time.sleep(0.05)  # real-time: the nodes agree on slots

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
