"""Requests per second through relaykit next to the bare aiohttp call, the openai SDK and LiteLLM.

The server (``fast_server.py``) runs in its own process and answers from memory, so what is
measured is each client's own cost per request; how fast the server is alone (a raw-socket
client that only counts bytes) is printed first: it must be far above every client.

Every client makes the same call to the same server — plain (JSON answer) and streamed (SSE,
8 content chunks + finish + usage) — at concurrency 1, 32 and 256 (that many calls in flight,
each its own task, one connection pool per client with its default limits). Per setting, the
clients take rounds in turns (harness.in_turns): a round lasts ~0.4 s; figures are medians over
5 rounds. Ratios are requests/s of relaykit divided by the other client's.

    python benchmarks/throughput.py            # ~2-3 min
    python benchmarks/throughput.py --quick    # plain at 32, streamed at 1, tiny rounds
"""

from __future__ import annotations

import asyncio
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

CONCURRENCY = (1, 32, 256)
GOALS = {"relaykit": 0.9, "relaykit full pipeline": 0.8}


async def measure(url: str, *, quick: bool) -> dict[str, Any]:
    server_alone = {
        f"{'streamed' if stream else 'plain'} c={c}": await fast_server.loadgen(
            url, concurrency=c, seconds=0.1 if quick else 1.0, stream=stream
        )
        for stream in (False, True)
        for c in (32, 256)
    }
    settings: list[dict[str, Any]] = []
    for stream in (False, True):
        for concurrency in CONCURRENCY:
            if quick and concurrency != (1 if stream else 32):
                continue  # one setting per mode shows the script works
            mode = "streamed" if stream else "plain"
            print(f"measuring {mode}, concurrency {concurrency} ...", flush=True)
            expected = contenders.stream_text(fast_server.STREAM_CHUNKS) if stream else "hi"
            sides = [
                build(url, stream=stream, concurrency=concurrency, expected=expected)
                for build in contenders.ALL.values()
            ]
            stats = await in_turns(sides, quick=quick)
            settings.append({"mode": mode, "concurrency": concurrency, "sides": stats})
    return {"server_alone_rps": server_alone, "settings": settings}


def _rps(stats: dict[str, Any] | str) -> float | None:
    return stats["calls_per_s"] if isinstance(stats, dict) else None


def ratios(setting: dict[str, Any]) -> dict[str, float | None]:
    """relaykit's requests/s over each other client's, and the pipelines' over bare aiohttp."""
    sides = setting["sides"]
    bare = _rps(sides["bare aiohttp"])
    rk = _rps(sides["relaykit"])
    full = _rps(sides["relaykit full pipeline"])
    found: dict[str, float | None] = {
        "relaykit / bare aiohttp": rk / bare if rk and bare else None,
        "full pipeline / bare aiohttp": full / bare if full and bare else None,
    }
    for peer in ("openai SDK", "litellm.acompletion", "LiteLLM Router"):
        other = _rps(sides[peer])
        found[f"relaykit / {peer}"] = rk / other if rk and other else None
    return found


def report(results: dict[str, Any]) -> None:
    print("\nthe server alone (raw keep-alive client that only counts bytes), requests/s:")
    for name, rps in results["server_alone_rps"].items():
        print(f"  {name}: {rps:,.0f}")
    labels = list(contenders.ALL)
    print_table(
        ["setting", *labels],
        [
            [
                f"{s['mode']} c={s['concurrency']}",
                *(_rps(s["sides"][label]) for label in labels),
            ]
            for s in results["settings"]
        ],
    )
    print("  requests/s, median over rounds; client CPU µs per request:")
    for s in results["settings"]:
        cpu = ", ".join(
            f"{label} {st['cpu_us_per_call']:.0f}"
            for label, st in s["sides"].items()
            if isinstance(st, dict)
        )
        print(f"    {s['mode']} c={s['concurrency']}: {cpu}")
        for label, st in s["sides"].items():
            if isinstance(st, str):
                print(f"    {label} skipped: {st}")
    print()
    for s in results["settings"]:
        r = s["ratios"]
        parts = [f"{name} {v:.2f}x" for name, v in r.items() if v is not None]
        verdicts = []
        for side, goal in GOALS.items():
            key = (
                "relaykit / bare aiohttp" if side == "relaykit" else "full pipeline / bare aiohttp"
            )
            if r[key] is not None:
                verdicts.append(f"{side} >= {goal}x: {'MET' if r[key] >= goal else 'NOT MET'}")
        print(f"  >>> {s['mode']} c={s['concurrency']}: {'; '.join(parts)}")
        print(f"      goals: {'; '.join(verdicts)}")
    print()


def plot(results: dict[str, Any]) -> Any:
    fig, ax = figure(11, 5.5)
    groups = [f"{s['mode']}\nc={s['concurrency']}" for s in results["settings"]]
    grouped_bars(
        ax,
        groups,
        {label: [_rps(s["sides"][label]) for s in results["settings"]] for label in contenders.ALL},
    )
    for x, s in enumerate(results["settings"]):
        ratio = s["ratios"]["relaykit / bare aiohttp"]
        if ratio is not None:
            ax.annotate(
                f"{ratio:.2f}x bare",
                (x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(0, -10),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                fontweight="bold",
            )
    ax.set_ylabel("requests/s (median of rounds)")
    ax.set_title(
        "Throughput against a local OpenAI-compatible server (its own process)", fontsize=10
    )
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    contenders.configure_structlog()
    import_litellm()
    with fast_server.start() as url:
        results = asyncio.run(measure(url, quick=args.quick))
    for setting in results["settings"]:
        setting["ratios"] = ratios(setting)
    report(results)
    path = write_results(
        "throughput",
        args,
        results,
        method=(
            "server in its own process answering from memory; per setting every client takes "
            "rounds of ~0.4 s in turns (5 rounds); requests/s = calls / wall time of a round, "
            "median over rounds; CPU = the client process's CPU per request"
        ),
        compared=["aiohttp", "openai", "litellm", "httpx"],
        full_pipeline=contenders.FULL_PIPELINE,
        stream_chunks=fast_server.STREAM_CHUNKS,
    )
    print(f"wrote {path} and {save(plot(results), 'throughput', args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
