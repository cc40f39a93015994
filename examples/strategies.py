"""Strategies over targets: LoadBalance by weight and by latency, and Hedge against a slow answer.

Shows:
- ``LoadBalance(weights={"east": 3, "west": 1})`` sends about three calls in four to east (a
  seeded clock makes the picks repeatable);
- ``LoadBalance("least_latency")`` moves the traffic to west once east answers slowly;
- ``Hedge(after_s=0.1)``: when the primary has not answered after 0.1 s the backup is asked too,
  the first answer wins and the slow request is cancelled; ``answer.relay.route`` says so.

Run: python examples/strategies.py
"""

from __future__ import annotations

import asyncio

from relaykit import Hedge, LoadBalance, OpenAICompatible, Relay, Target
from relaykit.testing import FakeClock, FakeProvider, Reply

QUESTION = [{"role": "user", "content": "Say hi."}]


def targets(*providers: tuple[str, FakeProvider]) -> list[Target]:
    return [
        Target(OpenAICompatible(p.url, api_key="sk-demo", model="m"), name=name)
        for name, p in providers
    ]


async def main() -> None:
    async with FakeProvider() as east, FakeProvider() as west:
        pair = targets(("east", east), ("west", west))

        weighted = LoadBalance(weights={"east": 3, "west": 1})
        async with Relay(targets=pair, strategy=weighted, clock=FakeClock(seed=1)) as relay:
            for _ in range(100):
                await relay.acomplete(messages=QUESTION)
        print(f"weights 3:1 -> east served {east.request_count}, west {west.request_count}")

        east.reset()
        west.reset()
        async with Relay(targets=pair, strategy=LoadBalance("least_latency")) as relay:
            for _ in range(5):
                await relay.acomplete(messages=QUESTION)
            east.default = Reply.ok().delayed(0.2)  # east slows down
            before = west.request_count
            for _ in range(10):
                await relay.acomplete(messages=QUESTION)
        # One slow answer from east is enough: at most that one of the next ten goes there.
        moved = west.request_count - before >= 9
        print(f"east slowed down -> the next calls go to west: {moved}")

    async with FakeProvider() as primary, FakeProvider() as backup:
        hedge = Hedge(after_s=0.1)  # hedges add at most 10 % to the requests
        pair = targets(("primary", primary), ("backup", backup))
        async with Relay(targets=pair, strategy=hedge) as relay:
            for _ in range(10):  # ten quick answers fill the hedge budget with one request
                await relay.acomplete(messages=QUESTION)
            primary.script(Reply.ok("late").delayed(2.0))
            backup.script(Reply.ok("Hi from the backup"))
            answer = await relay.acomplete(messages=QUESTION)
        assert answer.relay is not None
        print(f"slow primary hedged -> {answer.content!r} from {answer.relay.target}")
        print("route:", [step.describe().split(" (")[0] for step in answer.relay.route])
        print(f"hedges fired {hedge.stats.fired}, won {hedge.stats.won}")


if __name__ == "__main__":
    asyncio.run(main())
