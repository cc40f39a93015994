"""Redis-backed cache hits and rate-limit checks next to the in-process ones, and one shared
limit across processes next to LiteLLM's Router with ``redis_host``.

Part 1, the cost of a decision (one process, rounds in turns, the harness's method):

  cache hit, memory      Relay(FunctionBackend(noop), middleware=[Cache()]), one prompt repeated
  cache hit, Redis       the same with Cache(store=RedisStore(url))
  rate check, memory     Relay(Target(noop, middleware=[RateLimit(rpm=10**9)]))
  rate check, Redis      the same with RateLimit(rpm=10**9, store=RedisStore(url))
  Redis round trip       redis-py's own PING on the same loop: one loopback round trip

Goals: one Redis round trip per decision (the commands clients sent, as the server counts
them: ``commands_per_call``), and a Redis cache hit costing at most one round trip plus 20 µs
more than the in-process hit.

Part 2, a shared limit (several OS processes at once, each calling as fast as it can for a
while, counted at one FakeProvider): relaykit's RateLimit(rpm=60, store=RedisStore) and
LiteLLM's Router with ``rpm: 60`` on its deployment and ``redis_host``/``redis_port`` set
(``routing_strategy="usage-based-routing-v2"``, LiteLLM's Redis-backed rpm/tpm routing).
Printed: how many requests each let through, against the 60 (+1 a second of refill) allowed.

    python benchmarks/redis_store.py            # ~1 min (LiteLLM imports in every process)
    python benchmarks/redis_store.py --quick    # smoke test: tiny rounds, relaykit's side only
    python benchmarks/redis_store.py --out DIR  # where redis_store.json and .png go

The benchmark runs its own redis-server on a free loopback port (the binary must exist; `make
test` installs it), so the server's command counts are this run's alone.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    WORKER_JOB: dict[str, Any] | None = json.loads(sys.argv[2])
else:
    WORKER_JOB = None
    from harness import Side, in_turns, print_table, save, setup, write_results

PROMPT = [{"role": "user", "content": "Say hi."}]
HERE = str(Path(__file__).resolve().parent)
SHARED_RPM = 60


# --- a private redis-server ---------------------------------------------------------------------


class Server:
    """redis-server on a free loopback port, for this run only."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is missing: apt-get install redis-server")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.directory = tempfile.mkdtemp(prefix="relaykit-bench-redis-")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 10
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # real-time: the server is starting

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def round_trips(self) -> int:
        """Commands clients sent so far (scripts, pings, loads), not those scripts ran inside."""
        import redis

        with redis.Redis(port=self.port, socket_timeout=5) as client:
            stats = client.info("commandstats")
        sent = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_ping", "cmdstat_script|load")
        return sum(int(stats[name]["calls"]) for name in sent if name in stats)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


# --- part 1: the cost of one decision -----------------------------------------------------------


def _completion() -> Any:
    from relaykit import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}
            ],
        }
    )  # fmt: skip


def _relay_side(label: str, layers: dict[str, list[Any]], stores: list[Any]) -> Side:
    from relaykit import FunctionBackend, Relay, Target

    answer = _completion()

    async def noop(request: Any) -> Any:
        return answer

    relay = Relay(
        targets=[Target(FunctionBackend(noop), name="noop", middleware=layers.get("target", []))],
        middleware=layers.get("outer", []),
    )

    async def call(i: int) -> Any:
        return await relay.acomplete(messages=PROMPT)

    async def close() -> None:
        await relay.aclose()
        for store in stores:
            await store.aclose()

    def check(result: Any) -> str | None:
        if "Cache" in label and not (result.relay and result.relay.cached):
            return "the cache-hit side did not hit"
        return None

    return Side(label, call, check=check, close=close)


def _ping_side(url: str) -> Side:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)

    async def call(i: int) -> Any:
        return await client.ping()

    async def close() -> None:
        await client.aclose()

    return Side("Redis round trip (redis-py PING)", call, close=close)


