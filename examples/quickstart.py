"""Quickstart: one Relay over one OpenAI-compatible provider, async and sync.

Shows the three ways to ask: ``await relay.acomplete(...)`` for a whole answer,
``relay.astream(...)`` for chunks as they arrive, and ``relay.complete(...)`` /
``relay.stream(...)`` for synchronous code. ``FakeProvider`` is a local OpenAI-compatible
server, so this runs with no API key and no network; point ``OpenAICompatible`` at
``https://api.openai.com/v1`` with your key for the real thing.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncio

from relaykit import OpenAICompatible, Relay, Target
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Say hello."}]


async def main() -> None:
    async with FakeProvider() as provider:
        # The configuration: one target. More targets would form a fallback chain.
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(provider.url, api_key="sk-demo", model="gpt-4o-mini"),
                    name="openai",
                )
            ]
        )
        async with relay:  # closes the connection pool on exit
            provider.script(Reply.ok("Hello! How can I help?"))
            answer = await relay.acomplete(messages=QUESTION)
            print(f"acomplete: {answer.content!r} (served by {answer.relay.target})")

            provider.script(Reply.ok("Hello there, streaming friend."))
            pieces = [
                chunk.choices[0].delta.content or ""
                async for chunk in relay.astream(messages=QUESTION)
                if chunk.choices
            ]
            print(f"astream: {len(pieces)} chunks -> {''.join(pieces)!r}")
            print(f"the provider saw {provider.request_count} requests")


def sync_main() -> None:
    # Sync code: the same pipeline runs on the Relay's own event-loop thread, so the fake
    # provider runs on a background thread here (``with``, not ``async with``).
    with FakeProvider() as provider:
        backend = OpenAICompatible(provider.url, api_key="sk-demo", model="gpt-4o-mini")
        with Relay(targets=[backend]) as relay:  # ``with`` stops the Relay's loop thread
            provider.script(Reply.ok("Hello from sync code."), Reply.ok("Streamed in sync code."))
            answer = relay.complete(messages=QUESTION)
            print(f"complete: {answer.content!r}")
            text = "".join(
                chunk.choices[0].delta.content or ""
                for chunk in relay.stream(messages=QUESTION)
                if chunk.choices
            )
            print(f"stream: {text!r}")


if __name__ == "__main__":
    asyncio.run(main())
    sync_main()
