"""Hedging against a heavy tail: the latency distribution of calls with and without Hedge.

Two replicas of one model, each a FakeProvider whose answers usually take 20-60 ms but three in
a hundred take 0.4-1.2 s (the heavy tail LLM providers show under load). The same calls go
through two Relays over the same two targets, in turns, at the same concurrency:

- ``fallback``: ``Relay(targets=[a, b])``, the default strategy: ``a`` answers every call;
- ``hedge``: ``Relay(targets=[a, b], strategy=Hedge(after_percentile=0.95))``: when ``a`` has
  not answered by the 95th percentile of its recent latencies, ``b`` is asked too.

Printed and written to ``benchmarks/results/hedging.json``: p50, p90, p99 and max latency per
side, the extra requests the hedges cost (as a share of calls, against the 10 % budget), and
hedges fired and won. ``hedging.png`` plots both latency distributions (cumulative, log scale).

The providers run in this process: what is measured is latency the providers inject, which
relaykit's own microseconds do not move. ``--quick`` runs a few calls with the delays scaled
down, to check that the script works.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import figure, percentile, print_table, save, setup, write_results

from relaykit import Hedge, OpenAICompatible, Relay, Target
from relaykit.testing import FakeProvider, RecordedRequest, Reply

TAIL_SHARE = 0.03  # three answers in a hundred are slow
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class HeavyTail:
    """Answer delays: usually 20-60 ms, ``TAIL_SHARE`` of the time 0.4-1.2 s (times ``scale``).

    With 3 % slow, the 95th percentile Hedge waits for is a usual answer and the 99th is slow."""

    seed: int
    scale: float

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def __call__(self, request: RecordedRequest) -> Reply:
        if self._random.random() < TAIL_SHARE:
            delay = self._random.uniform(0.4, 1.2)
        else:
            delay = self._random.uniform(0.02, 0.06)
        return Reply.ok("hi").delayed(delay * self.scale)


async def timed_calls(relay: Relay, calls: int, concurrency: int) -> list[float]:
    """Latency of each of ``calls`` calls, ``concurrency`` at a time."""
    latencies: list[float] = []
    queue = iter(range(calls))

    async def caller() -> None:
        for _ in queue:
            started = time.perf_counter()
            answer = await relay.acomplete(messages=MESSAGES)
            latencies.append(time.perf_counter() - started)
            assert answer.content == "hi"

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


@dataclass(frozen=True)
class Plan:
    """How much to run: delays times ``scale``; ``warm_up`` calls per side, then ``rounds`` of
    ``per_round`` calls per side."""

    scale: float
    warm_up: int
    rounds: int
    per_round: int
    concurrency: int


FULL = Plan(scale=1.0, warm_up=40, rounds=5, per_round=400, concurrency=16)
QUICK = Plan(scale=0.05, warm_up=24, rounds=1, per_round=24, concurrency=8)


async def run(plan: Plan) -> dict[str, Any]:
    scale, rounds, per_round = plan.scale, plan.rounds, plan.per_round
    concurrency = plan.concurrency
    async with FakeProvider() as a, FakeProvider() as b:
        a.default = HeavyTail(seed=1, scale=scale)
        b.default = HeavyTail(seed=2, scale=scale)
        targets = [
            Target(OpenAICompatible(a.url, api_key="sk-bench", model="m"), name="a"),
            Target(OpenAICompatible(b.url, api_key="sk-bench", model="m"), name="b"),
        ]
        hedge = Hedge(after_percentile=0.95)
        sides = {
            "fallback": Relay(targets=targets),
            "hedge": Relay(targets=targets, strategy=hedge),
        }
        latencies: dict[str, list[float]] = {name: [] for name in sides}
        requests = {name: 0 for name in sides}
        # Warm up the hedge's percentile (20 commit times) and both connection pools.
        for relay in sides.values():
            await timed_calls(relay, plan.warm_up, concurrency)
        hedge.stats.fired = hedge.stats.won = hedge.stats.denied = hedge.stats.calls = 0
        for _ in range(rounds):  # in turns, so a slowdown of the machine hits both sides
            for name, relay in sides.items():
                before = a.request_count + b.request_count
                latencies[name] += await timed_calls(relay, per_round, concurrency)
                requests[name] += a.request_count + b.request_count - before
        for relay in sides.values():
            await relay.aclose()
    calls = rounds * per_round
    results: dict[str, Any] = {}
    for name, values in latencies.items():
        ordered = sorted(values)
        results[name] = {
            "calls": calls,
            "requests": requests[name],
            "extra_requests_share": round(requests[name] / calls - 1, 4),
            "p50_ms": percentile(ordered, 50) * 1000,
            "p90_ms": percentile(ordered, 90) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000,
            "latencies_ms": [round(v * 1000, 3) for v in values],
        }
    results["hedge"]["hedges"] = {
        "fired": hedge.stats.fired,
        "won": hedge.stats.won,
        "denied_by_budget": hedge.stats.denied,
        "budget": hedge.budget,
    }
    results["p99_ratio"] = results["fallback"]["p99_ms"] / results["hedge"]["p99_ms"]
    return results


def plot(results: dict[str, Any], args: Any) -> Path:
    fig, ax = figure()
    for name, color in (("fallback", "#d9822b"), ("hedge", "#2b7bba")):
        ordered = sorted(results[name]["latencies_ms"])
        share = [(i + 1) / len(ordered) for i in range(len(ordered))]
        p99 = results[name]["p99_ms"]
        ax.step(ordered, share, where="post", color=color, label=f"{name} (p99 {p99:,.0f} ms)")
        ax.axvline(p99, color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (log scale)")
    ax.set_ylabel("share of calls at or below")
    extra = results["hedge"]["extra_requests_share"] * 100
    ax.set_title(
        f"Heavy-tail provider: Hedge(after_percentile=0.95) vs no hedging (+{extra:.1f} % requests)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return save(fig, "hedging", args)


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    results = asyncio.run(run(QUICK if args.quick else FULL))
    print_table(
        ["side", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms", "extra requests"],
        [
            [
                name,
                results[name]["calls"],
                results[name]["p50_ms"],
                results[name]["p90_ms"],
                results[name]["p99_ms"],
                results[name]["max_ms"],
                f"{results[name]['extra_requests_share'] * 100:.1f} %",
            ]
            for name in ("fallback", "hedge")
        ],
    )
    hedges = results["hedge"]["hedges"]
    print(
        f"p99 without/with hedging: {results['p99_ratio']:.1f}x; hedges fired {hedges['fired']}, "
        f"won {hedges['won']}, refused by the budget {hedges['denied_by_budget']} "
        f"(budget {hedges['budget']:.0%} extra requests)"
    )
    write_results(
        "hedging",
        args,
        results,
        method=(
            "two in-process FakeProviders with the same heavy-tail delays (3 % of answers "
            "0.4-1.2 s, the rest 20-60 ms); the same calls through Fallback and Hedge in turns"
        ),
    )
    plot(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
