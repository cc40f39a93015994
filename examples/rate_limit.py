"""RateLimit: keep a target under its requests- and tokens-per-minute limits, before it says 429.

Shows a primary limited to 2 requests per minute: the first two calls go to it, the overflow
goes straight to the backup — relaykit refuses locally (``LocalRateLimitError``), so the primary
never receives a request it would answer with 429.

``RateLimit(rpm=..., tpm=...)`` is per-target middleware. By default a whole minute's budget may
be used at once (``burst=rpm``); ``max_wait_s=`` lets a call wait for room instead of moving on
(never past the call's deadline). Tokens are estimated before a call and settled with the usage
the provider reports.

Run: python examples/rate_limit.py
"""

from __future__ import annotations

import asyncio

from relaykit import OpenAICompatible, RateLimit, Relay, Target
from relaykit.events import Event, RateLimited
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Write a haiku about queues."}]


def show(event: Event) -> None:
    """A listener: print each time a call does not fit a target's limit."""
    if isinstance(event, RateLimited):
        print(f"  event: {event.target!r} is over its limit ({event.limit})")


async def main() -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(primary.url, api_key="sk-demo", model="m"),
                    name="primary",
                    middleware=[RateLimit(rpm=2, tpm=100_000)],
                ),
                Target(OpenAICompatible(backup.url, api_key="sk-demo", model="m"), name="backup"),
            ],
            listeners=[show],
        )
        primary.default = Reply.ok("A haiku from the primary.")
        backup.default = Reply.ok("A haiku from the backup.")
        async with relay:
            for call in range(1, 5):
                answer = await relay.acomplete(messages=QUESTION)
                print(f"call {call}: served by {answer.relay.target}")
            print(f"requests: primary={primary.request_count} backup={backup.request_count}")


if __name__ == "__main__":
    asyncio.run(main())
