"""Timeout: a deadline for the whole call, and a bound on each attempt and on stream silences.

Shows:
- ``Timeout(total_s=2, attempt_s=0.2)``: the primary never answers; after 0.2 s its attempt
  fails with a retryable ``ProviderTimeout`` and the backup answers;
- ``Timeout(total_s=0.3)``: when nothing answers in time, the call fails at the deadline;
- ``Timeout(idle_s=0.2)``: a stream that goes silent mid-answer fails with
  ``StreamInterruptedError`` carrying what had arrived, instead of hanging.

Every inner layer (retry backoff, rate-limit waits, HTTP requests) respects the deadline that
``total_s`` sets.

Run: python examples/timeout.py
"""

from __future__ import annotations

import asyncio
import time

from relaykit import (
    OpenAICompatible,
    ProviderTimeout,
    Relay,
    StreamInterruptedError,
    Target,
    Timeout,
)
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Summarize the news."}]


def target(provider: FakeProvider, name: str) -> Target:
    return Target(OpenAICompatible(provider.url, api_key="sk-demo", model="m"), name=name)


async def main() -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        # Each attempt gets 0.2 s; the whole call, fallbacks included, gets 2 s.
        relay = Relay(
            targets=[target(primary, "primary"), target(backup, "backup")],
            middleware=[Timeout(total_s=2, attempt_s=0.2)],
        )
        # One target and a tight deadline for the whole call.
        strict = Relay(targets=[target(primary, "primary")], middleware=[Timeout(total_s=0.3)])
        # A stream may pause at most 0.2 s between two chunks.
        watched = Relay(targets=[target(primary, "primary")], middleware=[Timeout(idle_s=0.2)])

        async with relay, strict, watched:
            # 1. A hanging primary costs its attempt timeout, then the backup answers.
            primary.script(Reply.hang())
            backup.script(Reply.ok("Markets were calm."))
            started = time.monotonic()
            answer = await relay.acomplete(messages=QUESTION)
            elapsed = time.monotonic() - started
            print(f"primary hung -> served by {answer.relay.target} after {elapsed:.1f} s")

            # 2. Nothing answers before the deadline.
            primary.script(Reply.hang())
            started = time.monotonic()
            try:
                await strict.acomplete(messages=QUESTION)
            except ProviderTimeout as error:
                elapsed = time.monotonic() - started
                print(f"deadline passed after {elapsed:.1f} s: {type(error).__name__}")

            # 3. The stream sends three chunks, then goes silent.
            primary.script(Reply.ok("Markets were calm, then rallied.").stall_after(3))
            try:
                async for _chunk in watched.astream(messages=QUESTION):
                    pass  # a real app would show each chunk as it arrives
            except StreamInterruptedError as error:
                print(f"stalled stream stopped: partial answer {error.partial.content!r}")


if __name__ == "__main__":
    asyncio.run(main())
