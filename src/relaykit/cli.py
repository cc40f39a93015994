"""The ``relaykit`` command. ``relaykit demo`` runs relaykit against embedded local providers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from relaykit.backends.openai_compatible import OpenAICompatible
from relaykit.errors import RelayError
from relaykit.relay import Relay
from relaykit.target import Target
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


async def demo() -> None:
    """Plain, streamed and tool-call completions, then a failover, on two local providers."""
    async with (
        FakeProvider(model="primary-model") as primary,
        FakeProvider(model="backup-model") as backup,
    ):
        primary_target = Target(
            OpenAICompatible(primary.url, api_key="sk-demo", model="primary-model"), name="primary"
        )
        backup_target = Target(
            OpenAICompatible(backup.url, api_key="sk-demo", model="backup-model"), name="backup"
        )
        async with Relay(targets=[primary_target, backup_target]) as relay:
            question = [{"role": "user", "content": "Say hello."}]

            primary.script(Reply.ok("Hello! I am the primary provider."))
            answer = await relay.acomplete(messages=question)
            _show("plain", f"{answer.content!r}", answer.relay)

            primary.script(Reply.ok("Streaming one word at a time, as it arrives."))
            stream = await relay.astream(messages=question)
            print("stream    ", end="", flush=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            print(f"\n          served by {stream.relay}")

            primary.script(
                Reply.ok(
                    None,
                    tool_calls=[
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                )
            )
            answer = await relay.acomplete(
                messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[_WEATHER_TOOL]
            )
            call = (answer.choices[0].message.tool_calls or [])[0]
            _show("tool call", f"{call.function.name}({call.function.arguments})", answer.relay)

            primary.script(Reply.overloaded())
            answer = await relay.acomplete(messages=question)
            _show("failover", f"primary answered 503, so {answer.content!r}", answer.relay)

            primary.script(Reply.quota())
            backup.script(Reply.auth_error())
            try:
                await relay.acomplete(messages=question)
            except RelayError as exc:
                _show("all fail", f"{type(exc).__name__}: {exc}", None)
            counts = f"primary {primary.request_count}, backup {backup.request_count}"
            print(f"\nupstream requests: {counts}")


def _show(label: str, what: str, info: object) -> None:
    print(f"{label:<10}{what}")
    if info is not None:
        print(f"          served by {info}")


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
