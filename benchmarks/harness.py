"""The shared harness of benchmarks/: every script measures the same way and reports the same way.

A benchmark compares *sides* (relaykit, a bare client, a peer library) that each make one call
at a time, or many at once. ``in_turns`` warms each side up, sizes a round from what warm-up
cost, and then runs rounds in turns (side A, side B, side A, ...), so a slowdown of the machine
hits every side alike; after each round it waits for the work the round left behind (a peer's
background logging) so that work is charged to the side that caused it. Per side it reports:

- ``us_per_call``: median over rounds of the round's wall time per call (with concurrency, the
  round's wall time divided by its calls: the inverse of throughput);
- ``calls_per_s``: median over rounds of calls per second of wall time;
- ``cpu_us_per_call``: median over rounds of the process's CPU time (every thread, background
  work included) per call: what a call costs the process;
- ``p50_us``, ``p99_us``, ``max_us``: single calls' latencies, pooled over all rounds;
- ``errors``: timed calls that raised (counted and timed, not fatal), and the first error.

A script calls ``setup(doc)`` first (arguments ``--quick`` and ``--out``, the network guard,
LiteLLM's offline switches), measures, then ``write_results(name, ...)`` for
``benchmarks/results/<name>.json`` and ``figure()`` / ``save()`` for ``<name>.png``.

    from harness import Side, in_turns, setup, write_results
    args = setup(__doc__)
    stats = asyncio.run(in_turns([Side("relaykit", call), Side("bare", bare)], quick=args.quick))
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import logging
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "Side",
    "blocked",
    "figure",
    "import_litellm",
    "in_turns",
    "percentile",
    "print_table",
    "save",
    "settle",
    "setup",
    "summarize",
    "versions",
    "write_results",
]

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = 5

# --- setup: arguments, no network, LiteLLM offline ----------------------------------------------


def setup(doc: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``--quick`` / ``--out``, switch LiteLLM's remote lookups off, guard the network.

    Call before anything imports LiteLLM: its switches are read at its import.
    """
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny rounds: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where <name>.json and <name>.png go"
    )
    args = parser.parse_args(argv)
    litellm_offline()
    install_network_guard()
    return args


def litellm_offline() -> None:
    """Environment switches that stop LiteLLM fetching its cost map (and more) from GitHub."""
    for var in (
        "LITELLM_LOCAL_MODEL_COST_MAP",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
        "LITELLM_LOCAL_BLOG_POSTS",
        "LITELLM_LOCAL_POLICY_TEMPLATES",
        "LITELLM_LOCAL_AUTOROUTER_PRESETS",
    ):
        os.environ[var] = "True"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOG", "WARNING")


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
blocked: list[str] = []
"""Every DNS lookup or connection the guard refused; scripts report it in their JSON."""


def install_network_guard() -> None:
    """Refuse DNS lookups and connections to anything but this machine, and remember them.

    A benchmark that silently waited on a DNS timeout would measure the network, not the
    library; a refused lookup fails at once and is reported at the end.
    """
    if getattr(socket.getaddrinfo, "_benchmark_guard", False):
        return
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

    getaddrinfo._benchmark_guard = True  # type: ignore[attr-defined]
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]


_litellm: Any = None


def import_litellm() -> Any:
    """LiteLLM as a library user runs it: no telemetry, no callbacks, its logger at WARNING."""
    global _litellm
    if _litellm is None:
        litellm_offline()
        litellm: Any = import_module("litellm")
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


# --- measuring: sides, rounds in turns ---------------------------------------------------------

Call = Callable[[int], Awaitable[Any]]


def _no_check(result: Any) -> str | None:
    return None


