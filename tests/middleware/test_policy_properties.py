"""Properties of the pure policies, over many generated cases: the promises hold everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit.contract.errors import (
    AuthenticationError,
    ContextWindowError,
    InvalidRequestError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RelayError,
)
from relaykit.middleware.retry import Backoff, GiveUp, RetryPolicy
from relaykit.stores.rate_limit import Bucket, MemoryRateLimitStore

seconds = st.floats(min_value=0, max_value=500, allow_nan=False)
retry_after = st.none() | seconds


@st.composite
def errors(draw: st.DrawFn) -> RelayError:
    kind = draw(
        st.sampled_from(
            [
                ProviderError,
                RateLimitError,
                QuotaExceededError,
                AuthenticationError,
                InvalidRequestError,
                ContextWindowError,
            ]
        )
    )
    return kind("failed", retry_after=draw(retry_after))


@settings(max_examples=300, deadline=None)
@given(
    error=errors(),
    attempt=st.integers(min_value=1, max_value=10),
    elapsed=seconds,
    remaining=st.none() | seconds,
    draw=st.floats(min_value=0, max_value=1),
    attempts=st.integers(min_value=1, max_value=6),
)
def test_a_retry_never_waits_past_its_caps_or_the_deadline_and_never_retries_for_good_failures(
    error: RelayError,
    attempt: int,
    elapsed: float,
    remaining: float | None,
    draw: float,
    attempts: int,
) -> None:
    policy = RetryPolicy(attempts=attempts, base_delay_s=0.5, max_delay_s=20.0, max_wait_s=60.0)
    decision = policy.decide(error, attempt, elapsed, remaining, draw=draw)
    if isinstance(decision, GiveUp):
        return
    delay = decision.delay_s
    assert error.retryable  # quota, auth, invalid requests, context windows: never
    assert attempt < attempts  # the attempt that was just made was not the last one
    assert 0 <= delay <= 60.0  # max_wait_s
    if error.retry_after is None:
        assert delay <= 20.0  # max_delay_s caps the backoff
    else:
        assert delay == error.retry_after  # pushback honoured exactly
    if remaining is not None:
        assert delay < remaining  # a wait that would cross the deadline is not taken


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([ProviderError, RateLimitError]),
    retry_after=st.none() | st.floats(min_value=0, max_value=60.0),
    attempt=st.integers(min_value=1, max_value=5),
    elapsed=seconds,
    draw=st.floats(min_value=0, max_value=1),
    spare_s=st.none() | st.floats(min_value=0.001, max_value=500),
)
def test_a_retryable_failure_with_attempts_and_time_left_is_always_retried(
    kind: type[RelayError],
    retry_after: float | None,
    attempt: int,
    elapsed: float,
    draw: float,
    spare_s: float | None,
) -> None:
    # The other half of the promise: a policy that gave up on everything would pass the test
    # above. Attempts remain, the pushback is within max_wait_s, and the deadline (if any) lies
    # beyond the longest wait this case can ask for: then the answer is a retry, every time.
    policy = RetryPolicy(attempts=6, base_delay_s=0.5, max_delay_s=20.0, max_wait_s=60.0)
    error = kind("failed", retry_after=retry_after)
    longest = retry_after if retry_after is not None else 20.0
    remaining = None if spare_s is None else longest + spare_s
    decision = policy.decide(error, attempt, elapsed, remaining, draw=draw)
    assert isinstance(decision, Backoff), decision
    if retry_after is not None:
        assert decision.delay_s == retry_after
    else:
        ceiling = min(20.0, 0.5 * 2.0 ** (attempt - 1))
        assert decision.delay_s == pytest.approx(ceiling * draw)  # full jitter under the cap


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.integers(min_value=1, max_value=120),
    gaps=st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200),
)
def test_granted_requests_never_exceed_the_burst_plus_what_time_refilled(
    rpm: int, gaps: list[float]
) -> None:
    store = MemoryRateLimitStore()
    bucket = Bucket("rate:t:requests", float(rpm), rpm / 60)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        if store.acquire_now([bucket], [1.0], now=now).granted:
            granted += 1
    assert granted <= rpm + now * rpm / 60 + 1e-6