async def decisions(server: Server, quick: bool) -> dict[str, Any]:
    from relaykit import Cache, RateLimit
    from relaykit.stores.redis import RedisStore

    def store() -> RedisStore:
        return RedisStore(server.url, prefix=f"bench:{uuid.uuid4().hex[:8]}:")

    cache_store, limit_store = store(), store()
    sides = {
        "cache hit, memory": _relay_side("Cache, memory", {"outer": [Cache()]}, []),
        "cache hit, Redis": _relay_side(
            "Cache, Redis", {"outer": [Cache(store=cache_store)]}, [cache_store]
        ),
        "rate check, memory": _relay_side(
            "RateLimit, memory", {"target": [RateLimit(rpm=10**9)]}, []
        ),
        "rate check, Redis": _relay_side(
            "RateLimit, Redis",
            {"target": [RateLimit(rpm=10**9, store=limit_store)]},
            [limit_store],
        ),
        "Redis round trip": _ping_side(server.url),
    }
    for label, side in sides.items():
        side.label = label
    # Round trips per decision, as the server counts them: 100 warm calls of each Redis side.
    commands: dict[str, float] = {}
    for label in ("cache hit, Redis", "rate check, Redis", "Redis round trip"):
        await sides[label].call(0)
        before = server.round_trips()
        for i in range(100):
            await sides[label].call(i)
        commands[label] = (server.round_trips() - before) / 100
    measured = await in_turns(list(sides.values()), quick=quick)
    return {"sides": dict(measured), "commands_per_call": commands}


# --- part 2: one limit shared by several processes ----------------------------------------------


