"""Per-call overhead of a relaykit Relay next to LiteLLM's Router, measured in one process run.

Both sides answer from memory, so only the library's own pipeline is timed: relaykit calls a
no-op ``FunctionBackend`` that returns a prebuilt ``ChatCompletion``; LiteLLM's Router answers
with ``mock_response``. Scenarios:

  baseline       one target, no middleware          vs Router, one deployment
  full features  Logging, Cache, Timeout, Retry,    vs Router, two deployments, num_retries=3,
                 CircuitBreaker, two-target           timeout=30, fallbacks, response cache
                 fallback; a new prompt per call
                 (every call a cache miss)
  cache hit      the same, one prompt repeated      vs the same Router, one prompt repeated

In the full-feature scenarios both sides log each call through the same structlog setup:
relaykit with ``Logging()``, LiteLLM with a ``CustomLogger`` callback writing the same fields
(its way of logging a call).

Each side warms up, then runs 5 rounds (relaykit and LiteLLM alternate round by round, so drift
on the machine hits both); a round's N is chosen so it lasts about 0.4 s. After a round
the work it left behind (LiteLLM logs and writes its cache in background tasks and threads) is
waited for, so it is charged to the library that caused it. Reported per side: the median over
rounds of the mean time per call on the caller's path, of the CPU time per call (every thread,
background work included: what a call costs the process), and p50/p99 of single calls. Ratios
are LiteLLM / relaykit; the goals are judged on CPU per call.

    python benchmarks/overhead.py            # full run, ~20-40 s
    python benchmarks/overhead.py --quick    # smoke test
    python benchmarks/overhead.py --out DIR  # where overhead.png and overhead.json go

Nothing reaches the network: LiteLLM's remote lookups are switched off by environment variables
set before it is imported, and a guard refuses (and reports) any DNS lookup or connection to a
host that is not local. The rounds, the guard and the report are benchmarks/harness.py's.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from contenders import configure_structlog
from harness import Side, figure, import_litellm, in_turns, save, setup, write_results

PROMPT = [{"role": "user", "content": "Say hi."}]


@dataclass
class Scenario:
    name: str
    relaykit: str  # what the relaykit side runs
    litellm: str
    build_relaykit: Callable[[], Side | str]  # a Side, or why it cannot be built yet
    build_litellm: Callable[[], Side | str]
    result: dict[str, Any] = field(default_factory=dict)


async def measure(scenario: Scenario, quick: bool) -> None:
    """Both sides of ``scenario`` in rounds of ~0.4 s taken in turns (the harness's method)."""
    sides: list[Side] = []
    skipped: dict[str, str] = {}
    for label, build in (
        ("relaykit", scenario.build_relaykit),
        ("litellm", scenario.build_litellm),
    ):
        try:
            side = build()
        except Exception as exc:  # e.g. a middleware whose constructor changed
            side = f"could not be built: {type(exc).__name__}: {exc}"
        if isinstance(side, str):
            skipped[label] = side
        else:
            side.label = label
            sides.append(side)
    measured = await in_turns(sides, quick=quick)
    stats = {label: s for label, s in measured.items() if isinstance(s, dict)}
    skipped.update({label: s for label, s in measured.items() if isinstance(s, str)})
    ratio = path_ratio = None
    if "relaykit" in stats and "litellm" in stats:
        ratio = stats["litellm"]["cpu_us_per_call"] / stats["relaykit"]["cpu_us_per_call"]
        path_ratio = stats["litellm"]["us_per_call"] / stats["relaykit"]["us_per_call"]
    scenario.result = {
        "scenario": scenario.name,
        "relaykit_config": scenario.relaykit,
        "litellm_config": scenario.litellm,
        "relaykit": stats.get("relaykit"),
        "litellm": stats.get("litellm"),
        "ratio": ratio,  # of CPU per call: what the goals are judged on
        "path_ratio": path_ratio,  # of time on the caller's path
        "skipped": skipped or None,
    }


# --- relaykit side ---------------------------------------------------------------------------


def _relaykit_completion() -> Any:
    from relaykit import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        }
    )


