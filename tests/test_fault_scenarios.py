"""Provider-fault scenarios through the README's recommended production setup.

A scaled-down version of an independent fault suite: a primary that misbehaves in one way per
scenario and a healthy fallback, one streamed call each (plain too where the fault happens
before the answer starts), through exactly the setup the README recommends:

    Target(primary, middleware=[CircuitBreaker()]), a fallback Target,
    Timeout(total_s=90, attempt_s=30, first_token_s=10, idle_s=10), Retry(attempts=3),
    Fallback(continue_streams=True)

Each scenario also runs with the documented alternative placement of Retry (one in each
target instead of one around the chain), which differs only in how long a retryable failure
before the answer is retried on the primary first. Every scenario must pass: the caller gets
the whole answer exactly once (never doubled, never truncated and presented as success), or,
where no clean answer exists, a typed error carrying the partial. Time is a FakeClock driving
real loopback HTTP servers, so a 10 s stall takes no real time.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from relaykit import (
    CircuitBreaker,
    Fallback,
    OpenAICompatible,
    Relay,
    Retry,
    StreamInterruptedError,
    Target,
    Timeout,
)
from relaykit.testing import FakeClock, FakeProvider, RecordedRequest, Reply

ANSWER = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima."
HI = [{"role": "user", "content": "Spell the first twelve letters."}]
CUT = 6  # SSE events the primary sends before its fault: the role chunk and five words
SENT = "Alpha bravo charlie delta echo"  # what the caller has at the cut


def healthy(full: str = ANSWER) -> Callable[[RecordedRequest], Reply]:
    """A fallback that answers a fresh request whole and a continuation with the rest.

    A continuation is either a prefill (the partial answer is the last message) or an
    instruction turn (the partial, then a user turn asking to continue).
    """

    def reply(request: RecordedRequest) -> Reply:
        assert request.body is not None
        messages = request.body["messages"]
        partial = ""
        if messages[-1]["role"] == "assistant":
            partial = messages[-1]["content"]
        elif len(messages) > 1 and messages[-2]["role"] == "assistant":
            partial = messages[-2]["content"]
        assert full.startswith(partial), partial
        return Reply.ok(full[len(partial) :])

    return reply


def restarting(request: RecordedRequest) -> Reply:
    """A fallback that ignores the request to continue and answers from the beginning."""
    return Reply.ok(ANSWER)


def repeating_last_word(request: RecordedRequest) -> Reply:
    """A fallback that continues but first repeats the partial's last word."""
    assert request.body is not None
    partial = request.body["messages"][-2]["content"]
    last = partial.rsplit(" ", 1)[-1]
    return Reply.ok(last + ANSWER[len(partial) :])


def starting_a_new_turn(request: RecordedRequest) -> Reply:
    """A fallback that continues, as a new message does: without a leading space."""
    rest = healthy()(request).content or ""
    return Reply.ok(rest.lstrip())


def refusing_prefill(request: RecordedRequest) -> Reply:
    """A fallback declared to take prefill whose model answers it with a 400."""
    assert request.body is not None
    if request.body["messages"][-1]["role"] == "assistant":
        return Reply.invalid_request("This model does not support assistant prefill.")
    return healthy()(request)


@dataclass
class Outcome:
    """What one call gave the caller, and what the two providers saw."""

    text: str = ""
    finish_reason: str | None = None
    target: str | None = None
    continued_from: tuple[str, ...] = ()
    error: Exception | None = None
    ids: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0
    primary_requests: list[RecordedRequest] = field(default_factory=list)
    fallback_requests: list[RecordedRequest] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    primary: Reply | Callable[[RecordedRequest], Reply] | None  # None: nothing listens
    fallback: Callable[[RecordedRequest], Reply] = field(default_factory=healthy)
    fallback_prefill: bool = False


AROUND, INSIDE = "retry around the chain", "retry in each target"