async def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One process of the shared-limit scenario: calls as fast as it can for ``seconds``."""
    outcomes: dict[str, int] = {}
    # Every side warms up (imports, connections) under a limit of its own ("warm"), so that
    # the shared 60 rpm counts only the calls made after "go".
    if job["side"] == "relaykit":
        from relaykit import OpenAICompatible, RateLimit, Relay, RelayError, Target
        from relaykit.stores.redis import RedisStore

        store = RedisStore(job["redis_url"], prefix=job["prefix"], timeout_s=1.0)
        backend = OpenAICompatible(job["provider_url"], api_key="sk-test", model="m")
        limit = RateLimit(rpm=SHARED_RPM, store=store)
        relay = Relay(
            targets=[Target(backend, name="primary", middleware=[limit])],
            routes={"warm": [Target(backend, name="warm", middleware=[RateLimit(rpm=10**6)])]},
        )

        async def call(model: str = "m") -> str:
            try:
                await relay.acomplete(model=model, messages=PROMPT)
                return "ok"
            except RelayError:
                return "refused"

        async def close() -> None:
            await relay.aclose()
            await store.aclose()
    else:
        sys.path.insert(0, HERE)
        from harness import import_litellm, litellm_offline

        litellm_offline()
        import_litellm()
        from litellm import Router

        router = Router(
            model_list=[
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": "openai/m",
                        "api_base": job["provider_url"],
                        "api_key": "sk-test",
                        "rpm": rpm,
                    },
                }
                for name, rpm in (("m", SHARED_RPM), ("warm", 10**6))
            ],
            redis_host="127.0.0.1",
            redis_port=job["redis_port"],
            routing_strategy="usage-based-routing-v2",
            num_retries=0,
        )

        async def call(model: str = "m") -> str:
            try:
                await router.acompletion(model=model, messages=PROMPT)
                return "ok"
            except Exception:  # LiteLLM's RateLimitError "no deployments available", ...
                return "refused"

        async def close() -> None:
            return None

    await call("warm")  # imports and connections, before the shared limit's clock starts
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    until = time.monotonic() + job["seconds"]

    async def loop() -> None:
        while time.monotonic() < until:
            outcome = await call()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(loop() for _ in range(job["concurrency"])))
    await close()
    return outcomes


def shared_limit(side: str, server: Server, processes: int, seconds: float) -> dict[str, Any]:
    """Run ``processes`` workers of ``side`` against one FakeProvider; count what got through."""
    from relaykit.testing import FakeProvider

    with FakeProvider() as provider:
        job = {
            "side": side,
            "provider_url": provider.url,
            "redis_url": server.url,
            "redis_port": server.port,
            "prefix": f"bench:{uuid.uuid4().hex[:8]}:",
            "seconds": seconds,
            "concurrency": 4,
        }
        started = time.monotonic()
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(job)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        try:
            deadline = time.monotonic() + 180
            for child in children:
                if _line(child, deadline) != "ready":
                    raise RuntimeError("a worker did not start")
            warm = provider.request_count  # one warm-up call per process, under its own limit
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            go = time.monotonic()
            outcomes = [json.loads(_line(child, deadline)) for child in children]
            span = time.monotonic() - go
            sent = provider.request_count - warm
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                child.wait()
    return {
        "processes": processes,
        "seconds": round(span, 2),
        "let_through": sent,
        "allowed": SHARED_RPM + int(span * SHARED_RPM / 60),
        "refused": sum(o.get("refused", 0) for o in outcomes),
        "startup_s": round(go - started, 1),
    }


def _line(child: subprocess.Popen[str], deadline: float) -> str:
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(deadline - time.monotonic(), 0.0)):
            raise RuntimeError("a worker gave no answer in time")
    line = child.stdout.readline()
    if not line:
        assert child.stderr is not None
        raise RuntimeError(f"a worker ended early: {child.stderr.read()[-2000:]}")
    return line.strip()


# --- report ---------------------------------------------------------------------------------


def main() -> None:
    args = setup(__doc__)
    server = Server()
    try:
        part1 = asyncio.run(decisions(server, args.quick))
        # --quick leaves LiteLLM out: importing it takes seconds in every process.
        processes, seconds = (2, 0.3) if args.quick else (4, 3.0)
        sides_run = ("relaykit",) if args.quick else ("relaykit", "litellm")
        part2 = {side: shared_limit(side, server, processes, seconds) for side in sides_run}
    finally:
        server.stop()
    sides = part1["sides"]
    rows = []
    for label, stats in sides.items():
        if isinstance(stats, str):
            rows.append((label, None, None, None, stats))
        else:
            rows.append(
                (label, stats["us_per_call"], stats["cpu_us_per_call"], stats["p99_us"], "")
            )
    print_table(["decision", "µs/call", "CPU µs/call", "p99 µs", "skipped"], rows)
    verdict: dict[str, Any] = {"commands_per_call": part1["commands_per_call"]}
    if all(
        isinstance(sides[k], dict)
        for k in ("cache hit, memory", "cache hit, Redis", "Redis round trip")
    ):
        extra = sides["cache hit, Redis"]["us_per_call"] - sides["cache hit, memory"]["us_per_call"]
        trip = sides["Redis round trip"]["us_per_call"]
        verdict.update(
            redis_hit_extra_us=extra,
            round_trip_us=trip,
            hit_over_round_trip_us=extra - trip,
            hit_goal_met=extra <= trip + 20,
        )
        print(
            f"Redis cache hit: +{extra:.1f} µs over the in-process hit; one round trip is "
            f"{trip:.1f} µs, so +{extra - trip:.1f} µs beyond it (goal: at most +20 µs)"
        )
    for label, count in part1["commands_per_call"].items():
        print(f"{label}: {count:.2f} Redis round trips per call (goal: 1)")
    print_table(
        ["shared 60-rpm limit", "processes", "seconds", "let through", "allowed", "refused"],
        [
            (side, r["processes"], r["seconds"], r["let_through"], r["allowed"], r["refused"])
            for side, r in part2.items()
        ],
    )
    for side, r in part2.items():
        print(f"{side}: let {r['let_through']} requests through; the limit allowed {r['allowed']}")
    write_results(
        "redis_store",
        args,
        {"decisions": sides, "verdict": verdict, "shared_limit": part2},
        method=(
            "part 1: harness rounds in turns on one event loop against a private loopback "
            "redis-server; part 2: OS processes calling one FakeProvider for a fixed time"
        ),
        compared=("redis", "litellm"),
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    labels = [k for k, v in sides.items() if isinstance(v, dict)]
    left.barh(labels, [sides[k]["us_per_call"] for k in labels], color="#2b7bba")
    left.set_xlabel("µs per call (median of rounds)")
    left.set_title("one decision")
    left.invert_yaxis()
    names = list(part2)
    right.bar(
        names, [part2[n]["let_through"] for n in names], color=["#2b7bba", "#d9822b"][: len(names)]
    )
    right.axhline(part2[names[0]]["allowed"], color="black", linestyle="--", label="allowed")
    right.set_ylabel("requests let through")
    right.set_title(f"one {SHARED_RPM}-rpm limit, {part2[names[0]]['processes']} processes")
    right.legend()
    save(fig, "redis_store", args)


if __name__ == "__main__":
    if WORKER_JOB is not None:
        print(json.dumps(asyncio.run(worker(WORKER_JOB))), flush=True)
    else:
        main()
