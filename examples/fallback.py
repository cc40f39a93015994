"""Fallback: several targets form a chain; when one fails, the next answers at once.

Shows:
- a 503 from the primary moves the call to the backup, with no backoff sleep;
- a quota error (429 insufficient_quota) moves on too, and is never retried;
- when every target fails, ``AllTargetsFailedError`` lists each attempt (and, being an
  ExceptionGroup, also works with ``except* QuotaExceededError``);
- ``Fallback(continue_streams=True)``: a stream that breaks mid-answer is continued by the
  backup, and the caller reads one answer, also when the backup starts over from the beginning
  (the repeated part is dropped); ``answer.relay`` says who wrote it;
- answer checks: ``Fallback(fallback_on=[empty_answer])`` treats an empty answer as a failure.

Run: python examples/fallback.py
"""

from __future__ import annotations

import asyncio

from relaykit import (
    AllTargetsFailedError,
    Fallback,
    OpenAICompatible,
    Relay,
    Target,
    empty_answer,
)
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Tell me a fact about foxes."}]


def targets(primary: FakeProvider, backup: FakeProvider) -> list[Target]:
    return [
        Target(OpenAICompatible(primary.url, api_key="sk-primary", model="big"), name="primary"),
        Target(OpenAICompatible(backup.url, api_key="sk-backup", model="small"), name="backup"),
    ]


async def main() -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        # Several targets = a fallback chain, in order. Fallback() is the default strategy.
        relay = Relay(targets=targets(primary, backup))
        # Streams continue on the next target when they break after their first chunk.
        continuing = Relay(
            targets=targets(primary, backup), strategy=Fallback(continue_streams=True)
        )
        # An empty answer counts as a failure, so the next target is asked.
        checked = Relay(
            targets=targets(primary, backup), strategy=Fallback(fallback_on=[empty_answer])
        )
        async with relay, continuing, checked:
            await demo(primary, backup, relay, continuing, checked)


async def demo(
    primary: FakeProvider, backup: FakeProvider, relay: Relay, continuing: Relay, checked: Relay
) -> None:
    # 1. The primary is overloaded.
    primary.script(Reply.overloaded())
    backup.script(Reply.ok("Foxes use the Earth's magnetic field to hunt."))
    answer = await relay.acomplete(messages=QUESTION)
    print(f"503 from primary -> served by {answer.relay.target}: {answer.content!r}")

    # 2. The primary's account is out of credit: skip it, do not retry it.
    primary.script(Reply.quota())
    backup.script(Reply.ok("A group of foxes is a skulk."))
    answer = await relay.acomplete(messages=QUESTION)
    print(f"quota error from primary -> served by {answer.relay.target}")
    print(f"requests so far: primary={primary.request_count} backup={backup.request_count}")

    # 3. Every target fails: one error lists every attempt.
    primary.script(Reply.quota())
    backup.script(Reply.server_error())
    try:
        await relay.acomplete(messages=QUESTION)
    except AllTargetsFailedError as error:
        tried = ", ".join(f"{a.target}: {type(a.error).__name__}" for a in error.attempts)
        print(f"all targets failed: {tried}")

    # 4. The primary's stream breaks after 3 chunks; the backup continues the answer.
    primary.script(Reply.ok("The quick brown fox jumps over the lazy dog.").drop_after(3))
    backup.script(Reply.ok(" brown fox jumps over the lazy dog."))
    stream = continuing.astream(messages=QUESTION)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    print(f"broken stream continued by backup: {text!r}")
    continuation = backup.requests[-1].body or {}
    print(f"the backup was shown the partial answer: {continuation['messages'][-2]['content']!r}")

    # 4b. The same break, and this time the backup ignores the request and starts over.
    primary.script(Reply.ok("The quick brown fox jumps over the lazy dog.").drop_after(3))
    backup.script(Reply.ok("The quick brown fox jumps over the lazy dog."))
    answer = await continuing.astream(messages=QUESTION).completion()
    print(f"backup started over, caller still got it once: {answer.content!r}")
    print(f"written by {answer.relay.target}, continued from {answer.relay.continued_from}")

    # 5. The primary answers with nothing; the answer check moves on.
    primary.script(Reply.ok(""))
    backup.script(Reply.ok("Fennec foxes have the largest ears relative to body size."))
    answer = await checked.acomplete(messages=QUESTION)
    print(f"empty answer from primary -> served by {answer.relay.target}")


if __name__ == "__main__":
    asyncio.run(main())
