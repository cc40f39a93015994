"""The middleware contract as a user writes one: a plain async function around call_next."""

from __future__ import annotations

from relaykit import Cache, OpenAICompatible, Relay
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.testing import FakeProvider

HI = [{"role": "user", "content": "hi"}]


async def add_user(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
    return await call_next(request.model_copy(update={"user": "svc-42"}), ctx)


async def test_a_request_edited_with_model_copy_reaches_the_provider_behind_a_cache() -> None:
    async with FakeProvider() as provider:
        backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
        async with Relay(targets=[backend], middleware=[Cache(), add_user]) as relay:
            await relay.acomplete(messages=HI)
        body = provider.requests[0].body
        assert body is not None and body["user"] == "svc-42"


async def test_a_plain_function_middleware_sees_every_call_once() -> None:
    seen: list[bool] = []

    async def spy(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        seen.append(bool(request.stream))
        return await call_next(request, ctx)

    async with FakeProvider() as provider:
        backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
        async with Relay(targets=[backend], middleware=[spy]) as relay:
            await relay.acomplete(messages=HI)
            await (await relay.astream(messages=HI)).completion()
    assert seen == [False, True]
    assert provider.request_count == 2
