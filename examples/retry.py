"""Retry: call again after failures that another try can fix; never after ones it cannot.

Shows:
- ``Retry(attempts=3)``: two 503s, then an answer — three requests, one result;
- a 429 with ``Retry-After`` is waited out for exactly that long (here 0.2 s);
- a quota error (429 insufficient_quota) is not retried: one request, and the typed error.

Backoff is jittered exponential (``base_delay_s * 2**(n-1)``, capped at ``max_delay_s``); a
short ``base_delay_s`` keeps this demo fast. A retry budget (by default ~20 % of calls) keeps
an outage from multiplying the load on a provider that is already failing.

Run: python examples/retry.py
"""

from __future__ import annotations

import asyncio
import time

from relaykit import OpenAICompatible, QuotaExceededError, Relay, Retry, Target
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


async def main() -> None:
    async with FakeProvider() as provider:
        relay = Relay(
            targets=[
                Target(OpenAICompatible(provider.url, api_key="sk-demo", model="m"), name="openai")
            ],
            middleware=[Retry(attempts=3, base_delay_s=0.05, max_delay_s=0.2)],
        )
        async with relay:
            # 1. Two transient failures, then an answer.
            provider.script(Reply.overloaded(), Reply.overloaded(), Reply.ok("4"))
            answer = await relay.acomplete(messages=QUESTION)
            print(f"503, 503, ok -> {answer.content!r} after {answer.relay.attempts} attempts")
            print(f"provider.request_count = {provider.request_count}")

            # 2. The provider says when to come back; Retry waits exactly that long.
            provider.reset()
            provider.script(Reply.rate_limited(retry_after=0.2), Reply.ok("4"))
            started = time.monotonic()
            answer = await relay.acomplete(messages=QUESTION)
            waited = time.monotonic() - started
            print(f"429 Retry-After: 0.2 -> answered after {waited:.1f} s")

            # 3. Out of quota: retrying cannot help, so the error surfaces after one request.
            provider.reset()
            provider.script(Reply.quota())
            try:
                await relay.acomplete(messages=QUESTION)
            except QuotaExceededError as error:
                print(f"quota error not retried: {type(error).__name__} (status {error.status})")
            print(f"provider.request_count = {provider.request_count}")


if __name__ == "__main__":
    asyncio.run(main())
