"""The README's examples run as written (with keys from the environment, nothing sent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from relaykit import CircuitBreaker, Fallback, Logging, RateLimit, Relay, Retry

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-openai")
    monkeypatch.setenv("VOIDAI_API_KEY", "sk-readme-voidai")


def test_the_readme_starts_with_the_two_commands() -> None:
    first = blocks("sh")[0].splitlines()
    assert [line.split()[:2] for line in first] == [["make", "demo"], ["make", "test"]]


def test_the_opening_example_builds_the_relay_it_describes() -> None:
    opening = blocks("python")[0].split("answer = await")[0]
    namespace: dict[str, object] = {}
    exec(opening, namespace)
    relay = namespace["relay"]
    assert isinstance(relay, Relay)
    assert [t.label for t in relay.targets] == ["primary", "backup"]
    assert [type(m) for m in relay.targets[0].middleware] == [CircuitBreaker, RateLimit]
    assert type(relay.middleware[0]) is Logging and type(relay.middleware[-1]) is Retry


def test_the_config_file_example_builds() -> None:
    (config,) = [block for block in blocks("yaml") if "targets:" in block]
    relay = Relay.from_config(yaml.safe_load(config))
    assert [t.label for t in relay.targets] == ["primary", "backup"]
    assert list(relay.routes) == ["smart"]
    assert "sk-readme-openai" not in repr(relay.targets)


def test_the_production_setup_is_the_one_the_fault_scenarios_run() -> None:
    (setup,) = [block for block in blocks("python") if "continue_streams=True" in block]
    namespace: dict[str, object] = {}
    exec(setup, namespace)
    relay = namespace["relay"]
    assert isinstance(relay, Relay)
    assert [t.label for t in relay.targets] == ["primary", "fallback"]
    assert [type(m) for m in relay.targets[0].middleware] == [CircuitBreaker]
    timeout, retry = relay.middleware
    assert repr(timeout) == "Timeout(total_s=90.0, attempt_s=30.0, first_token_s=10.0, idle_s=10.0)"
    assert isinstance(retry, Retry) and retry.policy.attempts == 3
    assert isinstance(relay.strategy, Fallback) and relay.strategy.continue_streams
