"""CircuitBreaker: stop asking a target that keeps failing, then try it again after a cool-down.

Shows:
- after 3 consecutive failures the primary's circuit opens (a ``CircuitOpened`` event);
- while it is open, calls skip the primary without sending it any request, and the backup
  answers with no added latency;
- after the cool-down one probe call goes through; it succeeds, and the circuit closes.

A breaker is per-target middleware: it guards one provider, not the whole chain. The cool-down
here is 0.2 s to keep the demo fast; the default is 30 s.

Run: python examples/circuit_breaker.py
"""

from __future__ import annotations

import asyncio

from relaykit import CircuitBreaker, OpenAICompatible, Relay, Target
from relaykit.events import CircuitClosed, CircuitOpened, Event
from relaykit.testing import FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Translate 'hello' to French."}]


def show(event: Event) -> None:
    """A listener: print the breaker's state changes as they happen."""
    if isinstance(event, CircuitOpened):
        print(f"  event: circuit of {event.target!r} opened for {event.cooldown_s:g} s")
    elif isinstance(event, CircuitClosed):
        print(f"  event: circuit of {event.target!r} closed")


async def main() -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(primary.url, api_key="sk-demo", model="m"),
                    name="primary",
                    middleware=[CircuitBreaker(failures=3, cooldown_s=0.2)],
                ),
                Target(OpenAICompatible(backup.url, api_key="sk-demo", model="m"), name="backup"),
            ],
            listeners=[show],
        )
        async with relay:
            primary.default = Reply.overloaded()  # the primary is down: every request gets 503
            backup.default = Reply.ok("Bonjour")

            for call in range(1, 6):
                answer = await relay.acomplete(messages=QUESTION)
                print(
                    f"call {call}: served by {answer.relay.target}; "
                    f"requests the primary received so far: {primary.request_count}"
                )

            # The primary recovers; after the cool-down a probe reaches it and closes the circuit.
            primary.default = Reply.ok("Bonjour !")
            await asyncio.sleep(0.25)  # real-time: wait out the 0.2 s cool-down
            answer = await relay.acomplete(messages=QUESTION)
            print(f"after the cool-down: served by {answer.relay.target}")


if __name__ == "__main__":
    asyncio.run(main())
