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
on the machine hits both); a round's N is chosen so it lasts about ``ROUND_S``. After a round
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
host that is not local.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# LiteLLM fetches its model cost map (and a few other files) from GitHub at import time unless
# told not to; these must be set before the first `import litellm`.
for _var in (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
):
    os.environ[_var] = "True"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOG", "WARNING")

ROUNDS = 5
ROUND_S = 0.4  # seconds per round per side: 5 rounds x 2 sides x 3 scenarios ~ 12 s of timing
QUICK_ROUND_S = 0.02
PROMPT = [{"role": "user", "content": "Say hi."}]


# --- network guard ---------------------------------------------------------------------------

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
blocked: list[str] = []


def _install_network_guard() -> None:
    """Refuse DNS lookups and connections to anything but this machine, and remember them.

    A benchmark that silently waited on a DNS timeout would measure the network, not the
    library; a refused lookup fails at once and is reported at the end.
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name not in _LOCAL_HOSTS:
            blocked.append(f"DNS lookup of {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"network disabled by benchmark: {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # unix sockets, socketpairs of the event loop
        return isinstance(address, tuple) and str(address[0]) in _LOCAL_HOSTS

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            blocked.append(f"connect to {address}")
            raise ConnectionRefusedError(f"network disabled by benchmark: {address}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            blocked.append(f"connect to {address}")
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]


# --- measurement -----------------------------------------------------------------------------

Call = Callable[[int], Awaitable[Any]]


@dataclass
class Side:
    """One library's half of a scenario: ``call(i)`` makes call number ``i``."""

    call: Call
    check: Callable[[Any], str | None]  # returns a problem with a result, or None
    close: Callable[[], Awaitable[None]] | None = None
    n: int = 0
    per_call_s: float = 0.0
    next_i: int = 0
    round_means_us: list[float] = field(default_factory=list)
    samples_ns: list[int] = field(default_factory=list)
    deferred_us: list[float] = field(default_factory=list)
    round_cpu_us: list[float] = field(default_factory=list)

    async def warm_up(self, seconds: float, min_calls: int) -> None:
        """Run until warm, check the answer, and size a round from the observed cost."""
        await self._one()  # fills the cache where there is one
        await asyncio.sleep(0.01)  # real-time: LiteLLM writes its cache in a background task
        problem = self.check(await self._one())
        if problem:
            raise RuntimeError(problem)
        started = time.perf_counter()
        calls = 0
        while calls < min_calls or time.perf_counter() - started < seconds:
            await self._one()
            calls += 1
        self.per_call_s = (time.perf_counter() - started) / calls

    async def _one(self) -> Any:
        i = self.next_i
        self.next_i += 1
        return await self.call(i)

    async def run_round(self) -> None:
        gc.collect()
        clock = time.perf_counter_ns
        call = self.call
        samples = self.samples_ns
        start_i = self.next_i
        self.next_i += self.n
        cpu_began = time.process_time()
        began = clock()
        for i in range(start_i, start_i + self.n):
            t0 = clock()
            await call(i)
            samples.append(clock() - t0)
        self.round_means_us.append((clock() - began) / self.n / 1000)
        self.deferred_us.append(await settle() / self.n * 1e6)
        # Every thread's CPU from the first call until the work the round left has finished.
        self.round_cpu_us.append((time.process_time() - cpu_began) / self.n * 1e6)

    def stats(self) -> dict[str, Any]:
        ordered = sorted(self.samples_ns)
        return {
            "us_per_call": statistics.median(self.round_means_us),
            "round_means_us": [round(m, 3) for m in self.round_means_us],
            "p50_us": _percentile(ordered, 50) / 1000,
            "p99_us": _percentile(ordered, 99) / 1000,
            "deferred_us_per_call": statistics.median(self.deferred_us),
            "cpu_us_per_call": statistics.median(self.round_cpu_us),
            "round_cpu_us": [round(c, 3) for c in self.round_cpu_us],
            "calls_per_round": self.n,
            "calls": len(ordered),
        }


# Tasks that live as long as the loop (LiteLLM's logging worker waiting on its queue): settle()
# does not wait for them to finish, only for the work they are handed.
_resident: set[asyncio.Task[Any]] = set()


async def settle(limit_s: float = 5.0) -> float:
    """Let the work a round left behind finish before the next round starts; its seconds.

    LiteLLM logs and writes its cache in background tasks and runs part of its logging in a
    thread pool. Left running during the other side's round, that work would be charged to the
    wrong library; waited for here, it is charged to the round that caused it (in
    ``cpu_us_per_call``). The seconds returned are those the event loop stayed busy
    (``deferred_us_per_call``).
    """
    current = asyncio.current_task()
    started = time.perf_counter()
    busy_until = started
    quiet = 0
    while quiet < 3 and time.perf_counter() - started < limit_s:
        if _litellm_backlog() or any(
            t is not current and t not in _resident and not t.done() for t in asyncio.all_tasks()
        ):
            quiet = 0
            await asyncio.sleep(0)  # the loop runs the pending work
            busy_until = time.perf_counter()
            continue
        # The loop is idle: sleep (burning no CPU of this thread) while other threads finish.
        others = _other_threads_cpu()
        await asyncio.sleep(0.001)
        quiet = quiet + 1 if _other_threads_cpu() - others < 10e-6 else 0
    return busy_until - started


