"""Config files: build a whole Relay from relay.yaml with ``Relay.from_config``.

Shows ``examples/relay.yaml`` (two targets, the primary guarded by a circuit breaker and a
rate limit; logging, cache, timeout and retry around the call; streams continued on fallback;
routes by model alias) running against two local fake providers, whose URLs reach the file
through the ``${FAKE_PRIMARY_URL}`` and ``${FAKE_BACKUP_URL}`` environment variables.

Run: python examples/from_config.py
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import structlog

from relaykit import Relay
from relaykit.testing import FakeProvider, Reply

CONFIG = Path(__file__).with_name("relay.yaml")
QUESTION = [{"role": "user", "content": "Plan a weekend in Lisbon."}]


async def main() -> None:
    # The file's Logging() writes through structlog as the application configured it; here,
    # info and above (the default would also print relaykit's debug lines).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    async with FakeProvider() as primary, FakeProvider() as backup:
        os.environ["FAKE_PRIMARY_URL"] = primary.url
        os.environ["FAKE_BACKUP_URL"] = backup.url
        relay = Relay.from_config(CONFIG)
        primary.default = Reply.ok("Day one: Alfama. Day two: Belem.")
        backup.default = Reply.ok("Walk the hills, eat pasteis de nata.")
        async with relay:
            answer = await relay.acomplete(messages=QUESTION, model="smart")
            print(f"model='smart' -> served by {answer.relay.target}")

            answer = await relay.acomplete(messages=QUESTION, model="smart")
            print(f"the same request again -> cached={answer.relay.cached}")

            primary.script(Reply.overloaded())
            answer = await relay.acomplete(messages=QUESTION, model="smart", cache="bypass")
            print(f"primary answers 503 -> served by {answer.relay.target}")

            answer = await relay.acomplete(messages=QUESTION, model="cheap")
            print(f"model='cheap' -> served by {answer.relay.target}")

            stream = await relay.astream(messages=QUESTION, model="smart", cache="bypass")
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            print(f"streamed from {stream.relay.target}: {text!r}")
            sent = [(r.body or {}).get("model") for r in primary.requests + backup.requests]
            print(f"upstream models requested: {sorted(set(sent))}")


if __name__ == "__main__":
    asyncio.run(main())