def _middlewares() -> dict[str, Any] | str:
    """The issue-4 middlewares, or which ones have not landed yet."""
    wanted = {
        "Logging": "logging",
        "Cache": "cache",
        "Timeout": "timeout",
        "Retry": "retry",
        "CircuitBreaker": "circuit_breaker",
    }
    found: dict[str, Any] = {}
    missing: list[str] = []
    for cls, module in wanted.items():
        try:
            found[cls] = getattr(import_module(f"relaykit.middleware.{module}"), cls)
        except (ImportError, AttributeError):
            missing.append(cls)
    if missing:
        return f"{', '.join(missing)} not available yet"
    return found


def _relaykit_side(relay: Any, messages_for: Callable[[int], Any], *, cached: bool) -> Side:
    def check(result: Any) -> str | None:
        if result.content != "hi":
            return f"relaykit answered {result.content!r}, expected 'hi'"
        return None

    def check_cached(result: Any) -> str | None:
        return check(result) or (
            None
            if result.relay is not None and result.relay.cached == cached
            else f"relaykit: expected cached={cached}, got {result.relay!r}"
        )

    async def call(i: int) -> Any:
        return await relay.acomplete(messages=messages_for(i))

    return Side("relaykit", call, check=check_cached, close=relay.aclose)


def relaykit_baseline() -> Side | str:
    from relaykit import FunctionBackend, Relay

    completion = _relaykit_completion()

    async def noop(request: Any) -> Any:
        return completion

    relay = Relay(targets=[FunctionBackend(noop)])
    return _relaykit_side(relay, lambda i: PROMPT, cached=False)


def relaykit_full(*, hits: bool) -> Side | str:
    from relaykit import FunctionBackend, Relay, Target

    mw = _middlewares()
    if isinstance(mw, str):
        return mw
    completion = _relaykit_completion()

    async def noop1(request: Any) -> Any:
        return completion

    async def noop2(request: Any) -> Any:
        return completion

    relay = Relay(
        targets=[
            Target(FunctionBackend(noop1), middleware=[mw["CircuitBreaker"]()]),
            FunctionBackend(noop2),
        ],
        middleware=[
            mw["Logging"](),
            mw["Cache"](ttl_s=600),
            mw["Timeout"](total_s=30),
            mw["Retry"](attempts=3),
        ],
    )
    return _relaykit_side(relay, _repeated if hits else _distinct, cached=hits)


def relaykit_cache_only() -> Side | str:
    from relaykit import FunctionBackend, Relay

    mw = _middlewares()
    if isinstance(mw, str):
        return mw
    completion = _relaykit_completion()

    async def noop(request: Any) -> Any:
        return completion

    relay = Relay(targets=[FunctionBackend(noop)], middleware=[mw["Cache"](ttl_s=600)])
    return _relaykit_side(relay, _repeated, cached=True)


def _repeated(i: int) -> list[dict[str, str]]:
    return PROMPT


def _distinct(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Say hi. ({i})"}]


# --- LiteLLM side ----------------------------------------------------------------------------


def _deployment(model_name: str) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "litellm_params": {
            "model": "openai/gpt-4o-mini",
            "api_key": "sk-fake",
            "mock_response": "hi",
        },
    }