def _other_threads_cpu() -> float:
    return time.process_time() - time.thread_time()


def _litellm_backlog() -> bool:
    worker = getattr(
        sys.modules.get("litellm.litellm_core_utils.logging_worker"), "GLOBAL_LOGGING_WORKER", None
    )
    queue = getattr(worker, "_queue", None)
    return queue is not None and not queue.empty()


def _percentile(ordered: list[int], pct: float) -> float:
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return float(ordered[index])


@dataclass
class Scenario:
    name: str
    relaykit: str  # what the relaykit side runs
    litellm: str
    build_relaykit: Callable[[], Side | str]  # a Side, or why it cannot be built yet
    build_litellm: Callable[[], Side | str]
    result: dict[str, Any] = field(default_factory=dict)


async def measure(scenario: Scenario, round_s: float, rounds: int, quick: bool) -> None:
    sides: dict[str, Side] = {}
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
            sides[label] = side
    try:
        for label, side in list(sides.items()):
            try:
                await side.warm_up(seconds=0.05 if quick else 0.3, min_calls=3 if quick else 20)
            except Exception as exc:  # report the scenario as not comparable, keep measuring
                skipped[label] = f"{type(exc).__name__}: {exc}"
                del sides[label]
                if side.close is not None:
                    await side.close()
                continue
            side.n = max(3, min(200_000, round(round_s / side.per_call_s)))
        await asyncio.sleep(0.05 if quick else 0.3)  # real-time: let warm-up's leftovers finish
        current = asyncio.current_task()
        _resident.update(t for t in asyncio.all_tasks() if t is not current and not t.done())
        await settle()
        for _ in range(rounds):
            for side in sides.values():  # alternate, so both sides see the same machine
                await side.run_round()
    finally:
        for side in sides.values():
            if side.close is not None:
                await side.close()
    stats = {label: side.stats() for label, side in sides.items()}
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


def _configure_structlog() -> None:
    """A production-shaped structlog setup writing to a null sink.

    INFO and above, with level, timestamp and JSON rendering: what a service ships with. The
    lines are really rendered and written, only to /dev/null, so their cost is measured.
    """
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


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

    return Side(call=call, check=check_cached, close=relay.aclose)


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

_litellm: Any = None


def _import_litellm() -> Any:
    global _litellm
    if _litellm is None:
        litellm: Any = import_module("litellm")

        # No telemetry, no callbacks, no debug banners: the Router as a library user runs it,
        # with LiteLLM's own logger at its default WARNING level.
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        litellm.disable_hf_tokenizer_download = True
        litellm.callbacks = []
        litellm.success_callback = []
        litellm.failure_callback = []
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)
        logging.getLogger("LiteLLM Router").setLevel(logging.WARNING)
        _litellm = litellm
    return _litellm


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
    litellm = _litellm

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

    return Side(call=call, check=check, close=close)


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
    litellm = _import_litellm()
    litellm.cache = None
    router = litellm.Router(model_list=[_deployment("m")])
    return _litellm_side(router, lambda i: PROMPT, cached=False)


def litellm_full(*, hits: bool) -> Side | str:
    litellm = _import_litellm()
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
    litellm = _import_litellm()
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


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars of CPU per call on a log scale, a tick at the caller's-path time, ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=120)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    round_s = QUICK_ROUND_S if args.quick else ROUND_S
    results = []
    for scenario in scenarios():
        print(f"measuring {scenario.name} ...", flush=True)
        await measure(scenario, round_s, ROUNDS, args.quick)
        results.append(scenario.result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny rounds: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for overhead.png and overhead.json (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)

    _install_network_guard()
    _configure_structlog()
    started = time.perf_counter()
    imported = time.perf_counter()
    _import_litellm()
    litellm_import_s = time.perf_counter() - imported

    results = asyncio.run(run(args))
    print_table(results)

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {
            "quick": args.quick,
            "rounds": ROUNDS,
            "round_s": QUICK_ROUND_S if args.quick else ROUND_S,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "relaykit": _version("relaykit"),
            "litellm": _version("litellm"),
            "litellm_import_s": round(litellm_import_s, 2),
            "wall_s": round(time.perf_counter() - started, 2),
            "network_attempts_blocked": blocked,
            "method": (
                "median over rounds of the mean µs per call (path) and of CPU µs per call "
                "(every thread, until the work a round left has finished); p50/p99 over single "
                "calls"
            ),
        },
        "scenarios": results,
    }
    (args.out / "overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out / "overhead.png")
    print(f"wrote {args.out / 'overhead.json'} and {args.out / 'overhead.png'}")
    if blocked:
        print(f"WARNING: {len(blocked)} network attempt(s) were blocked: {sorted(set(blocked))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
