"""What relaykit adds to a stream: time to first token, and cost per chunk on a long stream.

Against the same server (``fast_server.py``, its own process), one stream at a time:

- **time to first token**: a short stream (8 content chunks); each call measures the time from
  the call until its first chunk with text. Added TTFT = relaykit's median minus the bare
  aiohttp SSE loop's median (the loop a hand-written client runs: ``async for line in
  r.content``, ``json.loads`` of every ``data:`` line).
- **per chunk**: a 2,000-chunk stream read to the end; chunks/s and µs per chunk (the whole
  stream's time divided by its 2,000 chunks). Overhead per chunk = relaykit's µs per chunk
  minus the bare loop's. The server sends the stream as fast as the socket takes it, so the
  client's parsing, not the network, decides the rate.

The openai SDK and ``litellm.acompletion`` are measured the same way, for reference. Sides take
rounds in turns (harness.in_turns); figures are medians.

    python benchmarks/streaming.py            # ~1 min
    python benchmarks/streaming.py --quick    # smoke test
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

import contenders
import fast_server
from harness import (
    figure,
    grouped_bars,
    import_litellm,
    in_turns,
    print_table,
    save,
    setup,
    write_results,
)

LONG = 2_000
QUICK_LONG = 100  # the smoke test reads a short "long" stream: LiteLLM takes ~0.5 ms a chunk
GOAL_TTFT_MS = 0.2
GOAL_PER_CHUNK_US = 2.0
BUILDERS = {
    "bare aiohttp": contenders.bare_aiohttp,
    "relaykit": contenders.relaykit,
    "openai SDK": contenders.openai_sdk,
    "litellm.acompletion": contenders.litellm_acompletion,
}


async def measure(url: str, *, quick: bool) -> dict[str, Any]:
    short = contenders.stream_text(fast_server.STREAM_CHUNKS)
    print("measuring time to first token ...", flush=True)
    first = [
        build(url, stream=True, concurrency=1, expected=short, first_token=True)
        for build in BUILDERS.values()
    ]
    ttft_stats = await in_turns(first, quick=quick)
    ttft: dict[str, Any] = {}
    for side in first:
        stats = ttft_stats[side.label]
        if isinstance(stats, str):
            ttft[side.label] = stats
            continue
        times = sorted(ns / 1e6 for _, ns in side.results)
        ttft[side.label] = {
            "ttft_ms_p50": statistics.median(times),
            "ttft_ms_p99": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
            "stream_us": stats["us_per_call"],
            "streams": len(times),
        }

    chunks = QUICK_LONG if quick else LONG
    print(f"measuring a {chunks:,}-chunk stream ...", flush=True)
    long_url = url.replace("/v1", f"/chunks/{chunks}/v1")
    expected = contenders.stream_text(chunks)
    long_sides = [
        build(long_url, stream=True, concurrency=1, expected=expected)
        for build in BUILDERS.values()
    ]
    for side in long_sides:
        side.n = 3 if quick else 0  # else sized by the harness: ~0.4 s of streams per round
    long_stats = await in_turns(long_sides, quick=quick, round_s=0.6)
    per_chunk: dict[str, Any] = {}
    for label, stats in long_stats.items():
        if isinstance(stats, str):
            per_chunk[label] = stats
            continue
        per_chunk[label] = {
            "us_per_chunk": stats["us_per_call"] / chunks,
            "chunks_per_s": stats["calls_per_s"] * chunks,
            "cpu_us_per_chunk": stats["cpu_us_per_call"] / chunks,
            "stream_ms": stats["us_per_call"] / 1000,
            "streams": stats["calls"],
        }
    return {
        "ttft": ttft,
        "per_chunk": per_chunk,
        "long_stream_chunks": chunks,
        **verdicts(ttft, per_chunk),
    }


def verdicts(ttft: dict[str, Any], per_chunk: dict[str, Any]) -> dict[str, float | None]:
    bare, rk = ttft.get("bare aiohttp"), ttft.get("relaykit")
    added = (
        rk["ttft_ms_p50"] - bare["ttft_ms_p50"]
        if isinstance(bare, dict) and isinstance(rk, dict)
        else None
    )
    bare_c, rk_c = per_chunk.get("bare aiohttp"), per_chunk.get("relaykit")
    overhead = (
        rk_c["us_per_chunk"] - bare_c["us_per_chunk"]
        if isinstance(bare_c, dict) and isinstance(rk_c, dict)
        else None
    )
    ratio = (
        rk_c["chunks_per_s"] / bare_c["chunks_per_s"]
        if isinstance(bare_c, dict) and isinstance(rk_c, dict)
        else None
    )
    return {
        "added_ttft_ms": added,
        "overhead_us_per_chunk": overhead,
        "chunks_per_s_ratio": ratio,
    }


def report(results: dict[str, Any]) -> None:
    rows = []
    for label in BUILDERS:
        t, c = results["ttft"][label], results["per_chunk"][label]
        rows.append(
            [
                label,
                t["ttft_ms_p50"] if isinstance(t, dict) else "skipped",
                t["ttft_ms_p99"] if isinstance(t, dict) else "skipped",
                c["us_per_chunk"] if isinstance(c, dict) else "skipped",
                c["chunks_per_s"] if isinstance(c, dict) else "skipped",
            ]
        )
    long = results["long_stream_chunks"]
    print_table(["client", "TTFT ms p50", "TTFT ms p99", f"µs/chunk ({long:,})", "chunks/s"], rows)
    added, overhead = results["added_ttft_ms"], results["overhead_us_per_chunk"]
    if added is not None:
        met = "MET" if added <= GOAL_TTFT_MS else "NOT MET"
        print(
            f"  >>> relaykit adds {added:.3f} ms to the time to first token "
            f"(goal <= {GOAL_TTFT_MS} ms: {met})"
        )
    if overhead is not None:
        met = "MET" if overhead <= GOAL_PER_CHUNK_US else "NOT MET"
        print(
            f"  >>> relaykit adds {overhead:.2f} µs per chunk on a {long:,}-chunk stream, "
            f"{results['chunks_per_s_ratio']:.2f}x the bare loop's chunks/s "
            f"(goal <= {GOAL_PER_CHUNK_US} µs: {met})"
        )
    for part in ("ttft", "per_chunk"):
        for label, stats in results[part].items():
            if isinstance(stats, str):
                print(f"  {part}: {label} skipped: {stats}")
    print()


def plot(results: dict[str, Any]) -> Any:
    fig, (left, right) = figure(11, 4.8, ncols=2)
    labels = [label for label in BUILDERS if isinstance(results["ttft"][label], dict)]
    grouped_bars(
        left,
        ["time to first token"],
        {label: [results["ttft"][label]["ttft_ms_p50"]] for label in labels},
        fmt="{:.2f} ms",
    )
    left.set_ylabel("ms (median)")
    left.legend(fontsize=8)
    chunked = [label for label in BUILDERS if isinstance(results["per_chunk"][label], dict)]
    grouped_bars(
        right,
        [f"µs per chunk, {results['long_stream_chunks']:,}-chunk stream"],
        {label: [results["per_chunk"][label]["us_per_chunk"]] for label in chunked},
        fmt="{:.1f} µs",
    )
    right.set_yscale("log")
    right.set_ylabel("µs per chunk (log)")
    fig.suptitle("Streams: what each client adds (local server, its own process)", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    import_litellm()
    with fast_server.start() as url:
        results = asyncio.run(measure(url, quick=args.quick))
    report(results)
    path = write_results(
        "streaming",
        args,
        results,
        method=(
            "server in its own process; one stream at a time; rounds in turns; TTFT = ns from "
            "the call to its first chunk with text, median of all timed streams; per chunk = "
            f"median over rounds of a {LONG}-chunk stream's wall time / {LONG}"
        ),
        compared=["aiohttp", "openai", "litellm"],
        short_stream_chunks=fast_server.STREAM_CHUNKS,
    )
    print(f"wrote {path} and {save(plot(results), 'streaming', args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
