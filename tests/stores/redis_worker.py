"""One OS process of a multi-process Redis test: ``python redis_worker.py '<json job>'``.

It builds a Relay whose middleware shares state through ``RedisStore``, prints ``ready``,
waits for ``go`` on stdin (so that every process starts at once), runs the job's calls
against the FakeProvider the test runs, and prints one JSON line of what it saw. Every loop is
bounded by a count or by ``seconds``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from relaykit import (
    Budget,
    BudgetExceededError,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    LocalRateLimitError,
    OpenAICompatible,
    Price,
    RateLimit,
    Relay,
    RelayError,
    Target,
)
from relaykit.contract.events import Event, StoreDegraded
from relaykit.stores.redis import RedisStore


async def main(job: dict[str, Any]) -> dict[str, Any]:
    store = RedisStore(job["redis_url"], prefix=job["prefix"], timeout_s=job["timeout_s"])
    kind = job["kind"]
    layers: list[Any] = []
    outer: list[Any] = []
    if kind == "rate":
        layers.append(RateLimit(rpm=job["rpm"], store=store))
    elif kind == "breaker":
        layers.append(
            CircuitBreaker(failures=job["failures"], cooldown_s=job["cooldown_s"], store=store)
        )
    elif kind == "cache":
        outer.append(Cache(store=store))
    elif kind == "budget":
        outer.append(Budget(limit_usd=job["limit_usd"], per="all", name="shared", store=store))
    events: list[Event] = []
    backend = OpenAICompatible(job["provider_url"], api_key="sk-test", model="m")
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0)  # a token costs a micro-dollar
    limits = {"max_tokens": job["max_tokens"]} if "max_tokens" in job else {}
    relay = Relay(
        targets=[Target(backend, name="primary", middleware=layers, price=price)],
        middleware=outer,
        listeners=[events.append],
    )
    outcomes: dict[str, int] = {}
    last_ok = 0.0

    async def call(text: str) -> str:
        nonlocal last_ok
        try:
            answer = await relay.acomplete(messages=[{"role": "user", "content": text}], **limits)
            outcome = "cached" if answer.relay is not None and answer.relay.cached else "ok"
            last_ok = time.time()
        except LocalRateLimitError:
            outcome = "rate_limited"
        except CircuitOpenError:
            outcome = "circuit_open"
        except BudgetExceededError:
            outcome = "budget_exceeded"
        except RelayError as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcome

    async def hammer(until: float) -> None:
        # Until refused three times in a row (the limit is used up), or the time is up.
        refused = 0
        while refused < 3 and time.monotonic() < until:
            outcome = await call("hello")
            refused = refused + 1 if outcome in ("rate_limited", "budget_exceeded") else 0

    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    started = time.time()  # wall clock: the processes of one test share a host
    if "seconds" in job:  # concurrent loops, each calling again until refused or out of time
        until = time.monotonic() + job["seconds"]
        await asyncio.gather(*(hammer(until) for _ in range(job["concurrency"])))
    else:  # this many concurrent calls, once
        await asyncio.gather(*(call(job.get("text", "hello")) for _ in range(job["calls"])))
    await relay.aclose()
    await store.aclose()
    degraded = [e.error for e in events if isinstance(e, StoreDegraded)]
    return {"outcomes": outcomes, "degraded": degraded, "started": started, "last_ok": last_ok}


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
