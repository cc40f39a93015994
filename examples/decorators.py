"""Decorators: typed prompt functions, and resilience around your own SDK calls.

Shows:
- ``@relay.prompt()`` on a function returning ``str``: the docstring is the prompt, the
  arguments fill it, the answer's text is returned;
- ``@relay.prompt()`` on a function returning a pydantic model: the request asks for
  ``response_format: json_schema`` and the answer is validated; an answer that does not
  validate counts as a failed attempt, so the fallback asks the next target;
- ``@resilient(...)`` around a function that calls a model with the official ``openai`` SDK:
  the SDK's errors are classified (a 429 quota error, a 503, ...) and relaykit's retry and
  model fallback run around the function.

Run: python examples/decorators.py
"""

from __future__ import annotations

import asyncio

import openai
from pydantic import BaseModel

from relaykit import OpenAICompatible, Relay, Retry, Target, resilient
from relaykit.testing import FakeProvider, Reply


class Sentiment(BaseModel):
    label: str
    confidence: float


async def prompt_functions(primary: FakeProvider, backup: FakeProvider) -> None:
    relay = Relay(
        targets=[
            Target(OpenAICompatible(primary.url, api_key="sk-demo", model="m"), name="primary"),
            Target(OpenAICompatible(backup.url, api_key="sk-demo", model="m"), name="backup"),
        ]
    )

    @relay.prompt(temperature=0)
    async def summarize(text: str, words: int = 5) -> str:
        """Summarize in {words} words: {text}"""

    @relay.prompt(system="You classify sentiment. Answer in JSON.")
    async def classify(review: str) -> Sentiment:
        """Classify the sentiment of this review: {review}"""

    async with relay:
        primary.script(Reply.ok("Fox outruns sleepy dog."))
        summary = await summarize("The quick brown fox jumps over the lazy dog, twice.")
        sent = (primary.requests[-1].body or {})["messages"][0]["content"]
        print(f"prompt sent: {sent!r}")
        print(f"summarize -> {summary!r}")

        primary.script(Reply.ok("I think it's positive!"))  # not JSON: rejected
        backup.script(Reply.ok('{"label": "positive", "confidence": 0.93}'))
        sentiment = await classify("Loved it, would buy again.")
        print(f"classify -> {sentiment!r} (the primary's non-JSON answer was rejected)")


async def resilient_sdk_call(provider: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-demo", max_retries=0)

    @resilient(retry=Retry(attempts=3, base_delay_s=0.05), fallback_models=["gpt-4o-mini"])
    async def ask(question: str, model: str = "gpt-4o") -> str:
        answer = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}]
        )
        return answer.choices[0].message.content or ""

    # gpt-4o is out of quota (not retried): the function is called again with gpt-4o-mini.
    provider.script(Reply.quota(), Reply.ok("Paris."))
    print(f"resilient ask -> {await ask('Capital of France?')!r}")
    models = [(r.body or {}).get("model") for r in provider.requests]
    print(f"models the provider saw: {models}")

    # Both models overloaded once: the whole chain is retried, and gpt-4o answers.
    provider.reset()
    provider.script(Reply.overloaded(), Reply.overloaded(), Reply.ok("Rome."))
    print(f"resilient ask after 503s -> {await ask('Capital of Italy?')!r}")
    models = [(r.body or {}).get("model") for r in provider.requests]
    print(f"models the provider saw: {models}")
    await client.close()


async def main() -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        await prompt_functions(primary, backup)
    async with FakeProvider() as provider:
        await resilient_sdk_call(provider)


if __name__ == "__main__":
    asyncio.run(main())
