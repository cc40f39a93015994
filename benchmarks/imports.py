"""How long ``import relaykit`` takes, and the memory it adds, next to ``import litellm``.

Every run is a fresh interpreter (``python -c "import relaykit"``), so each import is cold in
the sense a command-line tool or a worker that just started feels it (the bytecode caches are
warm, as they are after installation). Runs are taken in turns — bare interpreter, relaykit,
LiteLLM, bare, ... — so a busy machine slows all three alike. Per contender:

- **wall ms**: the whole process's wall time, median over runs; **added ms**: that minus the
  bare interpreter's (``python -c pass``): what a user waits for because of the import;
- **in-process ms**: ``perf_counter`` around the import statement alone, inside the process;
- **RSS added MB**: peak resident memory of the process (``ru_maxrss``) minus the bare one's.

``import relaykit`` itself resolves its public names lazily, so a second relaykit row imports
what a service's module typically names (``from relaykit import Relay, OpenAICompatible,
Retry, ...``): the goals hold for both.

Then, for the typical line, ``python -X importtime`` names the modules that take the longest
(their own time, without what they import), and the script checks which heavy dependencies
the import loaded at all: aiohttp, structlog, yaml, litellm, redis and opentelemetry should
load only when first used.

    python benchmarks/imports.py            # 15 runs of each, ~1-2 min (LiteLLM is slow)
    python benchmarks/imports.py --quick    # 2 runs each, a smoke test
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from harness import figure, grouped_bars, print_table, save, setup, summarize, write_results

RUNS = 15
LAZY = ["aiohttp", "structlog", "yaml", "litellm", "redis", "opentelemetry", "multidict"]
GOAL_ADDED_MS = 150.0
GOAL_RATIO = 15.0
GOAL_RSS_MB = 40.0

# What one run prints: wall time of the import statement and peak RSS, as JSON.
_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
{statement}
t1 = time.perf_counter()
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lazy = {lazy!r}
loaded = sorted(m for m in lazy if m in sys.modules)
print(json.dumps({{"import_s": t1 - t0, "rss_kb": rss_kb, "loaded": loaded}}))
"""

CONTENDERS = {
    "bare interpreter": "pass",
    "relaykit": "import relaykit",
    # What a service's module usually imports: every name a README example uses, resolved.
    "relaykit, typical line": (
        "from relaykit import Relay, OpenAICompatible, Target, Retry, Fallback, Cache, "
        "Timeout, CircuitBreaker, Logging, RateLimit"
    ),
    "litellm": "import litellm",
}


def one_run(statement: str) -> dict[str, Any]:
    """One fresh interpreter importing ``statement``: wall s, in-process s, peak RSS, loaded."""
    code = _PROBE.format(statement=statement, lazy=LAZY)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=True,
    )
    wall = time.perf_counter() - began
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    return report