class Harness:
    """The README's production setup over two FakeProviders on one FakeClock.

    ``placement`` AROUND is the README's setup exactly; INSIDE is its documented alternative,
    one ``Retry`` in each target's middleware (outside the primary's breaker, so an open
    circuit ends the retries) instead of one around the chain.
    """

    def __init__(
        self,
        primary: FakeProvider | None,
        fallback: FakeProvider,
        clock: FakeClock,
        placement: str = AROUND,
    ):
        self.primary, self.fallback, self.clock = primary, fallback, clock
        self.placement = placement

    def relay(self, *, fallback_prefill: bool = False) -> Relay:
        url = (
            self.primary.url if self.primary is not None else f"http://127.0.0.1:{_free_port()}/v1"
        )
        inside = self.placement == INSIDE
        timeout = Timeout(total_s=90, attempt_s=30, first_token_s=10, idle_s=10)
        return Relay(
            targets=[
                Target(
                    OpenAICompatible(url, api_key="sk-test", model="primary-model"),
                    name="primary",
                    middleware=[Retry(), CircuitBreaker()] if inside else [CircuitBreaker()],
                ),
                Target(
                    OpenAICompatible(self.fallback.url, api_key="sk-test", model="fallback-model"),
                    name="fallback",
                    middleware=[Retry()] if inside else [],
                    prefill=fallback_prefill,
                ),
            ],
            middleware=[timeout] if inside else [timeout, Retry(attempts=3)],
            strategy=Fallback(continue_streams=True),
            clock=self.clock,
        )

    async def call(self, relay: Relay, *, stream: bool) -> Outcome:
        outcome = Outcome()
        started = self.clock.now()
        primary_seen = self.primary.request_count if self.primary else 0
        fallback_seen = self.fallback.request_count
        try:
            if stream:
                await self.clock.drive(self._read(relay, outcome))
            else:
                answer = await self.clock.drive(relay.acomplete(messages=HI))
                outcome.text = answer.content or ""
                outcome.finish_reason = answer.choices[0].finish_reason
                assert answer.relay is not None
                outcome.target = answer.relay.target
                outcome.continued_from = answer.relay.continued_from
        except Exception as exc:  # the scenario asserts on which
            outcome.error = exc
        outcome.elapsed_s = self.clock.now() - started
        if self.primary is not None:
            outcome.primary_requests = self.primary.requests[primary_seen:]
        outcome.fallback_requests = self.fallback.requests[fallback_seen:]
        return outcome

    @staticmethod
    async def _read(relay: Relay, outcome: Outcome) -> None:
        stream = relay.astream(messages=HI)
        pieces: list[str] = []
        async for chunk in stream:
            outcome.ids.add(chunk.id)
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                outcome.finish_reason = choice.finish_reason or outcome.finish_reason
            outcome.text = "".join(pieces)
        answer = await stream.completion()
        assert answer.content == outcome.text  # the assembled answer is what was streamed
        assert answer.relay is not None
        outcome.target = answer.relay.target
        outcome.continued_from = answer.relay.continued_from


def _free_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=[AROUND, INSIDE])
def placement(request: pytest.FixtureRequest) -> str:
    """Where Retry goes: every scenario runs with both placements the docs describe."""
    return str(request.param)


@pytest.fixture
async def run(placement: str) -> AsyncIterator[Callable[..., Awaitable[Outcome]]]:
    """``await run(scenario, stream=True)``: one call of ``scenario`` on fresh servers."""
    clock = FakeClock(auto_advance=False)
    relays: list[Relay] = []
    async with FakeProvider(clock=clock) as primary, FakeProvider(clock=clock) as fallback:

        async def one(scenario: Scenario, *, stream: bool = True) -> Outcome:
            primary.reset()
            fallback.reset()
            fallback.default = scenario.fallback
            if scenario.primary is not None:
                primary.default = scenario.primary
            harness = Harness(
                primary if scenario.primary is not None else None, fallback, clock, placement
            )
            relay = harness.relay(fallback_prefill=scenario.fallback_prefill)
            relays.append(relay)
            return await harness.call(relay, stream=stream)

        yield one
        for relay in relays:
            await relay.aclose()


