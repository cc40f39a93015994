"""Routes: the request's model alias picks a chain of targets."""

from __future__ import annotations

import pytest

from relaykit import FunctionBackend, ProviderError, Relay, RequestValidationError, Retry, Target
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.testing import FakeClock

HI = [{"role": "user", "content": "hi"}]


def answering(text: str) -> FunctionBackend:
    async def answer(request: ChatRequest) -> str:
        return text

    return FunctionBackend(answer, name=text, model=f"{text}-model")


async def test_model_alias_picks_its_route_and_the_route_target_model_goes_upstream() -> None:
    seen: list[str | None] = []

    async def smart(request: ChatRequest) -> str:
        seen.append(request.model)
        return "smart answer"

    relay = Relay(
        targets=[answering("default")],
        routes={"smart": [FunctionBackend(smart, name="smart", model="big-model")]},
    )
    async with relay:
        routed = await relay.acomplete(model="smart", messages=HI)
        unrouted = await relay.acomplete(model="something-else", messages=HI)
    assert routed.content == "smart answer" and routed.model == "big-model"
    assert unrouted.content == "default"


async def test_unknown_alias_without_default_targets_names_the_routes() -> None:
    relay = Relay(routes={"smart": [answering("a")], "cheap": [answering("b")]})
    with pytest.raises(RequestValidationError, match="routes are 'smart', 'cheap'") as caught:
        await relay.acomplete(model="fast", messages=HI)
    assert caught.value.field == "model"


class _FakeRetry:
    """Stands in for Retry: the Relay recognises retries by this marker."""

    stacks_with_retry = False

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        return await call_next(request, ctx)


def test_a_retry_around_the_chain_and_inside_a_target_is_rejected() -> None:
    inner = Target(answering("a"), middleware=[_FakeRetry()])
    with pytest.raises(ValueError, match="attempts would multiply"):
        Relay(targets=[inner], middleware=[_FakeRetry()])


async def test_one_retry_per_target_retries_that_target_before_the_chain_moves_on() -> None:
    calls: list[str] = []

    def failing_once(name: str) -> FunctionBackend:
        async def answer(request: ChatRequest) -> str:
            calls.append(name)
            if calls.count(name) == 1:
                raise ProviderError("answered 503", status=503)
            return f"{name} answered"

        return FunctionBackend(answer, name=name)

    relay = Relay(
        targets=[
            Target(failing_once("a"), middleware=[Retry(attempts=2, budget=None)]),
            Target(failing_once("b"), middleware=[Retry(attempts=2, budget=None)]),
        ],
        clock=FakeClock(),
    )
    answer = await relay.acomplete(messages=HI)
    assert answer.content == "a answered" and calls == ["a", "a"]  # b was never needed
    assert answer.relay is not None and answer.relay.attempts == 2


def test_duplicate_target_names_are_rejected_with_advice() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        Relay(targets=[answering("a"), answering("a")])