def _log_line_callback() -> Any:
    """LiteLLM's way to log each call: a ``CustomLogger`` callback, here writing the line
    relaykit's ``Logging`` writes (same logger setup, same fields) for a successful call."""
    import structlog
    from litellm.integrations.custom_logger import CustomLogger

    log = structlog.get_logger("litellm")

    class LogLine(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
            usage = getattr(response_obj, "usage", None)
            log.info(
                "litellm.completed",
                target=metadata.get("deployment"),
                model=kwargs.get("model"),
                latency_ms=round((end_time - start_time).total_seconds() * 1000, 3),
                attempts=metadata.get("attempted_retries", 0) + 1,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
                total_tokens=getattr(usage, "total_tokens", None),
                tenant=kwargs.get("user"),
                cached=bool(kwargs.get("cache_hit")),
                stream=bool(kwargs.get("stream")),
            )

    return LogLine()


def _litellm_side(router: Any, messages_for: Callable[[int], Any], *, cached: bool) -> Side:
    litellm = import_litellm()

    def check(result: Any) -> str | None:
        content = result.choices[0].message.content
        if content != "hi":
            return f"LiteLLM answered {content!r}, expected 'hi'"
        hit = bool((getattr(result, "_hidden_params", None) or {}).get("cache_hit"))
        if hit != cached:
            return f"LiteLLM: expected cache_hit={cached}, got {hit}{_litellm_cache_hint()}"
        return None

    async def call(i: int) -> Any:
        return await router.acompletion(model="m", messages=messages_for(i))

    async def close() -> None:
        litellm.cache = None  # Router(cache_responses=True) installs a process-wide cache
        litellm.callbacks = []  # so are callbacks

    return Side("litellm", call, check=check, close=close)


def _litellm_cache_hint() -> str:
    """Why LiteLLM's cache-hit path may fail: it imports proxy modules and their packages.

    (LiteLLM 1.106 imports ``litellm.proxy`` code on every cache hit, which needs fastapi,
    orjson and soundfile; without them the hit raises, and the Router's retries and fallbacks
    quietly answer from the mock instead.)
    """
    try:
        import_module("litellm.llms.anthropic.pass_through.messages.response_cache")
    except ImportError as exc:
        return f" (its cache-hit path cannot import {exc.name!r}: pip install {exc.name})"
    return ""


def litellm_baseline() -> Side | str:
    litellm = import_litellm()
    litellm.cache = None
    router = litellm.Router(model_list=[_deployment("m")])
    return _litellm_side(router, lambda i: PROMPT, cached=False)


def litellm_full(*, hits: bool) -> Side | str:
    litellm = import_litellm()
    litellm.cache = litellm.Cache(type="local")
    litellm.callbacks = [_log_line_callback()]  # relaykit's side has Logging()
    router = litellm.Router(
        model_list=[_deployment("m"), _deployment("m-fallback")],
        num_retries=3,
        timeout=30,
        fallbacks=[{"m": ["m-fallback"]}],
        cache_responses=True,
    )
    return _litellm_side(router, _repeated if hits else _distinct, cached=hits)


def litellm_cache_only() -> Side | str:
    litellm = import_litellm()
    litellm.cache = litellm.Cache(type="local")
    router = litellm.Router(model_list=[_deployment("m")], cache_responses=True)
    return _litellm_side(router, _repeated, cached=True)


# --- report ----------------------------------------------------------------------------------


def scenarios() -> list[Scenario]:
    full_rk = (
        "Relay(targets=[Target(noop1, middleware=[CircuitBreaker()]), noop2], "
        "middleware=[Logging(), Cache(ttl_s=600), Timeout(total_s=30), Retry(attempts=3)])"
    )
    full_ll = (
        "Router(2 deployments, num_retries=3, timeout=30, fallbacks, cache_responses=True, "
        "litellm.Cache(type='local')), litellm.callbacks=[a CustomLogger logging each call]"
    )
    return [
        Scenario(
            "baseline",
            "Relay(targets=[FunctionBackend(noop)])",
            "Router(1 deployment, mock_response)",
            relaykit_baseline,
            litellm_baseline,
        ),
        Scenario(
            "full features (cache miss)",
            full_rk + ", a new prompt per call",
            full_ll + ", a new prompt per call",
            lambda: relaykit_full(hits=False),
            lambda: litellm_full(hits=False),
        ),
        Scenario(
            "cache hit",
            full_rk + ", one prompt repeated",
            full_ll + ", one prompt repeated",
            lambda: relaykit_full(hits=True),
            lambda: litellm_full(hits=True),
        ),
        Scenario(
            "cache hit, cache only",
            "Relay(targets=[FunctionBackend(noop)], middleware=[Cache(ttl_s=600)]), "
            "one prompt repeated",
            "Router(1 deployment, cache_responses=True, litellm.Cache(type='local')), "
            "one prompt repeated",
            relaykit_cache_only,
            litellm_cache_only,
        ),
    ]


GOALS = {"baseline": 50.0, "full features (cache miss)": 50.0, "cache hit": 100.0}


def _fmt(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "skipped"
    return f"{stats['us_per_call']:8.1f} · {stats['cpu_us_per_call']:8.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'scenario':<28} | {'relaykit µs: path · CPU':>23} | {'litellm µs: path · CPU':>23} | "
        "litellm/relaykit: path · CPU"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        ratios = f"{r['path_ratio']:.0f}x · {r['ratio']:.0f}x" if r["ratio"] is not None else "-"
        print(
            f"{r['scenario']:<28} | {_fmt(r['relaykit']):>23} | {_fmt(r['litellm']):>23} | {ratios}"
        )
    print()
    print(
        "  path: time on the caller's path (mean µs per call). CPU: CPU time per call, every "
        "thread, including the work a call leaves in the background; goals are judged on CPU."
    )
    for r in results:
        goal = GOALS.get(r["scenario"])
        if r["ratio"] is None:
            for side, why in (r["skipped"] or {}).items():
                kind = "not available yet" if why.endswith("not available yet") else "failed"
                print(f"  {r['scenario']}: {side} side skipped ({kind}): {why}")
            continue
        verdict = (
            ""
            if goal is None
            else (f"  goal >= {goal:.0f}x: {'MET' if r['ratio'] >= goal else 'NOT MET'}")
        )
        print(
            f"  >>> {r['scenario']}: relaykit costs {r['ratio']:.0f}x less CPU per call than "
            f"LiteLLM's Router ({r['path_ratio']:.0f}x less time on the caller's path){verdict}"
        )
    background = [
        f"{r['scenario']}: {side} {r[side]['deferred_us_per_call']:.0f} µs"
        for r in results
        for side in ("relaykit", "litellm")
        if r[side] is not None and r[side]["deferred_us_per_call"] >= 1
    ]
    if background:
        print(
            "  Event-loop time spent after the calls returned, per call (part of CPU): "
            + "; ".join(background)
        )
    print()


def plot(results: list[dict[str, Any]]) -> Any:
    """Grouped bars of CPU per call on a log scale, a tick at the caller's-path time, ratios."""
    fig, ax = figure()
    width = 0.38
    heights_all: list[float] = []
    for offset, side, color, label in (
        (-width / 2, "relaykit", "#2b7bba", "relaykit Relay"),
        (width / 2, "litellm", "#d9822b", "LiteLLM Router"),
    ):
        xs, heights, paths = [], [], []
        for x, r in enumerate(results):
            stats = r[side]
            if stats is not None:
                xs.append(x + offset)
                heights.append(stats["cpu_us_per_call"])
                paths.append(stats["us_per_call"])
        heights_all.extend(heights + paths)
        bars = ax.bar(xs, heights, width, label=f"{label}: CPU per call", color=color)
        ax.scatter(xs, paths, marker="_", s=260, color="black", zorder=3, linewidths=1.5)
        for bar, h in zip(bars, heights, strict=True):
            ax.annotate(
                f"{h:,.1f} µs",
                (bar.get_x() + bar.get_width() / 2, h),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="white",
                fontweight="bold",
            )
    ax.scatter([], [], marker="_", s=260, color="black", label="time on the caller's path")
    for x, r in enumerate(results):
        text = (
            f"{r['ratio']:.0f}x less CPU\n({r['path_ratio']:.0f}x on path)"
            if r["ratio"] is not None
            else "skipped"
        )
        ax.annotate(
            text,
            (x, 1),
            xycoords=("data", "axes fraction"),
            xytext=(0, -8),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=10,
            fontweight="bold",
        )
    ax.set_yscale("log")
    if heights_all:
        ax.set_ylim(min(heights_all) / 4, max(heights_all) * 12)
    ax.set_xticks(range(len(results)), [r["scenario"] for r in results])
    ax.set_ylabel("µs per call (log scale)")
    ax.set_title(
        "Per-call overhead: relaykit vs LiteLLM Router (in-memory backends, one process run)",
        fontsize=10,
        pad=10,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="y", which="both", alpha=0.25)
    return fig


async def run(quick: bool) -> list[dict[str, Any]]:
    results = []
    for scenario in scenarios():
        print(f"measuring {scenario.name} ...", flush=True)
        await measure(scenario, quick)
        results.append(scenario.result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    configure_structlog()
    started = time.perf_counter()
    imported = time.perf_counter()
    import_litellm()
    litellm_import_s = time.perf_counter() - imported

    results = asyncio.run(run(args.quick))
    print_table(results)

    json_path = write_results(
        "overhead",
        args,
        results,
        method=(
            "median over rounds (taken in turns) of the mean µs per call (path) and of CPU µs "
            "per call (every thread, until the work a round left has finished); p50/p99 over "
            "single calls"
        ),
        compared=["litellm"],
        litellm_import_s=round(litellm_import_s, 2),
        wall_s=round(time.perf_counter() - started, 2),
    )
    png_path = save(plot(results), "overhead", args)
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
