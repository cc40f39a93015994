"""Memory: a Relay does not grow per call, and what a Cache entry costs.

1. **Growth per call**: the full pipeline without a cache (Logging, Timeout, Retry, a two-target
   fallback chain with a CircuitBreaker on the first target) over HTTP to ``fast_server.py``
   (its own process), 32 calls in flight. The process's resident memory (RSS, from
   /proc/self/statm, after ``gc.collect()``) is read after 1,000 calls and at checkpoints up to
   100,000. Goal: RSS after 100,000 within 5 MB of RSS after 1,000.
2. **Cache memory per entry**: ``Cache(max_entries=10_000)`` in front of a FunctionBackend
   answering the benchmark server's answer, filled with 10,000 distinct questions; memory per
   entry is what ``tracemalloc`` counts as still allocated after the fill (and, less exactly,
   the RSS difference), divided by 10,000. Another 10,000 distinct questions then show the cache
   evicting instead of growing.

    python benchmarks/memory.py            # ~1 min
    python benchmarks/memory.py --quick    # smoke test: 2,000 calls
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tracemalloc
from typing import Any

import contenders
import fast_server
from harness import figure, print_table, save, setup, write_results

CALLS = 100_000
CHECKPOINTS = (1_000, 10_000, 25_000, 50_000, 75_000, 100_000)
QUICK_CHECKPOINTS = (200, 1_000, 2_000)
CONCURRENCY = 32
ENTRIES = 10_000
GOAL_GROWTH_MB = 5.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident memory now (not the peak), after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


async def growth(url: str, checkpoints: tuple[int, ...]) -> dict[str, Any]:
    from relaykit import CircuitBreaker, Logging, OpenAICompatible, Relay, Retry, Target, Timeout

    key, model = contenders.API_KEY, contenders.MODEL
    relay = Relay(
        targets=[
            Target(
                OpenAICompatible(url, api_key=key, model=model, name="primary"),
                middleware=[CircuitBreaker()],
            ),
            OpenAICompatible(url, api_key=key, model=model, name="secondary"),
        ],
        middleware=[Logging(), Timeout(total_s=30), Retry(attempts=3)],
    )
    done = 0
    answered: dict[str, int] = {}

    async def worker(until: int) -> None:
        nonlocal done
        while done < until:
            done += 1
            answer = await relay.acomplete(messages=contenders.distinct_prompt(done))
            target = answer.relay.target if answer.relay else None
            answered[str(target)] = answered.get(str(target), 0) + 1

    samples = []
    try:
        for checkpoint in checkpoints:
            await asyncio.gather(*(worker(checkpoint) for _ in range(CONCURRENCY)))
            samples.append({"calls": done, "rss_mb": rss_mb()})
            print(f"  {done:>7,} calls: RSS {samples[-1]['rss_mb']:.1f} MB", flush=True)
    finally:
        await relay.aclose()
    first, last = samples[0], samples[-1]
    return {
        "pipeline": "Logging, Timeout(total_s=30), Retry(attempts=3), Target(primary, "
        "[CircuitBreaker()]), secondary; a new prompt per call",
        "samples": samples,
        "answered_by": answered,
        "growth_mb": last["rss_mb"] - first["rss_mb"],
        "from_calls": first["calls"],
        "to_calls": last["calls"],
    }


async def cache_entries(entries: int) -> dict[str, Any]:
    from relaykit import Cache, ChatCompletion, FunctionBackend, Relay

    answer = ChatCompletion.model_validate(fast_server.COMPLETION)

    async def respond(request: Any) -> ChatCompletion:
        return answer

    cache = Cache(max_entries=entries)
    relay = Relay(targets=[FunctionBackend(respond)], middleware=[cache])
    await relay.acomplete(messages=contenders.distinct_prompt(-1))  # everything imported, built
    await asyncio.sleep(0)  # real-time: the cache writes in a background task
    rss_before = rss_mb()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    for i in range(entries):
        await relay.acomplete(messages=contenders.distinct_prompt(i))
    await asyncio.sleep(0.01)  # real-time: let the last background writes land
    gc.collect()
    traced_full = tracemalloc.get_traced_memory()[0]
    rss_full = rss_mb()
    for i in range(entries, 2 * entries):  # as many again: the cache evicts, it does not grow
        await relay.acomplete(messages=contenders.distinct_prompt(i))
    await asyncio.sleep(0.01)  # real-time: as above
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stored = len(cache.store)  # type: ignore[arg-type]
    await relay.aclose()
    return {
        "max_entries": entries,
        "entries_after_fill": entries,
        "entries_after_twice_as_many": stored,
        "bytes_per_entry_traced": (traced_full - traced_before) / entries,
        "bytes_per_entry_rss": (rss_full - rss_before) * 2**20 / entries,
        "traced_mb_full": (traced_full - traced_before) / 2**20,
        "traced_mb_after_twice_as_many": (traced_after - traced_before) / 2**20,
        "answer_json_bytes": len(answer.model_dump_json(exclude_none=True)),
    }


def report(results: dict[str, Any]) -> None:
    g, c = results["growth"], results["cache"]
    print_table(["calls", "RSS MB"], [[s["calls"], s["rss_mb"]] for s in g["samples"]])
    met = "MET" if g["growth_mb"] <= GOAL_GROWTH_MB else "NOT MET"
    print(
        f"  >>> RSS after {g['to_calls']:,} calls is {g['growth_mb']:+.2f} MB from RSS after "
        f"{g['from_calls']:,} (goal within {GOAL_GROWTH_MB:.0f} MB: {met})"
    )
    print(
        f"  >>> Cache(max_entries={c['max_entries']:,}): {c['bytes_per_entry_traced']:,.0f} bytes "
        f"per entry (tracemalloc; RSS says {c['bytes_per_entry_rss']:,.0f}) for a "
        f"{c['answer_json_bytes']}-byte answer; {c['traced_mb_full']:.1f} MB full, "
        f"{c['traced_mb_after_twice_as_many']:.1f} MB after twice as many questions "
        f"({c['entries_after_twice_as_many']:,} entries kept)"
    )
    print()


def plot(results: dict[str, Any]) -> Any:
    fig, ax = figure(8, 4.5)
    samples = results["growth"]["samples"]
    ax.plot([s["calls"] for s in samples], [s["rss_mb"] for s in samples], marker="o")
    low = min(s["rss_mb"] for s in samples)
    ax.set_ylim(low - 10, low + 20)
    ax.set_xlabel("calls through the full pipeline (HTTP, 32 in flight)")
    ax.set_ylabel("RSS MB (after gc.collect())")
    c = results["cache"]
    ax.set_title(
        f"RSS {results['growth']['growth_mb']:+.1f} MB from {samples[0]['calls']:,} to "
        f"{samples[-1]['calls']:,} calls; a cache entry ~{c['bytes_per_entry_traced']:,.0f} B",
        fontsize=10,
    )
    ax.grid(alpha=0.25)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    contenders.configure_structlog()
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    print("calls through the full pipeline ...", flush=True)
    with fast_server.start() as url:
        grown = asyncio.run(growth(url, checkpoints))
    print("filling a cache ...", flush=True)
    cached = asyncio.run(cache_entries(1_000 if args.quick else ENTRIES))
    results = {"growth": grown, "cache": cached}
    report(results)
    path = write_results(
        "memory",
        args,
        results,
        method=(
            "RSS from /proc/self/statm after gc.collect() at call checkpoints (HTTP, 32 in "
            "flight); cache entry size from tracemalloc after filling Cache(max_entries) "
            "with distinct questions"
        ),
        compared=["aiohttp", "pydantic", "cachetools"],
    )
    print(f"wrote {path} and {save(plot(results), 'memory', args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
