"""Cache: repeated requests are answered without a provider call, per tenant, never wrongly."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from relaykit import (
    FunctionBackend,
    OpenAICompatible,
    ProviderError,
    Relay,
    StreamInterruptedError,
)
from relaykit.contract.errors import CacheMissError
from relaykit.contract.events import CacheHit, CacheMiss, Event
from relaykit.contract.schema import ChatCompletion, ChatRequest, UserMessage
from relaykit.decorators import resilient
from relaykit.facade.request import validate_request
from relaykit.middleware.cache import Cache
from relaykit.middleware.retry import Retry
from relaykit.stores.cache import FrozenCompletion, MemoryCacheStore
from relaykit.testing import FakeProvider, Reply
from relaykit.testing.clock import FakeClock

BackendFactory = Callable[..., OpenAICompatible]  # the conftest fixture `backend`
HI = [{"role": "user", "content": "hi"}]
CALL = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def relay_with(
    provider: FakeProvider, backend: BackendFactory, clock: FakeClock
) -> AsyncIterator[Any]:
    """``relay_with(cache, **relay_options)``: a Relay over the FakeProvider with that Cache."""
    made: list[Relay] = []

    def make(cache: Cache | None = None, **options: Any) -> Relay:
        relay = Relay(
            targets=[backend(provider)], middleware=[cache or Cache()], clock=clock, **options
        )
        made.append(relay)
        return relay

    yield make
    for relay in made:
        await relay.aclose()


async def streamed_text(relay: Relay, **request: Any) -> tuple[str, Any]:
    stream = relay.astream(**request)
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    return "".join(pieces), stream.relay


# --- hits -----------------------------------------------------------------------------------


async def test_second_identical_call_is_answered_from_the_cache(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.script(Reply.ok("first answer"), Reply.ok("second answer"))
    relay = relay_with()
    first = await relay.acomplete(messages=HI, model="gpt", temperature=0.2)
    second = await relay.acomplete(messages=HI, model="gpt", temperature=0.2)
    assert first.content == second.content == "first answer"
    assert first.relay.cached is False and first.relay.attempts == 1
    assert second.relay.cached is True and second.relay.attempts == 0
    assert provider.request_count == 1


async def test_any_semantic_difference_is_a_different_entry(
    provider: FakeProvider, relay_with: Any
) -> None:
    relay = relay_with()
    await relay.acomplete(messages=HI, temperature=0.2)
    await relay.acomplete(messages=HI, temperature=0.3)
    await relay.acomplete(messages=HI, temperature=0.2, user="u-1")
    await relay.acomplete(messages=HI, temperature=0.2, extra_body={"top_k": 5})
    assert provider.request_count == 4


async def test_stream_after_plain_call_is_replayed_from_the_cache(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.default = Reply.ok("cached words here")
    relay = relay_with()
    plain = await relay.acomplete(messages=HI)
    text, info = await streamed_text(relay, messages=HI, stream_options={"include_usage": True})
    assert text == plain.content == "cached words here"
    assert info.cached is True
    assert provider.request_count == 1


async def test_plain_call_after_stream_is_answered_from_the_cache(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.default = Reply.ok("streamed once")
    relay = relay_with()
    text, info = await streamed_text(relay, messages=HI)
    plain = await relay.acomplete(messages=HI)
    assert text == plain.content == "streamed once"
    assert info.cached is False and plain.relay.cached is True
    assert provider.request_count == 1
    assert provider.requests[0].stream


async def test_mutating_an_answer_does_not_change_the_cached_one(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.default = Reply.ok("pristine")
    relay = relay_with()
    first = await relay.acomplete(messages=HI)
    first.choices[0].message.content = "edited by caller"
    hit = await relay.acomplete(messages=HI)
    hit.choices[0].message.content = "edited again"
    hit.choices[0].message.note = "an unknown field"
    hit.choices.clear()
    hit.note = "an unknown field"
    again = await relay.acomplete(messages=HI)
    assert again.content == "pristine"
    assert "note" not in again.model_dump() and "note" not in again.choices[0].message.model_dump()
    assert provider.request_count == 1


async def test_store_hands_out_answers_that_share_nothing_mutable() -> None:
    original = ChatCompletion.model_validate(
        {
            "id": "c1",
            "choices": [
                {
                    "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    "finish_reason": "tool_calls",
                    "provider_extra": {"nested": [1, 2]},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    )
    store = MemoryCacheStore()
    await store.set("k", FrozenCompletion.of(original), now=0.0, ttl_s=10)
    original.choices[0].message.content = "changed after set"
    cached = await store.get("k", now=1.0)
    assert cached is not None and cached.age_s == 1.0
    first = cached.entry.thaw()
    assert first.content is None  # what was stored, not the later change
    first.choices[0].message.tool_calls[0].function.name = "g"  # type: ignore[index]
    first.choices[0].provider_extra["nested"].append(3)  # type: ignore[attr-defined]
    first.usage.total_tokens = 99  # type: ignore[union-attr]
    again = await store.get("k", now=2.0)
    assert again is not None
    second = again.entry.thaw()
    assert second.choices[0].message.tool_calls[0].function.name == "f"  # type: ignore[index]
    assert second.choices[0].provider_extra == {"nested": [1, 2]}  # type: ignore[attr-defined]
    assert second.usage.total_tokens == 3  # type: ignore[union-attr]


# --- tenants and keys -----------------------------------------------------------------------


async def test_tenants_never_share_answers(provider: FakeProvider, relay_with: Any) -> None:
    provider.script(Reply.ok("for acme"), Reply.ok("for globex"))
    relay = relay_with()
    acme = await relay.acomplete(messages=HI, tenant="acme")
    globex = await relay.acomplete(messages=HI, tenant="globex")
    acme_again = await relay.acomplete(messages=HI, tenant="acme")
    globex_again = await relay.acomplete(messages=HI, tenant="globex")
    assert (acme.content, globex.content) == ("for acme", "for globex")
    assert (acme_again.content, globex_again.content) == ("for acme", "for globex")
    assert provider.request_count == 2


async def test_no_tenant_and_empty_tenant_are_different_tenants(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.script(Reply.ok("nobody's"), Reply.ok("empty string's"))
    relay = relay_with()
    none = await relay.acomplete(messages=HI)
    empty = await relay.acomplete(messages=HI, tenant="")
    assert (none.content, empty.content) == ("nobody's", "empty string's")
    assert provider.request_count == 2


def test_keys_of_namespace_and_tenant_pairs_never_collide() -> None:
    request = ChatRequest.model_validate({"messages": HI})
    pairs = [("", None), ("", ""), ("", "-"), ("a", None), ("", "a"), ("ab", None),
             ("a", "b"), ("a:", "b"), ("a", ":b"), ("1:a", None), ("", "1:a")]  # fmt: skip
    keys = {Cache(namespace=ns).key(request, tenant) for ns, tenant in pairs}
    assert len(keys) == len(pairs)


def test_streamed_and_plain_requests_have_one_key() -> None:
    plain = ChatRequest.model_validate({"messages": HI, "stream": False})
    streamed = ChatRequest.model_validate(
        {"messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert Cache().key(plain, "t") == Cache().key(streamed, "t")


async def test_arguments_changed_while_the_call_is_under_way_do_not_key_its_answer(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    # An outer layer that waits (a queue, a rate limit) gives the caller time to change its
    # messages list; the answer must still be stored under the question that was sent.
    provider.script(Reply.ok("answer to one"), Reply.ok("answer to two"))
    go = asyncio.Event()

    async def wait_for_go(request: ChatRequest, ctx: Any, call_next: Any) -> Any:
        await go.wait()
        return await call_next(request, ctx)

    history = ask("one")
    async with Relay(targets=[backend(provider)], middleware=[wait_for_go, Cache()]) as relay:
        first = asyncio.create_task(relay.acomplete(messages=history))
        await asyncio.sleep(0)  # the call has validated its arguments and waits
        history.append({"role": "user", "content": "two"})
        go.set()
        assert (await first).content == "answer to one"
        longer = await relay.acomplete(messages=history)
        again = await relay.acomplete(messages=ask("one"))
    assert longer.content == "answer to two" and longer.relay.cached is False
    assert again.content == "answer to one" and again.relay.cached is True
    assert provider.request_count == 2


async def test_a_request_replaced_by_an_outer_layer_is_keyed_by_what_it_now_asks(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("for version 1"), Reply.ok("for version 2"))
    version = 1

    async def system_prompt(request: ChatRequest, ctx: Any, call_next: Any) -> Any:
        system = {"role": "system", "content": f"prompt version {version}"}
        edited = ChatRequest.model_validate(
            {**request.body(), "messages": [system, *request.body()["messages"]]}
        )
        return await call_next(edited, ctx)

    async with Relay(targets=[backend(provider)], middleware=[system_prompt, Cache()]) as relay:
        first = await relay.acomplete(messages=HI)
        version = 2
        second = await relay.acomplete(messages=HI)
        third = await relay.acomplete(messages=HI)
    assert (first.content, second.content, third.content) == (
        "for version 1",
        "for version 2",
        "for version 2",
    )
    assert third.relay.cached is True
    assert provider.request_count == 2


async def test_messages_given_as_models_are_cached_too(
    provider: FakeProvider, relay_with: Any
) -> None:
    relay = relay_with()
    for _ in range(3):
        await relay.acomplete(messages=[UserMessage(role="user", content="hi")], temperature=0)
    assert provider.request_count == 1


async def test_a_request_holding_a_python_object_is_answered_but_never_cached() -> None:
    class Handle:  # what a FunctionBackend's caller may pass along: not JSON
        pass

    answered: list[str] = []

    def answer(request: ChatRequest) -> str:
        answered.append(type((request.model_extra or {})["handle"]).__name__)
        return "ok"

    relay = Relay(targets=[FunctionBackend(answer, name="fn")], middleware=[Cache()])
    for _ in range(2):
        result = await relay.acomplete(messages=HI, extra_body={"handle": Handle()})
        assert result.content == "ok" and result.relay.cached is False
    assert answered == ["Handle", "Handle"]


def test_identity_from_the_arguments_leaves_out_only_how_the_answer_is_delivered() -> None:
    def identity(request: dict[str, Any], extra_body: Any = None, stream: bool = False) -> Any:
        return validate_request(request, extra_body, stream=stream, identify=True).identity()

    given = {"messages": HI, "temperature": 0.5}
    extra = {"top_k": {"b": 1, "a": [1, 2]}}
    plain = identity(given, extra)
    assert plain is not None
    assert plain == identity({**given, "stream_options": {"include_usage": True}}, extra, True)
    assert plain == identity({"temperature": 0.5, "messages": HI}, {"top_k": {"a": [1, 2], "b": 1}})
    assert plain != identity({**given, "temperature": 0.6}, extra)
    assert plain != identity(given, {"top_k": {"b": 1, "a": [2, 1]}})
    # Without the arguments (an edited copy, a request built directly) it comes from the body.
    request = ChatRequest.model_validate({**given, "stream": False, **extra})
    assert request.identity() == request.model_copy().identity() is not None


# --- time -----------------------------------------------------------------------------------


async def test_entry_expires_after_ttl(
    provider: FakeProvider, relay_with: Any, clock: FakeClock
) -> None:
    relay = relay_with(Cache(ttl_s=10))
    await relay.acomplete(messages=HI)
    clock.advance(9.5)
    assert (await relay.acomplete(messages=HI)).relay.cached is True
    clock.advance(1)
    assert (await relay.acomplete(messages=HI)).relay.cached is False
    assert provider.request_count == 2


async def test_per_call_ttl_overrides_the_default(
    provider: FakeProvider, relay_with: Any, clock: FakeClock
) -> None:
    relay = relay_with(Cache(ttl_s=600))
    await relay.acomplete(messages=HI, cache_ttl_s=2)
    clock.advance(3)
    assert (await relay.acomplete(messages=HI)).relay.cached is False
    assert provider.request_count == 2


async def test_entry_older_than_max_age_is_a_miss_and_is_replaced(
    provider: FakeProvider, relay_with: Any, clock: FakeClock
) -> None:
    provider.script(Reply.ok("old"), Reply.ok("fresh"))
    relay = relay_with()
    await relay.acomplete(messages=HI)
    clock.advance(30)
    assert (await relay.acomplete(messages=HI, cache_max_age_s=60)).content == "old"
    fresh = await relay.acomplete(messages=HI, cache_max_age_s=10)
    assert fresh.content == "fresh" and fresh.relay.cached is False
    assert (await relay.acomplete(messages=HI)).content == "fresh"
    assert provider.request_count == 2


# --- per-call modes -------------------------------------------------------------------------


async def test_bypass_asks_upstream_and_stores_nothing(
    provider: FakeProvider, relay_with: Any
) -> None:
    relay = relay_with()
    await relay.acomplete(messages=HI, cache="bypass")
    await relay.acomplete(messages=HI, cache="bypass")
    after = await relay.acomplete(messages=HI)
    assert after.relay.cached is False
    assert provider.request_count == 3


async def test_refresh_asks_upstream_and_replaces_the_entry(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.script(Reply.ok("old"), Reply.ok("new"))
    relay = relay_with()
    await relay.acomplete(messages=HI)
    refreshed = await relay.acomplete(messages=HI, cache="refresh")
    after = await relay.acomplete(messages=HI)
    assert refreshed.content == "new" and refreshed.relay.cached is False
    assert after.content == "new" and after.relay.cached is True
    assert provider.request_count == 2


async def test_only_raises_on_a_miss_without_asking_upstream(
    provider: FakeProvider, relay_with: Any
) -> None:
    relay = relay_with()
    with pytest.raises(CacheMissError, match="cache='use'"):
        await relay.acomplete(messages=HI, cache="only")
    with pytest.raises(CacheMissError):
        await relay.astream(messages=HI, cache="only")
    assert provider.request_count == 0
    await relay.acomplete(messages=HI)
    assert (await relay.acomplete(messages=HI, cache="only")).relay.cached is True
    assert provider.request_count == 1


# --- what is never stored -------------------------------------------------------------------


async def test_errors_are_not_cached(provider: FakeProvider, relay_with: Any) -> None:
    provider.script(Reply.server_error(), Reply.ok("recovered"))
    relay = relay_with()
    with pytest.raises(ProviderError):
        await relay.acomplete(messages=HI)
    second = await relay.acomplete(messages=HI)
    third = await relay.acomplete(messages=HI)
    assert second.content == third.content == "recovered"
    assert third.relay.cached is True
    assert provider.request_count == 2


@pytest.mark.parametrize("reason", ["length", "content_filter"])
async def test_truncated_answers_are_not_cached(
    provider: FakeProvider, relay_with: Any, reason: str
) -> None:
    provider.default = Reply.ok("cut off mid", finish_reason=reason)
    relay = relay_with()
    await relay.acomplete(messages=HI)
    again = await relay.acomplete(messages=HI)
    assert again.relay.cached is False
    assert provider.request_count == 2


async def test_interrupted_stream_is_not_cached(provider: FakeProvider, relay_with: Any) -> None:
    provider.script(Reply.ok("one two three four five").drop_after(3))
    relay = relay_with()
    with pytest.raises(StreamInterruptedError):
        await streamed_text(relay, messages=HI)
    answer = await relay.acomplete(messages=HI)
    assert answer.relay.cached is False
    assert provider.request_count == 2


async def test_stream_closed_early_by_the_caller_is_not_cached(
    provider: FakeProvider, relay_with: Any
) -> None:
    provider.default = Reply.ok("one two three four five")
    relay = relay_with()
    stream = relay.astream(messages=HI)
    async for _ in stream:
        break
    await stream.aclose()
    answer = await relay.acomplete(messages=HI)
    assert answer.relay.cached is False
    assert provider.request_count == 2


# --- single flight --------------------------------------------------------------------------


async def test_concurrent_identical_misses_make_one_upstream_call(
    provider: FakeProvider, relay_with: Any
) -> None:
    # real-time: the reply is delayed 0.2 s on the wire so all ten calls overlap.
    provider.default = Reply.ok("shared answer").delayed(0.2)
    relay = relay_with()
    answers = await asyncio.gather(*(relay.acomplete(messages=HI) for _ in range(10)))
    assert [a.content for a in answers] == ["shared answer"] * 10
    assert sum(a.relay.cached is False for a in answers) == 1
    assert len({id(a) for a in answers}) == 10  # each caller owns its answer
    assert provider.request_count == 1


async def test_a_streaming_leader_holds_followers_only_until_its_first_chunk(
    provider: FakeProvider, relay_with: Any
) -> None:
    # real-time: each reply is delayed 0.2 s on the wire so all calls overlap.
    provider.default = Reply.ok("one answer for all").delayed(0.2)
    relay = relay_with()
    leader = asyncio.create_task(streamed_text(relay, messages=HI))
    await asyncio.sleep(0)  # the stream asks first
    plain = [relay.acomplete(messages=HI) for _ in range(3)]
    results = await asyncio.gather(leader, *plain)
    texts = [r[0] if isinstance(r, tuple) else r.content for r in results]
    assert texts == ["one answer for all"] * 4
    # The stream's caller owns it past its first chunk; the plain followers then shared one
    # call of their own instead of waiting on a stream its caller might never finish.
    assert provider.request_count == 2


async def test_breaking_out_of_a_held_stream_never_blocks_the_next_identical_call(
    clock: FakeClock,
) -> None:
    async def model(request: ChatRequest) -> AsyncIterator[str]:
        yield "first "
        yield "second"

    relay = Relay(targets=[FunctionBackend(model)], middleware=[Cache()], clock=clock)
    stream = await relay.astream(messages=HI)
    async for _ in stream:
        break  # the caller stops reading but keeps the stream
    answer = await asyncio.wait_for(relay.acomplete(messages=HI), 5)  # real-time: a bound
    assert answer.content == "first second"
    await stream.aclose()
    await relay.aclose()


async def test_followers_share_the_leaders_error(provider: FakeProvider, relay_with: Any) -> None:
    # real-time: the error is delayed 0.2 s on the wire so the calls overlap.
    provider.script(Reply.server_error().delayed(0.2))
    relay = relay_with()
    results = await asyncio.gather(
        *(relay.acomplete(messages=HI) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderError) for r in results)
    assert provider.request_count == 1


async def test_each_follower_raises_its_own_copy_of_the_leaders_error(clock: FakeClock) -> None:
    gates: list[asyncio.Event] = []

    async def model(request: ChatRequest) -> str:
        gates.append(gate := asyncio.Event())
        await gate.wait()
        raise ProviderError("answered 503: overloaded", status=503)

    async def release_when_all_wait(call: int) -> None:
        for _ in range(100):  # every loop bounded
            if len(gates) == call:
                break
            await asyncio.sleep(0)
        for _ in range(20):  # the other three join the flight
            await asyncio.sleep(0)
        gates[call - 1].set()

    # The Retry outside the Cache adds its "gave up" note to whatever error its caller got.
    retry = Retry(attempts=2, base_delay_s=1, jitter=False)
    relay = Relay(targets=[FunctionBackend(model)], middleware=[retry, Cache()], clock=clock)
    calls = [asyncio.create_task(relay.acomplete(messages=HI)) for _ in range(4)]
    await release_when_all_wait(1)
    await release_when_all_wait(2)
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [e for e in results if isinstance(e, ProviderError)]
    assert len(errors) == 4
    assert len({id(e) for e in errors}) == 4
    assert [getattr(e, "__notes__", []) for e in errors] == [
        ["relaykit: gave up after 2 attempts"]
    ] * 4
    # Three were followers: each raised from the leader's error, which one caller got.
    assert sorted(e.__cause__ in errors for e in errors) == [False, True, True, True]
    assert len(gates) == 2  # one upstream call per round, shared by all four
    await relay.aclose()


async def test_followers_ask_themselves_when_the_leader_is_cancelled(
    provider: FakeProvider, relay_with: Any
) -> None:
    # real-time: the first reply is delayed so the leader is still waiting when cancelled.
    provider.script(Reply.ok("never delivered").delayed(0.5), Reply.ok("follower's own"))
    relay = relay_with()
    leader = asyncio.create_task(relay.acomplete(messages=HI))
    for _ in range(200):  # real-time: until the leader's request reached the provider
        if provider.request_count:
            break
        await asyncio.sleep(0.005)  # real-time: polling a real server, bounded above
    follower = asyncio.create_task(relay.acomplete(messages=HI))
    await asyncio.sleep(0)
    leader.cancel()
    answer = await follower
    assert answer.content == "follower's own" and answer.relay.cached is False
    assert provider.request_count == 2


async def test_a_follower_giving_up_does_not_disturb_the_leader(
    provider: FakeProvider, relay_with: Any
) -> None:
    # real-time: the reply is delayed 0.2 s on the wire so the calls overlap.
    provider.default = Reply.ok("still delivered").delayed(0.2)
    relay = relay_with()
    leader = asyncio.create_task(relay.acomplete(messages=HI))
    await asyncio.sleep(0)
    follower = asyncio.create_task(relay.acomplete(messages=HI))
    patient = asyncio.create_task(relay.acomplete(messages=HI))
    await asyncio.sleep(0)
    follower.cancel()
    assert (await leader).content == (await patient).content == "still delivered"
    assert follower.cancelled()
    assert provider.request_count == 1


async def test_followers_ask_themselves_when_the_leader_drops_its_stream(clock: FakeClock) -> None:
    release = asyncio.Event()
    calls = 0

    async def model(request: ChatRequest) -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        yield "first "
        await release.wait()
        yield "second"

    relay = Relay(targets=[FunctionBackend(model)], middleware=[Cache()], clock=clock)
    leader = await relay.astream(messages=HI)  # committed: its first chunk has arrived
    follower = asyncio.create_task(relay.acomplete(messages=HI))
    await asyncio.sleep(0)
    assert not follower.done()
    release.set()
    del leader  # dropped without reading to the end or closing
    gc.collect()
    answer = await asyncio.wait_for(follower, 5)  # real-time: a bound, only reached on failure
    assert answer.content == "first second"
    assert calls == 2
    await relay.aclose()


async def test_resilient_cache_hits_do_not_share_the_functions_return_value() -> None:
    @resilient(cache=Cache(ttl_s=60))
    async def lookup(word: str) -> dict[str, Any]:
        return {"word": word, "senses": ["a relay race"]}

    first = await lookup("relay")
    first["senses"].append("changed by the first caller")
    first["extra"] = True
    second = await lookup("relay")
    third = await lookup("relay")
    assert second == third == {"word": "relay", "senses": ["a relay race"]}
    assert second is not first and third is not second
    assert second["senses"] is not third["senses"]


# --- bounds, events, configuration ----------------------------------------------------------


async def test_max_entries_evicts_the_least_recently_used(
    provider: FakeProvider, relay_with: Any
) -> None:
    relay = relay_with(Cache(max_entries=2))
    for text in ("a", "b", "c"):
        await relay.acomplete(messages=ask(text))
    assert (await relay.acomplete(messages=ask("c"))).relay.cached is True
    assert (await relay.acomplete(messages=ask("a"))).relay.cached is False
    assert provider.request_count == 4


async def test_hits_and_misses_are_reported_as_events(
    provider: FakeProvider, relay_with: Any, clock: FakeClock
) -> None:
    seen: list[Event] = []
    relay = relay_with(listeners=[seen.append])
    await relay.acomplete(messages=HI)
    clock.advance(4)
    await relay.acomplete(messages=HI)
    cache_events = [e for e in seen if isinstance(e, CacheHit | CacheMiss)]
    assert len(cache_events) == 2
    miss, hit = cache_events
    assert isinstance(miss, CacheMiss) and isinstance(hit, CacheHit)
    assert hit.key == miss.key and hit.age_s == 4


async def test_a_shared_store_serves_two_caches(provider: FakeProvider, relay_with: Any) -> None:
    store = MemoryCacheStore()
    one = relay_with(Cache(store=store))
    two = relay_with(Cache(store=store))
    await one.acomplete(messages=HI)
    assert (await two.acomplete(messages=HI)).relay.cached is True
    assert provider.request_count == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": float("inf")}, "ttl_s"),
        ({"max_entries": 0}, "max_entries"),
        ({"namespace": 3}, "namespace"),
        ({"store": object()}, "store"),
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Cache(**options)


async def test_a_hit_names_the_target_that_first_gave_the_answer(relay_with: Any) -> None:
    relay = relay_with()
    first = await relay.acomplete(messages=HI)
    text, streamed_info = await streamed_text(relay, messages=HI)
    again = await relay.acomplete(messages=HI)
    assert first.relay is not None and again.relay is not None and streamed_info is not None
    assert first.relay.target is not None
    assert (again.relay.target, again.relay.cached) == (first.relay.target, True)
    assert (streamed_info.target, streamed_info.cached) == (first.relay.target, True)
    assert text == first.content


async def test_a_refresh_racing_a_slow_earlier_write_leaves_the_newest_answer(
    clock: FakeClock,
) -> None:
    class SlowFirstWrite(MemoryCacheStore):
        """A shared store whose first write is slow, as a Redis round trip under load."""

        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()
            self.writes = 0

        async def set(self, key: str, entry: FrozenCompletion, now: float, ttl_s: float) -> None:
            self.writes += 1
            if self.writes == 1:
                await self.gate.wait()
            await super().set(key, entry, now, ttl_s)

    answers = iter(["answer 1", "answer 2"])

    def model(request: ChatRequest) -> Any:
        text = next(answers)
        return iter([text]) if request.stream else text

    store = SlowFirstWrite()
    cache = Cache(store=store)
    relay = Relay(targets=[FunctionBackend(model)], middleware=[cache], clock=clock)
    text, _ = await streamed_text(relay, messages=HI)  # its write waits on the slow store
    await asyncio.sleep(0)
    refreshed = await relay.acomplete(messages=HI, cache="refresh")
    right_after = await relay.acomplete(messages=HI)
    store.gate.set()
    await cache.aclose()
    settled = await relay.acomplete(messages=HI)
    assert (text, refreshed.content) == ("answer 1", "answer 2")
    assert right_after.content == settled.content == "answer 2"
    await relay.aclose()
