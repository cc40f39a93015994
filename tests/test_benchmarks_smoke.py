"""Every script in benchmarks/ runs end to end in its quick mode: smoke tests of the scripts,
never of any number (timings belong in the benchmarks, not in the suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
Runs = dict[str, "subprocess.Popen[str]"]
SCRIPTS = ("overhead", "imports", "throughput", "streaming")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Every script's quick run, started at once: most of each is importing LiteLLM and
    waiting on its own server, so side by side they take little more than the slowest."""
    out = tmp_path_factory.mktemp("benchmarks")
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--out", str(out / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
        run.communicate()


def run_quick(name: str, runs: Runs) -> tuple[str, dict[str, Any]]:
    """The output of ``benchmarks/<name>.py --quick`` and the JSON it wrote, PNG checked."""
    run = runs[name]
    # The timeout only stops a run that hangs.
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stdout[-2000:] + stderr[-4000:]
    out = Path(run.args[-1])
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    assert report["meta"]["benchmark"] == name
    assert report["meta"]["quick"] is True
    assert report["meta"]["network_attempts_blocked"] == []
    assert report["meta"]["versions"]["relaykit"]
    return stdout, report


def test_overhead_benchmark_quick_run_writes_its_chart_and_numbers(quick_runs: Runs) -> None:
    stdout, report = run_quick("overhead", quick_runs)

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
    quick_runs: Runs,
) -> None:
    stdout, report = run_quick("imports", quick_runs)

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


def test_throughput_benchmark_compares_every_client_on_the_same_server(quick_runs: Runs) -> None:
    stdout, report = run_quick("throughput", quick_runs)

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


def test_streaming_benchmark_reports_first_token_and_per_chunk_costs(quick_runs: Runs) -> None:
    stdout, report = run_quick("streaming", quick_runs)

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
    tmp_path: Path,
) -> None:
    stdout, report = run_quick("hedging", tmp_path)

    assert "p99 without/with hedging" in stdout
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
