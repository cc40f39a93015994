"""Strategies from a config file: ``strategy: {load_balance: ...}`` or ``{hedge: ...}``, with
every mistake a ConfigError at its exact place."""

from __future__ import annotations

from typing import Any

import pytest

from relaykit import ConfigError, Fallback, Group, Hedge, LoadBalance, Relay
from relaykit.testing import FakeClock, FakeProvider, Reply

TWO = [
    {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
    {"name": "b", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
]


def relay_with(strategy: dict[str, Any]) -> Relay:
    return Relay.from_config({"targets": TWO, "strategy": strategy})


def test_load_balance_and_hedge_are_selected_with_their_options() -> None:
    balanced = relay_with({"load_balance": {"weights": {"a": 3, "b": 1}}}).strategy
    assert isinstance(balanced, LoadBalance) and balanced.weights == {"a": 3.0, "b": 1.0}
    assert relay_with({"load_balance": {"mode": "p2c"}}).strategy.mode == "p2c"  # type: ignore[attr-defined]
    hedge = relay_with({"hedge": {"after_s": 0.25, "budget": 0.05}}).strategy
    assert isinstance(hedge, Hedge) and (hedge.after_s, hedge.budget) == (0.25, 0.05)
    assert isinstance(Relay.from_config({"targets": TWO}).strategy, Fallback)


@pytest.mark.parametrize(
    ("strategy", "place", "problem"),
    [
        ({"load_balance": {"mode": "fastest"}}, "strategy.load_balance.mode", "must be one of"),
        ({"load_balance": {"weights": {"a": -1}}}, "strategy.load_balance.weights", ">= 0"),
        ({"load_balance": {"weights": {"z": 1}}}, "strategy.load_balance.weights.z", "names no"),
        ({"hedge": {"after_s": 1, "after_percentile": 0.9}}, "strategy.hedge", "not both"),
        ({"hedge": {"budget": 2}}, "strategy.hedge.budget", "between 0 and 1"),
        ({"hedge": {"fallback_on": ["Nope"]}}, "strategy.hedge.fallback_on[0]", "'Nope'"),
        ({"hedge": {}, "fallback": {}}, "strategy", "name one strategy, not 2"),
        ({"round_robin": {}}, "strategy.round_robin", "not a known setting"),
    ],
)
def test_a_bad_strategy_is_a_config_error_at_its_place(
    strategy: dict[str, Any], place: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        relay_with(strategy)
    assert caught.value.path == place
    assert problem in caught.value.problem


async def test_a_load_balanced_config_spreads_calls_by_weight() -> None:
    async with FakeProvider() as a, FakeProvider() as b:
        config = {
            "targets": [
                {"name": "a", "base_url": a.url, "model": "m"},
                {"name": "b", "base_url": b.url, "model": "m"},
            ],
            "strategy": {"load_balance": {"weights": {"a": 1, "b": 3}}},
        }
        async with Relay.from_config(config, clock=FakeClock(seed=1)) as relay:
            for _ in range(200):
                await relay.acomplete(messages=[{"role": "user", "content": "hi"}])
    assert b.request_count / 200 == pytest.approx(0.75, abs=0.07)


def endpoint(name: str, url: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    return {"name": name, "base_url": url, "model": "m"}


def test_groups_take_their_members_place_in_the_chain() -> None:
    relay = Relay.from_config(
        {
            "targets": [endpoint("solo"), endpoint("east-1"), endpoint("east-2")],
            "groups": {"east": {"targets": ["east-1", "east-2"]}},
            "strategy": {"load_balance": {"weights": {"east": 3, "solo": 1}}},
        }
    )
    assert [t.label for t in relay.targets] == ["solo", "east"]
    (east,) = [t for t in relay.targets if isinstance(t, Group)]
    assert [m.label for m in east.members] == ["east-1", "east-2"]
    assert isinstance(east.strategy, Fallback)


async def test_a_config_balances_across_groups_and_a_group_falls_back_inside() -> None:
    async with FakeProvider() as e1, FakeProvider() as e2, FakeProvider() as w1:
        e1.default = Reply.server_error()
        config = {
            "targets": [
                endpoint("east-1", e1.url),
                endpoint("east-2", e2.url),
                endpoint("west-1", w1.url),
            ],
            "groups": {
                "east": {"targets": ["east-1", "east-2"]},
                "west": {"targets": ["west-1"], "strategy": {"hedge": {"after_s": 5}}},
            },
            "strategy": {"load_balance": {"weights": {"east": 1}}},
        }
        async with Relay.from_config(config, clock=FakeClock()) as relay:
            answer = await relay.acomplete(messages=[{"role": "user", "content": "hi"}])
    assert answer.relay is not None and answer.relay.target == "east-2"
    assert w1.request_count == 0


@pytest.mark.parametrize(
    ("groups", "place", "problem"),
    [
        ({"east": {"targets": ["nope"]}}, "groups.east.targets[0]", "names no target"),
        (
            {"east": {"targets": ["a"]}, "west": {"targets": ["a"]}},
            "groups.west.targets[0]",
            "is in group 'east' already",
        ),
        ({"a": {"targets": ["b"]}}, "groups.a", "has the name of a target"),
        (
            {"east": {"targets": ["a"], "strategy": {"hedge": {"budget": 2}}}},
            "groups.east.strategy.hedge.budget",
            "between 0 and 1",
        ),
    ],
)
def test_a_bad_group_is_a_config_error_at_its_place(
    groups: dict[str, Any], place: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config({"targets": TWO, "groups": groups})
    assert problem in caught.value.problem
    assert caught.value.path.replace('["', ".").replace('"]', "") == place
