"""Cache: answer repeated requests from memory instead of asking the provider again.

Shows:
- the second identical request is a hit: no upstream request, ``answer.relay.cached`` is True;
- a streamed request shares the entry, and a hit is replayed as chunks;
- tenants are isolated: ``tenant="acme"`` never gets ``tenant="globex"``'s answer;
- ``cache="bypass"`` asks the provider and leaves the cache alone (also: ``"refresh"``,
  ``"only"``, and per-call ``cache_ttl_s=`` / ``cache_max_age_s=``).

The key is a hash of every field of the request that affects the answer (messages, model,
temperature, tools, ...). Errors and truncated answers are never cached.

Run: python examples/cache.py
"""

from __future__ import annotations

import asyncio

from relaykit import Cache, OpenAICompatible, Relay, Target
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


async def main() -> None:
    async with FakeProvider() as provider:
        relay = Relay(
            targets=[
                Target(OpenAICompatible(provider.url, api_key="sk-demo", model="m"), name="openai")
            ],
            middleware=[Cache(ttl_s=600, max_entries=10_000)],
        )
        provider.default = Reply.ok("Paris.")
        async with relay:
            # 1. A miss, then a hit.
            first = await relay.acomplete(messages=QUESTION)
            second = await relay.acomplete(messages=QUESTION)
            print(f"first call: cached={first.relay.cached}")
            print(f"second call: cached={second.relay.cached}")
            print(f"provider.request_count = {provider.request_count}")

            # 2. A streamed request for the same question is served from the same entry.
            stream = await relay.astream(messages=QUESTION)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            print(f"stream replayed from cache: {text!r} (cached={stream.relay.cached})")

            # 3. Each tenant has its own entries.
            acme = await relay.acomplete(messages=QUESTION, tenant="acme")
            globex = await relay.acomplete(messages=QUESTION, tenant="globex")
            acme_again = await relay.acomplete(messages=QUESTION, tenant="acme")
            print(
                f"tenants: acme cached={acme.relay.cached}, globex cached={globex.relay.cached}, "
                f"acme again cached={acme_again.relay.cached}"
            )
            print(f"provider.request_count = {provider.request_count}")

            # 4. Bypass: always ask the provider, for this call only.
            fresh = await relay.acomplete(messages=QUESTION, cache="bypass")
            print(f"cache='bypass': cached={fresh.relay.cached}")
            print(f"provider.request_count = {provider.request_count}")


if __name__ == "__main__":
    asyncio.run(main())
