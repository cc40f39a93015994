"""Logging: one structured log line per call, plus a line for every failure and fallback.

Shows ``Logging()`` writing JSON lines through structlog: a warning when the primary fails and
the call falls back, and one ``relaykit.completed`` line per call with target, model, latency,
attempts and token usage. Message content is not logged unless ``Logging(content=True)``, and
API keys never are.

relaykit never configures structlog: your application does, once, at startup. This example
configures it for JSON on stdout (the cheapest renderer, and what log shippers want).

Run: python examples/logging_example.py
"""

from __future__ import annotations

import asyncio
import logging
import sys

import structlog

from relaykit import OpenAICompatible, Relay, Target
from relaykit.middleware.logging import Logging
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Name a prime number."}]


def configure_structlog() -> None:
    """What an application does once at startup: JSON lines on stdout, info and above."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


async def main() -> None:
    configure_structlog()
    async with FakeProvider() as primary, FakeProvider() as backup:
        relay = Relay(
            targets=[
                Target(OpenAICompatible(primary.url, api_key="sk-demo", model="m"), name="primary"),
                Target(OpenAICompatible(backup.url, api_key="sk-demo", model="m"), name="backup"),
            ],
            middleware=[Logging()],  # first listed = outermost, so its latency covers the call
        )
        async with relay:
            primary.script(Reply.ok("7"))
            await relay.acomplete(messages=QUESTION, tenant="acme")

            primary.script(Reply.overloaded())  # logs the failure and the fallback, then success
            backup.script(Reply.ok("11"))
            await relay.acomplete(messages=QUESTION, tenant="acme")


if __name__ == "__main__":
    asyncio.run(main())