@dataclass
class Side:
    """One contender of a comparison: ``call(i)`` makes call number ``i``.

    ``check(result)`` returns what is wrong with a warm-up answer (or None): a side that answers
    wrongly is reported as skipped, never timed. ``concurrency`` calls run at once in a round
    (each its own task); ``n`` fixes the calls per round instead of sizing it from warm-up.
    ``keep_results`` keeps what every timed call returned in ``results`` (a call that measures
    something of its own, such as the time to a stream's first chunk, returns it).
    ``before_rounds`` runs once between warm-up and the first timed round (to zero a counter
    that should count timed calls only).
    """

    label: str
    call: Call
    check: Callable[[Any], str | None] = _no_check
    close: Callable[[], Awaitable[None]] | None = None
    concurrency: int = 1
    keep_results: bool = False
    before_rounds: Callable[[], None] | None = None
    n: int = 0
    per_call_s: float = 0.0
    next_i: int = 0
    round_wall_s: list[float] = field(default_factory=list)
    round_cpu_s: list[float] = field(default_factory=list)
    round_calls: list[int] = field(default_factory=list)
    deferred_s: list[float] = field(default_factory=list)
    samples_ns: list[int] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    async def warm_up(self, seconds: float, min_calls: int) -> None:
        """Run until warm, check the answer, and estimate the cost of a call."""
        await self._one()  # fills a cache where there is one
        await asyncio.sleep(0.01)  # real-time: LiteLLM writes its cache in a background task
        problem = self.check(await self._one())
        if problem:
            raise RuntimeError(problem)
        started = time.perf_counter()
        calls = 0
        while calls < min_calls or time.perf_counter() - started < seconds:
            await self._batch(max(1, self.concurrency), record=False)
            calls += max(1, self.concurrency)
        self.per_call_s = (time.perf_counter() - started) / calls

    async def _one(self) -> Any:
        i = self.next_i
        self.next_i += 1
        return await self.call(i)

    async def _batch(self, n: int, *, record: bool) -> None:
        """``n`` calls, ``concurrency`` at a time, each timed on its own when ``record``."""
        clock = time.perf_counter_ns
        call = self._guarded if record else self.call
        samples = self.samples_ns
        kept = self.results if record and self.keep_results else None
        start = self.next_i
        end = start + n
        self.next_i = end
        if self.concurrency <= 1:
            for i in range(start, end):
                t0 = clock()
                result = await call(i)
                if record:
                    samples.append(clock() - t0)
                    if kept is not None:
                        kept.append(result)
            return
        counter = iter(range(start, end))

        async def worker() -> None:
            for i in counter:
                t0 = clock()
                result = await call(i)
                if record:
                    samples.append(clock() - t0)
                    if kept is not None:
                        kept.append(result)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, n))))

    async def run_round(self) -> None:
        gc.collect()  # the collector stays on during the round: its cost is part of a call
        cpu_began = time.process_time()
        began = time.perf_counter()
        await self._batch(self.n, record=True)
        self.round_wall_s.append(time.perf_counter() - began)
        self.deferred_s.append(await settle())
        # Every thread's CPU from the first call until the work the round left has finished.
        self.round_cpu_s.append(time.process_time() - cpu_began)
        self.round_calls.append(self.n)

    async def _guarded(self, i: int) -> Any:
        """A timed call; one that fails is counted (and its time kept), not fatal: a busy
        machine can push a call past a tight timeout, and the figures say how often."""
        try:
            return await self.call(i)
        except Exception as exc:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
            return None

    def stats(self) -> dict[str, Any]:
        """The side's figures (see the module docstring); ``round_*`` lists show the spread."""
        ordered = sorted(self.samples_ns)
        per_call = [w / n * 1e6 for w, n in zip(self.round_wall_s, self.round_calls, strict=True)]
        cpu = [c / n * 1e6 for c, n in zip(self.round_cpu_s, self.round_calls, strict=True)]
        rates = [n / w for w, n in zip(self.round_wall_s, self.round_calls, strict=True)]
        deferred = [d / n * 1e6 for d, n in zip(self.deferred_s, self.round_calls, strict=True)]
        return {
            "us_per_call": statistics.median(per_call),
            "round_means_us": [round(m, 3) for m in per_call],
            "calls_per_s": statistics.median(rates),
            "round_calls_per_s": [round(r, 1) for r in rates],
            "cpu_us_per_call": statistics.median(cpu),
            "round_cpu_us": [round(c, 3) for c in cpu],
            "p50_us": percentile(ordered, 50) / 1000,
            "p99_us": percentile(ordered, 99) / 1000,
            "max_us": (ordered[-1] if ordered else 0) / 1000,
            "deferred_us_per_call": statistics.median(deferred),
            "concurrency": self.concurrency,
            "calls_per_round": self.n,
            "calls": len(ordered),
            "errors": self.errors,
            "first_error": self.first_error,
        }


