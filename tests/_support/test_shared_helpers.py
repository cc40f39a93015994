"""The helpers every middleware shares: argument checks, error rules, background store writes."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from typing import Any

import pytest

from relaykit._support.background import BackgroundTasks
from relaykit._support.checks import fraction, positive_number, positive_seconds, whole_number
from relaykit.contract.error_rules import check_rules, matches
from relaykit.contract.errors import (
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RelayError,
)

# --- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, False, "5", None, [1]])
def test_seconds_must_be_positive_and_finite_by_default(value: Any) -> None:
    with pytest.raises(
        ValueError, match=r"^ttl_s must be a positive, finite number of seconds, got "
    ):
        positive_seconds("ttl_s", value)


def test_seconds_come_back_as_floats() -> None:
    assert positive_seconds("ttl_s", 600) == 600.0
    assert isinstance(positive_seconds("ttl_s", 600), float)
    assert positive_seconds("max_wait_s", 0, allow_zero=True) == 0.0
    assert positive_seconds("max_wait_s", math.inf, allow_inf=True) == math.inf
    assert positive_seconds("huge", 10**400, allow_inf=True) == math.inf


@pytest.mark.parametrize(
    ("options", "value", "message"),
    [
        ({"allow_zero": True}, -1, "max_wait_s must be >= 0 seconds and finite, got -1"),
        ({"allow_zero": True}, math.inf, "max_wait_s must be >= 0 seconds and finite, got inf"),
        ({"allow_inf": True}, 0, "max_wait_s must be > 0 seconds, or math.inf, got 0"),
        (
            {"allow_zero": True, "allow_inf": True, "hint": "0: never wait"},
            math.nan,
            "max_wait_s must be >= 0 seconds, or math.inf (0: never wait), got nan",
        ),
    ],
)
def test_a_refused_duration_says_what_is_allowed(
    options: dict[str, Any], value: float, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        positive_seconds("max_wait_s", value, **options)
    assert str(caught.value) == message


def test_a_rate_names_its_unit() -> None:
    with pytest.raises(ValueError) as caught:
        positive_number("rpm", 0, unit="requests per minute")
    assert (
        str(caught.value) == "rpm must be a positive, finite number of requests per minute, got 0"
    )


@pytest.mark.parametrize("value", [0, -3, True, 2.0, "2", None])
def test_a_count_must_be_a_whole_number_of_at_least_the_minimum(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^failures must be a whole number of at least 1, got "):
        whole_number("failures", value, minimum=1)


def test_a_count_may_explain_its_minimum() -> None:
    assert whole_number("attempts", 3, minimum=1) == 3
    with pytest.raises(ValueError) as caught:
        whole_number("attempts", 0, minimum=1, hint="1 means no retry")
    assert (
        str(caught.value)
        == "attempts must be a whole number of at least 1 (1 means no retry), got 0"
    )


@pytest.mark.parametrize("value", [0, -0.5, 1.5, math.nan, True, "0.5"])
def test_a_share_must_be_above_zero_and_at_most_one(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^failure_rate must be a number above 0 and at most 1"):
        fraction("failure_rate", value)


def test_a_share_of_one_is_allowed() -> None:
    assert fraction("failure_rate", 1) == 1.0


# --- error rules -------------------------------------------------------------------------------


def test_rules_match_by_type_subclasses_included_or_by_predicate() -> None:
    rules = check_rules("retry_on", [RateLimitError, lambda e: e.status == 502])
    assert matches(QuotaExceededError("out of credit"), rules)
    assert matches(ProviderError("answered 502", status=502), rules)
    assert not matches(ProviderError("answered 503", status=503), rules)
    assert not matches(ProviderTimeout("timed out"), ())


def test_rules_come_back_as_a_tuple() -> None:
    assert check_rules("failure_on", [ProviderError]) == (ProviderError,)
    assert check_rules("failure_on", (r for r in [ProviderError])) == (ProviderError,)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [ValueError],
            "fallback_on takes RelayError subclasses or predicates on errors; "
            "ValueError is not a RelayError",
        ),
        (
            [ProviderError, 503],
            "fallback_on takes RelayError subclasses or predicates on errors, got 503",
        ),
        (ProviderError, "fallback_on must be a list of RelayError subclasses or predicates"),
        ("ProviderError", "fallback_on must be a list of RelayError subclasses or predicates"),
        (None, "fallback_on must be a list of RelayError subclasses or predicates"),
    ],
)
def test_a_wrong_rule_is_refused_naming_the_argument(rules: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_rules("fallback_on", rules)
    assert str(caught.value).startswith(message)


def test_a_rule_may_be_any_relay_error_subclass() -> None:
    class MyError(RelayError):
        pass

    assert matches(MyError("mine"), check_rules("retry_on", [MyError]))


# --- background writes -------------------------------------------------------------------------


async def test_drain_waits_for_tasks_spawned_while_it_waits() -> None:
    tasks = BackgroundTasks()
    first, second = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def write(name: str, gate: asyncio.Event) -> None:
        await gate.wait()
        written.append(name)

    tasks.spawn(write("first", first))
    draining = asyncio.create_task(tasks.drain())
    await asyncio.sleep(0)
    tasks.spawn(write("second", second))
    first.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert written == ["first"] and not draining.done()  # the second write still holds it
    second.set()
    await asyncio.wait_for(draining, 5)  # real-time: a bound, only reached on failure
    assert written == ["first", "second"]
    assert not tasks


async def test_a_failed_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()

    async def fail() -> None:
        raise ConnectionError("store is down")

    tasks.spawn(fail())
    with caplog.at_level(logging.ERROR, logger="relaykit"):
        await tasks.drain()
    assert [r.message for r in caplog.records] == ["relaykit: a background store write failed"]
    assert isinstance(caplog.records[0].exc_info and caplog.records[0].exc_info[1], ConnectionError)


async def test_cancelling_drain_leaves_the_writes_running() -> None:
    tasks = BackgroundTasks()
    gate = asyncio.Event()
    written: list[str] = []

    async def write() -> None:
        await gate.wait()
        written.append("kept")

    task = tasks.spawn(write())
    draining = asyncio.create_task(tasks.drain())
    await asyncio.sleep(0)
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    assert task is not None and not task.cancelled()
    gate.set()
    await tasks.drain()
    assert written == ["kept"]


def test_spawn_without_a_running_loop_closes_the_coroutine_unrun() -> None:
    ran: list[bool] = []

    async def write() -> None:
        ran.append(True)

    coro = write()
    assert BackgroundTasks().spawn(coro) is None
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"  # and no "never awaited" warning
    assert ran == []
