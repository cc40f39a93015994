"""Every script in examples/ runs, exits 0 and prints what it promises.

Each example is run as a user would run it: a fresh interpreter (this venv's), from another
working directory, with nothing but the script itself. A broken example fails the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

# Key lines each example must print (a new example gets an entry here too).
EXPECTED: dict[str, tuple[str, ...]] = {
    "quickstart": (
        "acomplete: 'Hello! How can I help?' (served by openai)",
        "stream: 'Streamed in sync code.'",
    ),
    "fallback": (
        "503 from primary -> served by backup",
        "quota error from primary -> served by backup",
        "all targets failed: primary: QuotaExceededError, backup: ProviderError",
        "broken stream continued by backup: 'The quick brown fox jumps over the lazy dog.'",
        "backup started over, caller still got it once: 'The quick brown fox jumps over the "
        "lazy dog.'\nwritten by backup, continued from ('primary',)",
        "empty answer from primary -> served by backup",
    ),
    "retry": (
        "503, 503, ok -> '4' after 3 attempts",
        "quota error not retried: QuotaExceededError (status 429)\nprovider.request_count = 1",
    ),
    "timeout": (
        "primary hung -> served by backup",
        "ProviderTimeout",
        "stalled stream stopped: partial answer 'Markets were'",
    ),
    "circuit_breaker": (
        "event: circuit of 'primary' opened",
        "call 5: served by backup; requests the primary received so far: 3",
        "after the cool-down: served by primary",
    ),
    "cache": (
        "second call: cached=True\nprovider.request_count = 1",
        "tenants: acme cached=False, globex cached=False, acme again cached=True",
        "cache='bypass': cached=False\nprovider.request_count = 4",
    ),
    "rate_limit": (
        "call 3: served by backup",
        "requests: primary=2 backup=2",
    ),
    "logging_example": ('"event": "relaykit.falling_back"', '"event": "relaykit.completed"'),
    "decorators": (
        "classify -> Sentiment(label='positive', confidence=0.93)",
        "models the provider saw: ['gpt-4o', 'gpt-4o-mini']",
    ),
    "strategies": (
        "weights 3:1 -> east served 73, west 27",
        "east slowed down -> the next calls go to west: True",
        "slow primary hedged -> 'Hi from the backup' from backup",
        "route: ['primary: lost', 'backup: answered']",
        "hedges fired 1, won 1",
    ),
    "from_config": (
        "model='smart' -> served by primary",
        "the same request again -> cached=True",
        "primary answers 503 -> served by backup",
        "model='cheap' -> served by backup",
    ),
}


def run(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_example_has_its_expected_lines() -> None:
    assert {s.stem for s in SCRIPTS} == set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs_and_prints_what_it_shows(script: Path, tmp_path: Path) -> None:
    result = run(script, tmp_path)
    assert result.returncode == 0, f"{script.name} exited {result.returncode}:\n{result.stderr}"
    for line in EXPECTED.get(script.stem, ()):
        assert line in result.stdout, f"{script.name} did not print {line!r}:\n{result.stdout}"
    # Every connection pool is closed: aiohttp warns about leaked sessions on stderr.
    assert "Unclosed" not in result.stderr, result.stderr


def test_logging_example_writes_json_lines_without_the_api_key(tmp_path: Path) -> None:
    result = run(EXAMPLES / "logging_example.py", tmp_path)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines if line["level"] == "info"] == [
        "relaykit.completed",
        "relaykit.completed",
    ]
    assert "sk-demo" not in result.stdout