async def in_turns(
    sides: Sequence[Side],
    *,
    quick: bool,
    rounds: int = ROUNDS,
    round_s: float = 0.4,
    warm_up_s: float = 0.3,
    max_calls: int = 200_000,
) -> dict[str, dict[str, Any] | str]:
    """Warm every side up, then run ``rounds`` rounds of each, in turns; stats or why skipped.

    A round lasts about ``round_s`` (``quick``: a twentieth of it, and 2 rounds), sized from
    the side's warm-up unless the side fixes its ``n``. Every side is closed at the end.
    """
    if quick:
        rounds, round_s, warm_up_s = min(rounds, 2), round_s / 20, warm_up_s / 6
    results: dict[str, dict[str, Any] | str] = {}
    live: list[Side] = []
    try:
        for side in sides:
            try:
                await side.warm_up(warm_up_s, min_calls=3 if quick else 20)
            except Exception as exc:  # report the side as not comparable, keep measuring
                results[side.label] = f"{type(exc).__name__}: {exc}"
                if side.close is not None:
                    await side.close()
                continue
            if not side.n:
                side.n = max(3, min(max_calls, round(round_s / side.per_call_s)))
            live.append(side)
        await asyncio.sleep(0.05 if quick else 0.3)  # real-time: let warm-up's leftovers finish
        current = asyncio.current_task()
        _resident.update(t for t in asyncio.all_tasks() if t is not current and not t.done())
        await settle()
        for side in live:
            if side.before_rounds is not None:
                side.before_rounds()
        for _ in range(rounds):
            for side in live:  # in turns, so every side sees the same machine
                await side.run_round()
    finally:
        for side in live:
            if side.close is not None:
                await side.close()
    for side in live:
        results[side.label] = side.stats()
        if side.errors:
            print(f"  {side.label}: {side.errors} timed call(s) failed, first: {side.first_error}")
    return {side.label: results[side.label] for side in sides}


# Tasks that live as long as the loop (LiteLLM's logging worker waiting on its queue): settle()
# does not wait for them to finish, only for the work they are handed.
_resident: set[asyncio.Task[Any]] = set()


async def settle(limit_s: float = 5.0) -> float:
    """Let the work a round left behind finish before the next round starts; its seconds.

    LiteLLM logs and writes its cache in background tasks and runs part of its logging in a
    thread pool. Left running during the other side's round, that work would be charged to the
    wrong library; waited for here, it is charged to the round that caused it. The seconds
    returned are those the event loop stayed busy (``deferred_us_per_call``).
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
        await asyncio.sleep(0.001)  # real-time: other threads' leftovers run meanwhile
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


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank); 0 for no values."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Median, mean, min, p99 and max of repeated measurements (for runs that are not calls)."""
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "runs": len(ordered),
    }


# --- reporting: versions, JSON, table, plot ------------------------------------------------------


def versions(*dists: str) -> dict[str, str | None]:
    """Installed versions of ``dists`` (None when missing), relaykit and Python included."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in ("relaykit", *dists):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = None
    return found


def machine() -> dict[str, Any]:
    """Where the run happened: platform, CPUs, load, UTC time."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(load[0], 2) if load else None,
    }


def write_results(
    name: str,
    args: argparse.Namespace,
    results: Any,
    *,
    method: str,
    compared: Sequence[str] = (),
    **meta: Any,
) -> Path:
    """Write ``<out>/<name>.json``: machine, versions of ``compared``, method, results."""
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {
            "benchmark": name,
            "quick": args.quick,
            **machine(),
            "versions": versions(*compared),
            "method": method,
            "network_attempts_blocked": blocked,
            **meta,
        },
        "results": results,
    }
    path: Path = args.out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if blocked:
        print(f"WARNING: {len(blocked)} network attempt(s) were blocked: {sorted(set(blocked))}")
    return path


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    text = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *rest]
        return " | ".join(cells)

    print()
    print(line(text[0]))
    print("-+-".join("-" * w for w in widths))
    for row in text[1:]:
        print(line(row))
    print()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def figure(width: float = 9, height: float = 5.2, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure and its axes (``ncols`` side by side) for a PNG; no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height), dpi=120)


def save(fig: Any, name: str, args: argparse.Namespace) -> Path:
    """Save ``fig`` as ``<out>/<name>.png`` and close it."""
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    path: Path = args.out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    fmt: str = "{:,.0f}",
    colors: Sequence[str] = ("#2b7bba", "#7fb3d5", "#d9822b", "#999999", "#6a9f58", "#b35806"),
) -> None:
    """Bars of each series side by side per group, each labelled with its value."""
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        xs = [x + (k - (len(series) - 1) / 2) * width for x in range(len(groups))]
        shown = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        bars = ax.bar(
            [x for x, _ in shown],
            [v for _, v in shown],
            width,
            label=label,
            color=colors[k % len(colors)],
        )
        for bar, (_, v) in zip(bars, shown, strict=True):
            ax.annotate(
                fmt.format(v),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.25)