def assert_whole_answer(outcome: Outcome) -> None:
    """The caller got the answer exactly once, finished, as one stream."""
    assert outcome.error is None, repr(outcome.error)
    assert outcome.text == ANSWER  # not doubled, not truncated
    assert outcome.finish_reason == "stop"
    assert len(outcome.ids) <= 1


def is_continuation(request: RecordedRequest) -> bool:
    assert request.body is not None
    return any(m["role"] == "assistant" for m in request.body["messages"])


# --- failures before the answer starts: ordinary failover, streamed and plain -----------------

BEFORE_THE_ANSWER = [
    Scenario("5xx before the first byte", Reply.overloaded()),
    Scenario("429 with Retry-After", Reply.rate_limited(retry_after=5)),
    Scenario("quota 429", Reply.quota()),
    Scenario("connection refused", None),
    Scenario("empty 200 body", Reply.error(200, body=b"")),
    Scenario("context-window error", Reply.context_length()),
    Scenario("HTML 502 from a proxy", Reply.html_error(502)),
    Scenario("401 from a revoked key", Reply.auth_error()),
]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
@pytest.mark.parametrize("scenario", BEFORE_THE_ANSWER, ids=lambda s: s.name)
async def test_a_failure_before_the_answer_fails_over(
    run: Callable[..., Awaitable[Outcome]], scenario: Scenario, stream: bool, placement: str
) -> None:
    outcome = await run(scenario, stream=stream)
    assert_whole_answer(outcome)
    assert outcome.target == "fallback" and not outcome.continued_from
    assert len(outcome.fallback_requests) == 1
    assert not is_continuation(outcome.fallback_requests[0])
    if placement == AROUND:
        # At once: one request to the primary, and no wait (a Retry-After moves on at once).
        assert len(outcome.primary_requests) == (0 if scenario.primary is None else 1)
        assert outcome.elapsed_s < 1
    elif "Retry-After" in scenario.name:
        # In the target, the provider's Retry-After is honoured there first: 5 s, twice.
        assert len(outcome.primary_requests) == 3
        assert outcome.elapsed_s == pytest.approx(10, abs=1.0)
    else:  # retried on the primary first when the error is retryable, never past attempts
        assert len(outcome.primary_requests) <= 3
        assert outcome.elapsed_s < 5


PLAIN_BROKEN_BODIES = [
    Scenario("connection cut before the body", Reply.ok(ANSWER).drop_after(CUT)),
    Scenario("body cut off mid-JSON", Reply.truncated_json()),
    Scenario("body that is not JSON", Reply.malformed_sse()),
]


@pytest.mark.parametrize("scenario", PLAIN_BROKEN_BODIES, ids=lambda s: s.name)
async def test_a_plain_answer_broken_on_the_wire_fails_over(
    run: Callable[..., Awaitable[Outcome]], scenario: Scenario, placement: str
) -> None:
    outcome = await run(scenario, stream=False)
    assert_whole_answer(outcome)
    assert outcome.target == "fallback"
    # Around the chain: at once. In the target: retried there first (with backoff), then on.
    assert len(outcome.primary_requests) == (1 if placement == AROUND else 3)
    assert outcome.elapsed_s < (1 if placement == AROUND else 5)