def _env() -> dict[str, str]:
    """This environment, with bytecode caches allowed: with PYTHONDONTWRITEBYTECODE set (some
    shells and CI set it) every run would compile relaykit's sources again, and the import
    would be timed as a compilation."""
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_times(statement: str, top: int = 12) -> list[dict[str, Any]]:
    """The modules with the most self time in ``python -X importtime``, slowest first."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = (p.strip() for p in line.removeprefix("import time:").split("|"))
        rows.append({"module": name, "self_ms": int(own) / 1000, "cum_ms": int(cumulative) / 1000})
    rows.sort(key=lambda r: r["self_ms"], reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    runs = 2 if args.quick else RUNS
    one_run("pass")  # the first start of an interpreter pays for cold disk caches
    for statement in CONTENDERS.values():  # writes the bytecode caches, as an install does
        one_run(statement)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for run in range(runs):
        for name, statement in CONTENDERS.items():  # in turns
            if args.quick and name == "litellm" and run:
                continue  # one LiteLLM import (seconds) shows the smoke test works
            samples[name].append(one_run(statement))

    bare = summarize(s["wall_s"] for s in samples["bare interpreter"])["median"]
    bare_rss = summarize(s["rss_kb"] for s in samples["bare interpreter"])["median"]
    results: dict[str, Any] = {}
    for name, runs_of in samples.items():
        wall = summarize(s["wall_s"] * 1000 for s in runs_of)
        inside = summarize(s["import_s"] * 1000 for s in runs_of)
        rss = summarize(s["rss_kb"] for s in runs_of)
        results[name] = {
            "wall_ms": wall,
            "added_ms": wall["median"] - bare * 1000,
            "in_process_ms": inside,
            "peak_rss_mb": rss["median"] / 1024,
            "rss_added_mb": (rss["median"] - bare_rss) / 1024,
            "loaded": runs_of[-1]["loaded"],
        }
    rk, typical, ll = results["relaykit"], results["relaykit, typical line"], results["litellm"]
    # Ratios of the import statement's own time (in-process): a lazy import takes less than a
    # millisecond, which the noise of whole-process times (a few ms) would swallow.
    ratios = {
        name: ll["in_process_ms"]["median"] / max(r["in_process_ms"]["median"], 1e-3)
        for name, r in (("relaykit", rk), ("relaykit, typical line", typical))
    }
    ratio = ratios["relaykit"]
    slowest = import_times(CONTENDERS["relaykit, typical line"])

    print_table(
        ["import", "wall ms (median)", "added ms", "in-process ms", "RSS MB", "RSS added MB"],
        [
            [
                name,
                r["wall_ms"]["median"],
                r["added_ms"],
                r["in_process_ms"]["median"],
                r["peak_rss_mb"],
                r["rss_added_mb"],
            ]
            for name, r in results.items()
        ],
    )
    for name, r in (("import relaykit", rk), ("the typical line", typical)):
        key = "relaykit" if r is rk else "relaykit, typical line"
        print(
            f"  >>> {name} adds {r['added_ms']:.0f} ms (goal <= {GOAL_ADDED_MS:.0f}: "
            f"{'MET' if r['added_ms'] <= GOAL_ADDED_MS else 'NOT MET'}), "
            f"{ratios[key]:.1f}x faster than import litellm (goal >= {GOAL_RATIO:.0f}x: "
            f"{'MET' if ratios[key] >= GOAL_RATIO else 'NOT MET'}), "
            f"RSS +{r['rss_added_mb']:.1f} MB (goal <= {GOAL_RSS_MB:.0f}: "
            f"{'MET' if r['rss_added_mb'] <= GOAL_RSS_MB else 'NOT MET'})"
        )
    for name, r in (("import relaykit", rk), ("the typical line", typical)):
        print(f"  loaded by {name}, of {LAZY}: {[m for m in r['loaded'] if m in LAZY] or 'none'}")
    print("  slowest modules of the typical line (-X importtime, self ms):")
    for row in slowest[:8]:
        print(f"    {row['self_ms']:7.1f}  {row['module']}")

    write_results(
        "imports",
        args,
        {"contenders": results, "ratio": ratio, "ratios": ratios, "slowest_modules": slowest},
        method=(
            f"{runs} fresh interpreters per contender, taken in turns; wall time of the whole "
            "process and perf_counter around the import inside it; peak RSS (ru_maxrss); "
            "medians; 'added' is minus the bare interpreter's median; ratios are of the "
            "in-process import time, litellm's over relaykit's"
        ),
        compared=["litellm", "pydantic", "aiohttp", "structlog"],
    )
    fig, ax = figure(8, 4.5)
    names = list(results)
    grouped_bars(
        ax,
        names,
        {
            "wall ms added to a bare interpreter": [results[n]["added_ms"] for n in names],
            "RSS MB added": [results[n]["rss_added_mb"] for n in names],
        },
    )
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title(
        f"import relaykit {ratio:,.0f}x, the typical line {ratios['relaykit, typical line']:.0f}x "
        "faster than import litellm (in-process time)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    print(f"wrote {save(fig, 'imports', args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
