"""Properties of the pure policies, over many generated cases: the promises hold everywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit.errors import (
    AuthenticationError,
    ContextWindowError,
    InvalidRequestError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RelayError,
)
from relaykit.middleware.retry import RetryPolicy
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
    delay = policy.decide(error, attempt, elapsed, remaining, draw=draw)
    if delay is None:
        return
    assert error.retryable  # quota, auth, invalid requests, context windows: never
    assert attempt < attempts  # the attempt that was just made was not the last one
    assert 0 <= delay <= 60.0  # max_wait_s
    if error.retry_after is None:
        assert delay <= 20.0  # max_delay_s caps the backoff
    else:
        assert delay == error.retry_after  # pushback honoured exactly
    if remaining is not None:
        assert delay < remaining  # a wait that would cross the deadline is not taken


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
