"""The ``relaykit`` command. ``relaykit demo`` runs relaykit against embedded local providers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from relaykit.backends.openai_compatible import OpenAICompatible
from relaykit.contract.errors import RelayError
from relaykit.contract.schema import RelayInfo
from relaykit.contract.target import Target
from relaykit.facade.relay import Relay
from relaykit.middleware.cache import Cache
from relaykit.middleware.circuit_breaker import CircuitBreaker
from relaykit.middleware.retry import Retry
from relaykit.middleware.timeout import Timeout
from relaykit.strategies.fallback import Fallback
from relaykit.testing.fake_provider import FakeProvider, Reply

__all__ = ["main"]

_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_PARIS_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


async def demo() -> None:
    """Completions, streams and tool calls, then each failure the pipeline absorbs.

    Two local OpenAI-compatible servers stand in for two providers; every fault is scripted,
    so the run needs no key and no network and takes about a second.
    """
    async with (
        FakeProvider(model="primary-model") as primary,
        FakeProvider(model="backup-model") as backup,
    ):
        targets = [
            Target(
                OpenAICompatible(primary.url, api_key="sk-demo", model="primary-model"),
                name="primary",
                middleware=[CircuitBreaker(failures=2, cooldown_s=30)],
            ),
            Target(
                OpenAICompatible(backup.url, api_key="sk-demo", model="backup-model"),
                name="backup",
            ),
        ]
        relay = Relay(
            targets=targets,
            middleware=[
                Cache(ttl_s=600),
                Timeout(total_s=10, attempt_s=2),
                Retry(attempts=3, base_delay_s=0.05),
            ],
            strategy=Fallback(continue_streams=True),
        )
        async with relay:
            _section("answers")
            primary.script(Reply.ok("Hello! I am the primary provider."))
            answer = await relay.acomplete(messages=_ask("Say hello."))
            _show("plain", repr(answer.content), answer.relay)

            primary.script(Reply.ok("Streaming one word at a time, as it arrives."))
            stream = await relay.astream(messages=_ask("Stream something."))
            print(f"{'stream':<12}", end="", flush=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            print()
            _show("", "", stream.relay)

            primary.script(Reply.ok(None, tool_calls=[_PARIS_CALL]))
            answer = await relay.acomplete(
                messages=_ask("Weather in Paris?"), tools=[_WEATHER_TOOL]
            )
            call = (answer.choices[0].message.tool_calls or [])[0]
            _show("tool call", f"{call.function.name}({call.function.arguments})", answer.relay)

            answer = await relay.acomplete(messages=_ask("Say hello."))
            _show("cache hit", repr(answer.content), answer.relay)

            _section("failures absorbed")
            primary.script(Reply.ok("one two three four").drop_after(3))
            backup.script(Reply.ok(" three four"))
            stream = await relay.astream(messages=_ask("Count to four."))
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            _show("broken", f"primary dropped mid-stream; backup continued it: {text!r}", None)

            primary.script(Reply.rate_limited(retry_after=0.1))
            answer = await relay.acomplete(messages=_ask("Rate limited."))
            _show(
                "429", "primary pushed back for 0.1 s: the backup answered, no wait", answer.relay
            )
            await asyncio.sleep(0.25)  # primary's circuit is open for exactly those 0.1 s

            primary.default = Reply.overloaded()
            backup.script(Reply.overloaded())
            answer = await relay.acomplete(messages=_ask("Both fail once."))
            _show(
                "503 x2",
                "both failed; the retry backed off and tried the chain again",
                answer.relay,
            )
            before = primary.request_count
            answer = await relay.acomplete(messages=_ask("Primary is down."))
            skipped = primary.request_count == before
            _show(
                "breaker",
                f"primary's circuit is open: skipped, no request sent ({skipped})",
                answer.relay,
            )

            backup.default = Reply.quota()
            try:
                await relay.acomplete(messages=_ask("Everything fails."))
            except RelayError as exc:
                _show("all fail", type(exc).__name__, None)
                for attempt in getattr(exc, "attempts", ()):
                    _show("", f"{attempt.target}: {type(attempt.error).__name__}", None)
        counts = f"primary {primary.request_count}, backup {backup.request_count}"
        print(f"\nupstream requests: {counts}")


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _section(title: str) -> None:
    print(f"\n-- {title} " + "-" * (60 - len(title)))


def _show(label: str, what: str, info: RelayInfo | None) -> None:
    if label or what:
        print(f"{label:<12}{what}")
    if info is not None:
        print(f"{'':<12}served by {info.target}, attempts={info.attempts}, cached={info.cached}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relaykit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run relaykit against embedded local providers (no network)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        asyncio.run(demo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
