"""A newcomer's construction mistakes fail at once, naming the argument and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relaykit import CircuitBreaker, OpenAICompatible, Relay, Retry, Target

BACKEND = OpenAICompatible("http://127.0.0.1:9/v1", model="m")

CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "one backend, not a list": (
        lambda: Relay(targets=BACKEND),  # type: ignore[arg-type]
        "targets must be a list of backends, Targets or Groups",
    ),
    "a URL for a backend": (
        lambda: Relay(targets=["http://127.0.0.1:9/v1"]),  # type: ignore[list-item]
        "targets[0] is 'http://127.0.0.1:9/v1', not a backend",
    ),
    "one middleware, not a list": (
        lambda: Relay(targets=[BACKEND], middleware=Retry()),  # type: ignore[arg-type]
        "middleware must be a list of middleware",
    ),
    "a middleware class": (
        lambda: Relay(targets=[BACKEND], middleware=[Retry]),  # type: ignore[list-item]
        "middleware[0] is the class Retry; pass an instance: Retry(...)",
    ),
    "a config name in code": (
        lambda: Relay(targets=[BACKEND], middleware=["retry"]),  # type: ignore[list-item]
        "middleware[0] is the name 'retry'; names are for config files",
    ),
    "a target's one middleware": (
        lambda: Target(BACKEND, middleware=CircuitBreaker()),  # type: ignore[arg-type]
        "middleware must be a list of middleware",
    ),
    "a number for a name": (
        lambda: Target(BACKEND, name=5),  # type: ignore[arg-type]
        "Target name must be a non-empty string, got 5",
    ),
    "a context window as text": (
        lambda: Target(BACKEND, context_window="8k"),  # type: ignore[arg-type]
        "context_window must be a whole number of at least 1 (tokens), got '8k'",
    ),
    "a strategy's name": (
        lambda: Relay(targets=[BACKEND], strategy="fallback"),  # type: ignore[arg-type]
        "strategy must be a strategy object such as Fallback()",
    ),
    "a number for a clock": (
        lambda: Relay(targets=[BACKEND], clock=5),  # type: ignore[arg-type]
        "clock must be a Clock",
    ),
    "one listener, not a list": (
        lambda: Relay(targets=[BACKEND], listeners=print),  # type: ignore[arg-type]
        "listeners must be a list of listeners",
    ),
    "a number for a model": (
        lambda: OpenAICompatible("http://127.0.0.1:9/v1", model=5),  # type: ignore[arg-type]
        "model must be a non-empty string, got 5",
    ),
    "extra_body as a list": (
        lambda: OpenAICompatible("http://127.0.0.1:9/v1", extra_body=[1]),  # type: ignore[arg-type]
        "extra_body must be a dict",
    ),
    "a timeout as text": (
        lambda: OpenAICompatible("http://127.0.0.1:9/v1", timeout="30"),  # type: ignore[arg-type]
        "timeout must be a positive, finite number of seconds, got '30'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_construction_mistake_is_a_value_error_naming_the_argument(case: str) -> None:
    build, message = CASES[case]

    with pytest.raises(ValueError) as caught:
        build()

    assert message in str(caught.value)
