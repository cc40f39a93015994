"""Fallback(continue_streams=True): a continued stream reads as one answer.

The splice is tested on strings; the rest against FakeProvider scripts: a fallback that
restarts from the beginning, one that really continues, one that refuses assistant prefill.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from relaykit import (
    Fallback,
    Logging,
    OpenAICompatible,
    Relay,
    StreamInterruptedError,
    Target,
)
from relaykit.contract.events import Completed, Event
from relaykit.strategies._splice import CONTINUE_PROMPT, Join, Splice, separator
from relaykit.testing import FakeProvider, RecordedRequest, Reply

HI = [{"role": "user", "content": "Count to six."}]
ANSWER = "one two three four five six."


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeProvider, FakeProvider]]:
    async with FakeProvider() as a, FakeProvider() as b:
        yield a, b


def target(provider: FakeProvider, name: str, **options: object) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-model")
    return Target(backend, name=name, **options)  # type: ignore[arg-type]


def continuing(full: str) -> object:
    """A fallback that continues what it is given, by prefill or by the instruction turn."""

    def reply(request: RecordedRequest) -> Reply:
        assert request.body is not None
        messages = request.body["messages"]
        partial = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
        assert full.startswith(partial)
        return Reply.ok(full[len(partial) :])

    return reply


def refusing_prefill(then: object) -> object:
    """A fallback that answers a prefilled assistant message (the last message) with a 400."""

    def reply(request: RecordedRequest) -> Reply:
        assert request.body is not None
        if request.body["messages"][-1]["role"] == "assistant":
            return Reply.invalid_request("assistant prefill is not supported", param="messages")
        return then(request) if callable(then) else then  # type: ignore[return-value]

    return reply


async def streamed(relay: Relay) -> tuple[str, list[str]]:
    chunks = [c async for c in relay.astream(messages=HI)]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), [
        c.id for c in chunks
    ]


# --- the splice, on strings -------------------------------------------------------------------


def test_a_restart_is_recognised_despite_spacing_and_case() -> None:
    splice = Splice("One two  three")
    assert splice.decide("one", ended=False) is None  # could still be a restart: wait
    join = splice.decide("one two three four", ended=False)
    assert join == Join("restart", len("one two three"))


def test_a_restart_that_reformats_the_answer_is_still_a_restart() -> None:
    join = Splice("Alpha, bravo charlie").decide("**Alpha** bravo - charlie delta", ended=False)
    assert join == Join("restart", len("**Alpha** bravo - charlie"))


def test_a_real_continuation_is_released_at_once() -> None:
    assert Splice("one two three").decide(" four", ended=False) == Join("continue")


def test_repeated_last_words_are_dropped() -> None:
    join = Splice("over the lazy").decide("lazy dog.", ended=False)
    assert join == Join("overlap", len("lazy"))


def test_a_word_cut_in_half_and_written_out_whole_is_joined_once() -> None:
    join = Splice("The capital of Fra").decide("France is Paris.", ended=False)
    assert join == Join("overlap", len("Fra"))


def test_a_restart_that_departs_from_the_partial_is_diverged() -> None:
    splice = Splice("The capital of France is Paris, a city of")
    assert splice.decide("The capital of France is Lyon", ended=False) == Join("diverged")


def test_a_continuation_that_ends_having_only_restated_part_of_the_opening_diverged() -> None:
    splice = Splice("one two three four")
    assert splice.decide("one two", ended=True) == Join("diverged")
    assert splice.decide("", ended=True) == Join("continue")  # nothing was missing


def test_an_instruction_turn_that_leaves_out_the_space_after_a_word_gets_one() -> None:
    assert separator("delta echo", "foxtrot") == " "
    assert separator("Hello,", "world") == " "
    assert separator("delta echo", " foxtrot") == ""
    assert separator("delta echo", ". Done") == ""
    assert separator("delta echo ", "foxtrot") == ""


# --- over HTTP ------------------------------------------------------------------------------------


async def test_a_fallback_that_restarts_from_the_beginning_is_not_doubled(pair) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))  # role, "one", " two", " three"
    b.script(Reply.ok(ANSWER))  # ignores the request to continue
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        text, ids = await streamed(relay)
    assert text == ANSWER
    assert len(set(ids)) == 1


async def test_a_fallback_that_continues_by_instruction_turn_is_joined(pair) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))
    b.default = continuing(ANSWER)
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        text, _ = await streamed(relay)
    assert text == ANSWER
    sent = b.requests[0].body
    assert sent is not None
    assert sent["messages"][-2:] == [
        {"role": "assistant", "content": "one two three"},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


async def test_a_prefill_target_is_asked_with_the_partial_as_the_last_message(pair) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))
    b.default = continuing(ANSWER)
    chain = [target(a, "a"), target(b, "b", prefill={"prefix": True})]
    async with Relay(targets=chain, strategy=Fallback(continue_streams=True)) as relay:
        text, _ = await streamed(relay)
    assert text == ANSWER
    sent = b.requests[0].body
    assert sent is not None
    assert sent["messages"][-1] == {
        "role": "assistant",
        "content": "one two three",
        "prefix": True,
    }


async def test_a_refused_prefill_is_asked_again_as_an_instruction_turn(pair) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))
    b.default = refusing_prefill(continuing(ANSWER))
    chain = [target(a, "a"), target(b, "b", prefill=True)]
    async with Relay(targets=chain, strategy=Fallback(continue_streams=True)) as relay:
        text, _ = await streamed(relay)
    assert text == ANSWER
    assert b.request_count == 2
    second = b.requests[1].body
    assert second is not None and second["messages"][-1]["content"] == CONTINUE_PROMPT


async def test_a_diverging_restart_fails_with_the_partial_and_says_why(pair) -> None:
    a, b = pair
    a.script(Reply.ok("The capital of France is Paris, a city of").drop_after(6))
    b.script(Reply.ok("The capital of France, Paris, is a city of two million."))
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError) as caught:
            await stream.completion()
    assert caught.value.partial.content == "The capital of France is"
    assert "'b' restarted the answer and departed from it" in str(caught.value)


async def test_a_diverging_restart_is_passed_over_for_the_next_target(pair) -> None:
    a, b = pair
    async with FakeProvider() as c:
        a.script(Reply.ok(ANSWER).drop_after(4))
        b.script(Reply.ok("one two buckle my shoe."))
        c.default = continuing(ANSWER)
        chain = [target(a, "a"), target(b, "b"), target(c, "c")]
        async with Relay(targets=chain, strategy=Fallback(continue_streams=True)) as relay:
            answer = await relay.astream(messages=HI).completion()
    assert answer.content == ANSWER
    assert answer.relay is not None and answer.relay.target == "c"


async def test_a_stream_of_tool_calls_is_not_continued_and_says_so(pair) -> None:
    a, b = pair
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    a.script(Reply.ok(None, tool_calls=[call]).drop_after(3))
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError, match="producing tool calls") as caught:
            await stream.completion()
    assert caught.value.partial.choices[0].message.tool_calls
    assert b.request_count == 0


async def test_a_continued_answer_names_who_wrote_it_as_its_completed_event_does(pair) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))
    b.default = continuing(ANSWER)
    events: list[Event] = []
    relay = Relay(
        targets=[target(a, "a"), target(b, "b")],
        strategy=Fallback(continue_streams=True),
        listeners=[events.append],
    )
    async with relay:
        stream = relay.astream(messages=HI, stream_options={"include_usage": True})
        answer = await stream.completion()
    assert answer.content == ANSWER
    assert answer.model == "b-model"
    assert answer.usage is not None and answer.usage.completion_tokens == 3  # b's three words
    info = answer.relay
    assert info is not None
    assert (info.target, info.continued, info.continued_from) == ("b", True, ("a",))
    assert "continued_from=('a',)" in repr(info)
    [completed] = [e for e in events if isinstance(e, Completed)]
    assert (completed.target, completed.model) == ("b", "b-model")
    assert completed.relay is not None and completed.relay.continued_from == ("a",)
    assert completed.usage == answer.usage


async def test_an_unbroken_stream_is_not_marked_continued(pair) -> None:
    a, b = pair
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        answer = await relay.astream(messages=HI).completion()
    assert answer.relay is not None and not answer.relay.continued
    assert answer.model == "a-model"


@pytest.mark.parametrize("content", [False, True], ids=["plain line", "content=True"])
async def test_the_completion_log_line_of_a_continued_stream_names_who_wrote_it(
    pair, content: bool
) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))
    b.default = continuing(ANSWER)
    relay = Relay(
        targets=[target(a, "a"), target(b, "b")],
        middleware=[Logging(content=content)],
        strategy=Fallback(continue_streams=True),
    )
    with capture_logs() as captured:
        async with relay:
            answer = await relay.astream(messages=HI).completion()
    [line] = [entry for entry in captured if entry["event"] == "relaykit.completed"]
    assert (line["target"], line["model"], line["continued_from"]) == ("b", "b-model", ["a"])
    assert answer.relay is not None and answer.relay.target == line["target"]


async def test_a_continuation_by_instruction_turn_without_a_leading_space_reads_as_words(
    pair,
) -> None:
    a, b = pair
    a.script(Reply.ok(ANSWER).drop_after(4))  # "one two three"
    b.script(Reply.ok("four five six."))  # a new turn: no leading space
    async with Relay(
        targets=[target(a, "a"), target(b, "b")], strategy=Fallback(continue_streams=True)
    ) as relay:
        text, _ = await streamed(relay)
    assert text == ANSWER


async def test_a_prefilled_continuation_keeps_its_own_spacing(pair) -> None:
    a, b = pair
    a.script(Reply.ok("The capital of France is Paris.", chunk_size=3).drop_after(7))
    b.default = continuing("The capital of France is Paris.")  # "nce is Paris."
    chain = [target(a, "a"), target(b, "b", prefill=True)]
    async with Relay(targets=chain, strategy=Fallback(continue_streams=True)) as relay:
        text, _ = await streamed(relay)
    assert text == "The capital of France is Paris."
