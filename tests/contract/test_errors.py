"""Error messages a user reads: punctuation, the summary of a failed chain, attempt counts."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from structlog.testing import capture_logs

from relaykit import (
    AllTargetsFailedError,
    CircuitOpenError,
    Logging,
    OpenAICompatible,
    ProviderError,
    Relay,
    Target,
)
from relaykit.contract.events import Event, Failed
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


async def test_a_provider_message_ending_in_an_exclamation_gets_no_extra_full_stop() -> None:
    async with FakeProvider() as provider:
        provider.script(Reply.server_error())
        async with Relay(targets=[OpenAICompatible(provider.url, model="m")]) as relay:
            with pytest.raises(ProviderError) as caught:
                await relay.acomplete(messages=HI)

    assert "Sorry about that! The provider failed" in str(caught.value)
    assert "!." not in str(caught.value)


async def test_the_summary_of_a_failed_chain_keeps_each_cause_readable() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never accepting
        sock.bind(("127.0.0.1", 0))
        dead = OpenAICompatible(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", model="m")
        async with FakeProvider() as provider:
            provider.script(Reply.overloaded())
            live = OpenAICompatible(provider.url, model="m")
            relay = Relay(targets=[Target(dead, name="down"), Target(live, name="busy")])
            with pytest.raises(AllTargetsFailedError) as caught:
                await relay.acomplete(messages=HI)
            await relay.aclose()

    summary = str(caught.value)
    assert "Connect call failed" in summary
    assert "The engine is currently overloaded, please try again later." in summary
    assert "..." not in summary


async def test_an_open_circuits_skip_is_not_counted_as_an_attempt_anywhere() -> None:
    async def open_circuit(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        raise CircuitOpenError("circuit is open; skipped without a request")

    events: list[Event] = []
    async with FakeProvider() as provider:
        provider.default = Reply.overloaded()
        targets = [
            Target(OpenAICompatible(provider.url, model="m"), name="a"),
            Target(OpenAICompatible(provider.url, model="m"), name="b", middleware=[open_circuit]),
            Target(OpenAICompatible(provider.url, model="m"), name="c"),
        ]
        relay = Relay(targets=targets, middleware=[Logging()], listeners=[events.append])
        with capture_logs() as logs, pytest.raises(AllTargetsFailedError) as caught:
            await relay.acomplete(messages=HI)
        await relay.aclose()

    failed: list[Any] = [line for line in logs if line["event"] == "relaykit.failed"]
    assert provider.request_count == 2
    assert failed[0]["attempts"] == 2
    assert [e.attempts for e in events if isinstance(e, Failed)] == [2]
    assert str(caught.value).startswith("all 2 attempts failed and 1 target was skipped (")
