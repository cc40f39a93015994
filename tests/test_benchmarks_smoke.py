"""benchmarks/overhead.py runs end to end: a smoke test of the script, not of any number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def test_overhead_benchmark_quick_run_writes_its_chart_and_numbers(tmp_path: Path) -> None:
    # Most of the run is importing LiteLLM; the timeout only stops a run that hangs.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "litellm/relaykit: path · CPU" in done.stdout
    png = tmp_path / "overhead.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "overhead.json").read_text())
    assert report["meta"]["network_attempts_blocked"] == []
    scenarios = {s["scenario"]: s for s in report["results"]}
    assert list(scenarios) == [
        "baseline",
        "full features (cache miss)",
        "cache hit",
        "cache hit, cache only",
    ]
    baseline = scenarios["baseline"]
    assert baseline["skipped"] is None
    assert baseline["relaykit"]["calls"] > 0
    assert baseline["litellm"]["calls"] > 0
    assert baseline["ratio"] > 0 and baseline["path_ratio"] > 0
    assert baseline["relaykit"]["cpu_us_per_call"] > 0


HEDGING = SCRIPT.parent / "hedging.py"


def test_hedging_benchmark_quick_run_writes_both_distributions_and_its_plot(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(HEDGING), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "p99 without/with hedging" in done.stdout
    assert (tmp_path / "hedging.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "hedging.json").read_text())
    assert report["meta"]["network_attempts_blocked"] == []
    results = report["results"]
    for side in ("fallback", "hedge"):
        assert len(results[side]["latencies_ms"]) == results[side]["calls"] > 0
    assert results["fallback"]["requests"] == results["fallback"]["calls"]
    assert results["hedge"]["hedges"]["budget"] == 0.1


REDIS_STORE = SCRIPT.parent / "redis_store.py"


def test_redis_store_benchmark_quick_run_counts_round_trips_and_the_shared_limit(
    tmp_path: Path,
) -> None:
    # --quick runs relaykit's side of the shared limit only; the timeout stops a run that hangs.
    done = subprocess.run(
        [sys.executable, str(REDIS_STORE), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REDIS_STORE.parent,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "relaykit: let " in done.stdout
    report = json.loads((tmp_path / "redis_store.json").read_text())
    assert report["meta"]["network_attempts_blocked"] == []
    results = report["results"]
    assert results["verdict"]["commands_per_call"] == {
        "cache hit, Redis": 1.0,
        "rate check, Redis": 1.0,
        "Redis round trip": 1.0,
    }
    relaykit = results["shared_limit"]["relaykit"]
    assert 0 < relaykit["let_through"] <= relaykit["allowed"]
    assert (tmp_path / "redis_store.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