async def test_a_plain_answer_whose_body_never_comes_costs_one_attempt_timeout(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    outcome = await run(
        Scenario("headers, then silence", Reply.ok(ANSWER).stall_after(0)), stream=False
    )
    assert_whole_answer(outcome)
    assert outcome.target == "fallback"
    assert len(outcome.primary_requests) == 1
    assert outcome.elapsed_s == pytest.approx(30, abs=1.0)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_a_black_hole_costs_one_attempt_timeout(
    run: Callable[..., Awaitable[Outcome]], stream: bool
) -> None:
    outcome = await run(Scenario("black hole", Reply.hang()), stream=stream)
    assert_whole_answer(outcome)
    assert outcome.target == "fallback"
    assert len(outcome.primary_requests) == 1  # not retried while the fallback can answer
    # A stream waits first_token_s for its first content, a plain call attempt_s for its body.
    assert outcome.elapsed_s == pytest.approx(10 if stream else 30, abs=1.0)


async def test_a_slow_first_byte_fails_over_after_first_token_s(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    outcome = await run(Scenario("slow first token", Reply.ok(ANSWER).delayed(20)))
    assert_whole_answer(outcome)
    assert outcome.target == "fallback"
    assert len(outcome.primary_requests) == 1
    assert outcome.elapsed_s == pytest.approx(10, abs=1.0)


async def test_a_role_chunk_at_once_and_the_first_word_late_fails_over_after_first_token_s(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    outcome = await run(Scenario("slow first word", Reply.ok(ANSWER).pause_after(1, 20)))
    assert_whole_answer(outcome)
    assert outcome.target == "fallback"
    assert outcome.elapsed_s == pytest.approx(10, abs=1.0)


async def test_a_role_only_chunk_then_a_break_is_an_ordinary_failover(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    outcome = await run(Scenario("role chunk, then a break", Reply.ok(ANSWER).drop_after(1)))
    assert_whole_answer(outcome)
    assert outcome.target == "fallback" and not outcome.continued_from
    assert not is_continuation(outcome.fallback_requests[0])  # nothing was sent: a fresh ask


# --- failures mid-stream: the fallback continues, the caller sees one answer ------------------

MID_STREAM = [
    Scenario(
        "cut after N chunks, restarting fallback", Reply.ok(ANSWER).drop_after(CUT), restarting
    ),
    Scenario("cut after N chunks, continuing fallback", Reply.ok(ANSWER).drop_after(CUT)),
    Scenario(
        "cut after N chunks, fallback repeating the last word",
        Reply.ok(ANSWER).drop_after(CUT),
        repeating_last_word,
    ),
    Scenario(
        "cut after N chunks, fallback starting without a space",
        Reply.ok(ANSWER).drop_after(CUT),
        starting_a_new_turn,
    ),
    Scenario(
        "cut after N chunks, prefill-refusing fallback",
        Reply.ok(ANSWER).drop_after(CUT),
        refusing_prefill,
        fallback_prefill=True,
    ),
    Scenario("invalid JSON mid-stream", Reply.ok(ANSWER).malformed_after(CUT)),
    Scenario(
        "invalid JSON mid-stream, restarting fallback",
        Reply.ok(ANSWER).malformed_after(CUT),
        restarting,
    ),
    Scenario("stall mid-stream", Reply.ok(ANSWER).stall_after(CUT)),
    Scenario(
        "stall mid-stream, restarting fallback", Reply.ok(ANSWER).stall_after(CUT), restarting
    ),
    Scenario("stream ends without finish_reason or [DONE]", Reply.ok(ANSWER).end_after(CUT)),
    Scenario("error event mid-stream", Reply.ok(ANSWER).fail_after(CUT, 503, "overloaded")),
    Scenario(
        "error event mid-stream, restarting fallback", Reply.ok(ANSWER).fail_after(CUT), restarting
    ),
]


@pytest.mark.parametrize("scenario", MID_STREAM, ids=lambda s: s.name)
async def test_a_stream_broken_mid_answer_is_continued_into_one_answer(
    run: Callable[..., Awaitable[Outcome]], scenario: Scenario
) -> None:
    outcome = await run(scenario)
    assert_whole_answer(outcome)
    assert (outcome.target, outcome.continued_from) == ("fallback", ("primary",))
    assert len(outcome.primary_requests) == 1
    asked = outcome.fallback_requests[-1]
    assert is_continuation(asked)
    assert asked.body is not None
    assert SENT in str(asked.body["messages"][-2:])
    stalled = "stall" in scenario.name
    assert outcome.elapsed_s == pytest.approx(10 if stalled else 0, abs=1.0)


async def test_a_prefill_target_that_accepts_prefill_is_asked_once(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    scenario = Scenario("cut, prefill fallback", Reply.ok(ANSWER).drop_after(CUT))
    scenario.fallback_prefill = True
    outcome = await run(scenario)
    assert_whole_answer(outcome)
    [asked] = outcome.fallback_requests
    assert asked.body is not None
    assert asked.body["messages"][-1] == {"role": "assistant", "content": SENT}


async def test_a_slow_but_steady_stream_is_not_cut(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    outcome = await run(Scenario("slow but steady", Reply.ok(ANSWER).with_chunk_delay(6)))
    assert_whole_answer(outcome)
    assert outcome.target == "primary" and not outcome.fallback_requests


async def test_when_the_continuation_breaks_too_the_caller_gets_the_partial_not_a_success(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    def cut_too(request: RecordedRequest) -> Reply:
        return Reply.ok(healthy()(request).content).drop_after(3)

    outcome = await run(Scenario("both cut", Reply.ok(ANSWER).drop_after(CUT), cut_too))
    assert isinstance(outcome.error, StreamInterruptedError)
    partial = outcome.error.partial.content
    assert partial == SENT + " foxtrot golf"  # what the caller was given, once
    assert ANSWER.startswith(partial)


async def test_a_restart_that_departs_from_the_partial_fails_typed_with_the_partial(
    run: Callable[..., Awaitable[Outcome]],
) -> None:
    def other_answer(request: RecordedRequest) -> Reply:
        return Reply.ok("Alpha bravo charlie and then something else entirely.")

    outcome = await run(
        Scenario("diverging restart", Reply.ok(ANSWER).drop_after(CUT), other_answer)
    )
    assert isinstance(outcome.error, StreamInterruptedError)
    assert outcome.error.partial.content == SENT
    assert "restarted the answer and departed from it" in str(outcome.error)


# --- a flapping primary that recovers --------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_a_primary_that_recovers_gets_its_traffic_back_within_ten_seconds(
    stream: bool, placement: str
) -> None:
    """503 for 60 s, then healthy; one call every 4 s for 100 s."""
    clock = FakeClock(auto_advance=False)
    async with FakeProvider(clock=clock) as primary, FakeProvider(clock=clock) as fallback:
        recovered_at = clock.now() + 60
        primary.default = lambda request: (
            Reply.overloaded() if clock.now() < recovered_at else Reply.ok(ANSWER)
        )
        fallback.default = healthy()
        harness = Harness(primary, fallback, clock, placement)
        served: list[tuple[float, str | None]] = []
        async with harness.relay() as relay:
            for _ in range(25):
                outcome = await harness.call(relay, stream=stream)
                assert_whole_answer(outcome)
                served.append((clock.now() - recovered_at, outcome.target))
                clock.advance(4)
    back = min(at for at, target in served if target == "primary")
    assert 0 <= back <= 10
    assert all(target == "primary" for at, target in served if at >= back)
    # While it was down, the open circuit spared it most calls: they went straight to the fallback.
    assert primary.request_count < 25


async def test_a_continuation_target_that_never_answers_fails_typed_in_bounded_time(
    run: Callable[..., Awaitable[Outcome]], placement: str
) -> None:
    def silent(request: RecordedRequest) -> Reply:
        return Reply.hang()

    outcome = await run(Scenario("fallback silent too", Reply.ok(ANSWER).drop_after(CUT), silent))
    assert isinstance(outcome.error, StreamInterruptedError)
    assert outcome.error.partial.content == SENT
    assert "'fallback' failed" in str(outcome.error)
    # Each continuation attempt is bounded by first_token_s; a Retry in the (last) target may
    # try it three times.
    attempts = len(outcome.fallback_requests)
    assert attempts == (1 if placement == AROUND else 3)
    assert 10 * attempts <= outcome.elapsed_s <= 10 * attempts + 3
