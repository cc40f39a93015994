"""Every script in benchmarks/ runs end to end in its quick mode: smoke tests of the scripts,
never of any number (timings belong in the benchmarks, not in the suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from run_all import SCRIPTS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@dataclass
class QuickRun:
    """What the smoke run of every script printed, and where each wrote its results."""

    stdout: str
    out: Path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Every script in its quick mode, one after another in one process (run_all.py): most of
    each run is importing LiteLLM, which one process does once."""
    out = tmp_path_factory.mktemp("benchmarks")
    # redis_store.py has a smoke test of its own below: it starts processes and a Redis.
    names = [name for name in SCRIPTS if name != "redis_store"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--out", str(out), *names],
        capture_output=True,
        text=True,
        timeout=600,  # stops a run that hangs; a normal one takes a minute or two
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    return QuickRun(done.stdout, out)


def report_of(name: str, run: QuickRun) -> dict[str, Any]:
    """The JSON ``benchmarks/<name>.py --quick`` wrote, its PNG and its metadata checked."""
    assert (run.out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report: dict[str, Any] = json.loads((run.out / f"{name}.json").read_text())
    assert report["meta"]["benchmark"] == name
    assert report["meta"]["quick"] is True
    assert report["meta"]["network_attempts_blocked"] == []
    assert report["meta"]["versions"]["relaykit"]
    return report


def test_run_all_runs_every_script_in_benchmarks() -> None:
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - {
        "harness",
        "contenders",
        "fast_server",
        "run_all",
    }

    assert set(SCRIPTS) == scripts  # a new script joins the smoke run (and make bench)


def test_overhead_benchmark_quick_run_writes_its_chart_and_numbers(quick_run: QuickRun) -> None:
    report = report_of("overhead", quick_run)
    stdout = quick_run.stdout

    assert "litellm/relaykit: path · CPU" in stdout
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


def test_imports_benchmark_times_each_import_and_names_what_relaykit_loaded(
    quick_run: QuickRun,
) -> None:
    report = report_of("imports", quick_run)
    stdout = quick_run.stdout

    assert "faster than import litellm" in stdout
    contenders = report["results"]["contenders"]
    assert list(contenders) == [
        "bare interpreter",
        "relaykit",
        "relaykit, typical line",
        "litellm",
    ]
    assert "litellm" in contenders["litellm"]["loaded"]  # the probe sees what was imported
    assert contenders["relaykit"]["wall_ms"]["runs"] == 2
    assert report["results"]["ratio"] > 0
    slowest = report["results"]["slowest_modules"]
    assert slowest and all(row["self_ms"] >= 0 for row in slowest)
    assert any(row["module"].startswith("relaykit") for row in slowest)


def test_throughput_benchmark_compares_every_client_on_the_same_server(quick_run: QuickRun) -> None:
    report = report_of("throughput", quick_run)
    stdout = quick_run.stdout

    assert "relaykit / bare aiohttp" in stdout
    results = report["results"]
    assert all(rps > 0 for rps in results["server_alone_rps"].values())
    settings = {(s["mode"], s["concurrency"]): s for s in results["settings"]}
    assert set(settings) == {("plain", 32), ("streamed", 1)}
    for setting in settings.values():
        # Every side answered "hi" (streams: the joined chunks) before it was timed.
        assert all(isinstance(stats, dict) for stats in setting["sides"].values()), setting
        assert setting["ratios"]["relaykit / bare aiohttp"] > 0
        assert setting["ratios"]["relaykit / LiteLLM Router"] > 0
    assert settings[("plain", 32)]["sides"]["relaykit"]["concurrency"] == 32


def test_streaming_benchmark_reports_first_token_and_per_chunk_costs(quick_run: QuickRun) -> None:
    report = report_of("streaming", quick_run)
    stdout = quick_run.stdout

    assert "to the time to first token" in stdout
    results = report["results"]
    for label in ("bare aiohttp", "relaykit"):
        # Each side read the whole 2,000-chunk text before it was timed.
        assert results["per_chunk"][label]["streams"] > 0
        assert results["per_chunk"][label]["us_per_chunk"] > 0
        assert 0 < results["ttft"][label]["ttft_ms_p50"] <= results["ttft"][label]["ttft_ms_p99"]
    assert results["added_ttft_ms"] is not None
    assert results["chunks_per_s_ratio"] > 0


def test_hedging_benchmark_quick_run_writes_both_distributions_and_its_plot(
    quick_run: QuickRun,
) -> None:
    report = report_of("hedging", quick_run)
    stdout = quick_run.stdout

    assert "p99 without/with hedging" in stdout
    results = report["results"]
    for side in ("fallback", "hedge"):
        assert len(results[side]["latencies_ms"]) == results[side]["calls"] > 0
    assert results["fallback"]["requests"] == results["fallback"]["calls"]
    assert results["hedge"]["hedges"]["budget"] == 0.1


def test_failover_benchmark_measures_both_faults_for_relaykit_and_the_router(
    quick_run: QuickRun,
) -> None:
    report = report_of("failover", quick_run)

    assert "with the breaker, p99 is" in quick_run.stdout
    setups = report["results"]["setups"]
    assert set(setups) == {"refused", "black hole"}
    for case in setups.values():
        # Every side answered from the secondary ("hi") before it was timed.
        assert all(isinstance(stats, dict) for stats in case.values()), case
        assert case["relaykit, healthy path"]["primary_requests"] == 0
        assert case["relaykit fallback"]["primary_requests"] == case["relaykit fallback"]["calls"]
    assert report["results"]["verdicts"]["refused"]["max_ms"] > 0


def test_memory_benchmark_reads_rss_at_checkpoints_and_sizes_a_cache_entry(
    quick_run: QuickRun,
) -> None:
    report = report_of("memory", quick_run)

    assert "bytes per entry" in quick_run.stdout
    growth, cache = report["results"]["growth"], report["results"]["cache"]
    assert [s["calls"] for s in growth["samples"]] == [200, 1_000, 2_000]
    assert growth["answered_by"] == {"primary": 2_000}
    assert cache["entries_after_twice_as_many"] == cache["max_entries"]  # evicts, never grows
    assert cache["bytes_per_entry_traced"] > cache["answer_json_bytes"] / 2


REDIS_STORE = BENCHMARKS / "redis_store.py"


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
