"""The clients the HTTP benchmarks compare, each built the way its users build it.

Every builder returns a harness ``Side`` whose ``call(i)`` makes one chat completion against
the benchmark server (``fast_server``) and returns the answer's text, so ``in_turns`` can check
that every side really got ``"hi"`` (a stream: every chunk's text joined) before timing it.
With ``first_token=True`` a streamed call returns ``(text, ns)``: the nanoseconds from the call
until its first chunk with text arrived (the time to first token).

- ``bare_aiohttp``: the hand-written call relaykit sits on. Plain: ``session.post(url,
  json=body)`` and ``await r.json()``; streamed: the SSE read loop (``async for line in
  r.content``, ``json.loads`` of every ``data:`` line until ``[DONE]``).
- ``relaykit``: ``Relay(targets=[OpenAICompatible(url, ...)])``, no middleware.
- ``relaykit_full``: Logging, Cache (every call a miss: a new prompt each time), Timeout,
  Retry, a two-target fallback chain and a CircuitBreaker on the first target.
- ``openai_sdk``: ``AsyncOpenAI(base_url=url).chat.completions.create``.
- ``litellm_acompletion``: ``litellm.acompletion(model="openai/...", api_base=url)``.
- ``litellm_router``: ``Router`` with one deployment.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from harness import Side, import_litellm

API_KEY = "sk-bench-not-a-real-key"
MODEL = "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Say hi."}]


def distinct_prompt(i: int) -> list[dict[str, str]]:
    """A new question per call: every call of a cached pipeline is a cache miss."""
    return [{"role": "user", "content": f"Say hi. ({i})"}]


def same_prompt(i: int) -> list[dict[str, str]]:
    return PROMPT


def configure_structlog() -> None:
    """A production-shaped structlog setup writing to a null sink.

    INFO and above, with level, timestamp and JSON rendering: what a service ships with. The
    lines are really rendered and written, only to /dev/null, so their cost is measured.
    """
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def expect_text(expected: str, first_token: bool = False) -> Callable[[Any], str | None]:
    def check(result: Any) -> str | None:
        text = result[0] if first_token else result
        if first_token and not result[1] > 0:
            return f"no time to first token in {result!r}"
        return None if text == expected else f"answered {text!r}, expected {expected!r}"

    return check


def stream_text(chunks: int) -> str:
    """The text of a ``fast_server`` stream with ``chunks`` content chunks."""
    return "hi" + " x" * (chunks - 1)


# --- the hand-written call ----------------------------------------------------------------------


def bare_aiohttp(
    url: str, *, stream: bool, concurrency: int, expected: str, first_token: bool = False
) -> Side:
    import aiohttp

    endpoint = f"{url}/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    session: aiohttp.ClientSession | None = None

    def opened() -> aiohttp.ClientSession:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession()
        return session

    async def plain(i: int) -> Any:
        body = {"model": MODEL, "messages": PROMPT}
        async with opened().post(endpoint, json=body, headers=headers) as r:
            answer = await r.json()
        return answer["choices"][0]["message"]["content"]

    async def streamed(i: int) -> Any:
        began = time.perf_counter_ns()
        first = 0
        body = {"model": MODEL, "messages": PROMPT, "stream": True}
        text = []
        async with opened().post(endpoint, json=body, headers=headers) as r:
            async for line in r.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].rstrip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if chunk["choices"]:
                    content = chunk["choices"][0]["delta"].get("content")
                    if content:
                        first = first or time.perf_counter_ns() - began
                        text.append(content)
        return ("".join(text), first) if first_token else "".join(text)

    async def close() -> None:
        if session is not None:
            await session.close()

    return Side(
        "bare aiohttp",
        streamed if stream else plain,
        check=expect_text(expected, first_token),
        close=close,
        concurrency=concurrency,
        keep_results=first_token,
    )


# --- relaykit -------------------------------------------------------------------------------------


def _relaykit_side(
    label: str,
    relay: Any,
    messages: Callable[[int], Any],
    *,
    stream: bool,
    concurrency: int,
    expected: str,
    first_token: bool = False,
) -> Side:
    async def plain(i: int) -> Any:
        return (await relay.acomplete(messages=messages(i))).content

    async def streamed(i: int) -> Any:
        began = time.perf_counter_ns()  # before astream(): it validates the request at once
        return await _joined(relay.astream(messages=messages(i)), began, first_token)

    return Side(
        label,
        streamed if stream else plain,
        check=expect_text(expected, first_token),
        close=relay.aclose,
        concurrency=concurrency,
        keep_results=first_token,
    )


def relaykit(
    url: str, *, stream: bool, concurrency: int, expected: str, first_token: bool = False
) -> Side:
    from relaykit import OpenAICompatible, Relay

    relay = Relay(targets=[OpenAICompatible(url, api_key=API_KEY, model=MODEL)])
    return _relaykit_side(
        "relaykit",
        relay,
        same_prompt,
        stream=stream,
        concurrency=concurrency,
        expected=expected,
        first_token=first_token,
    )


FULL_PIPELINE = (
    "Relay(targets=[Target(OpenAICompatible(url), middleware=[CircuitBreaker()]), "
    "OpenAICompatible(url)], middleware=[Logging(), Cache(ttl_s=600), Timeout(total_s=30), "
    "Retry(attempts=3)]), a new prompt per call (cache misses)"
)


def relaykit_full(url: str, *, stream: bool, concurrency: int, expected: str) -> Side:
    from relaykit import (
        Cache,
        CircuitBreaker,
        Logging,
        OpenAICompatible,
        Relay,
        Retry,
        Target,
        Timeout,
    )

    relay = Relay(
        targets=[
            Target(
                OpenAICompatible(url, api_key=API_KEY, model=MODEL, name="primary"),
                middleware=[CircuitBreaker()],
            ),
            OpenAICompatible(url, api_key=API_KEY, model=MODEL, name="secondary"),
        ],
        middleware=[Logging(), Cache(ttl_s=600), Timeout(total_s=30), Retry(attempts=3)],
    )
    return _relaykit_side(
        "relaykit full pipeline",
        relay,
        distinct_prompt,
        stream=stream,
        concurrency=concurrency,
        expected=expected,
    )


# --- peers ----------------------------------------------------------------------------------------


async def _joined(chunks: Any, began: int = 0, first_token: bool = False) -> Any:
    """The text of a stream of OpenAI-shaped chunks; with ``first_token``, also the ns from
    ``began`` until the first chunk with text."""
    first = 0
    text = []
    async for chunk in chunks:
        if chunk.choices:
            content = chunk.choices[0].delta.content
            if content:
                first = first or time.perf_counter_ns() - began
                text.append(content)
    return ("".join(text), first) if first_token else "".join(text)


def openai_sdk(
    url: str, *, stream: bool, concurrency: int, expected: str, first_token: bool = False
) -> Side:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key=API_KEY)

    async def plain(i: int) -> Any:
        answer = await client.chat.completions.create(model=MODEL, messages=PROMPT)  # type: ignore[arg-type]
        return answer.choices[0].message.content

    async def streamed(i: int) -> Any:
        began = time.perf_counter_ns()
        chunks = await client.chat.completions.create(
            model=MODEL,
            messages=PROMPT,  # type: ignore[arg-type]
            stream=True,
        )
        return await _joined(chunks, began, first_token)

    return Side(
        "openai SDK",
        streamed if stream else plain,
        check=expect_text(expected, first_token),
        close=client.close,
        concurrency=concurrency,
        keep_results=first_token,
    )


def litellm_acompletion(
    url: str, *, stream: bool, concurrency: int, expected: str, first_token: bool = False
) -> Side:
    litellm = import_litellm()

    async def plain(i: int) -> Any:
        answer = await litellm.acompletion(
            model=f"openai/{MODEL}", api_base=url, api_key=API_KEY, messages=PROMPT
        )
        return answer.choices[0].message.content

    async def streamed(i: int) -> Any:
        began = time.perf_counter_ns()
        chunks = await litellm.acompletion(
            model=f"openai/{MODEL}", api_base=url, api_key=API_KEY, messages=PROMPT, stream=True
        )
        return await _joined(chunks, began, first_token)

    return Side(
        "litellm.acompletion",
        streamed if stream else plain,
        check=expect_text(expected, first_token),
        concurrency=concurrency,
        keep_results=first_token,
    )


def litellm_router(url: str, *, stream: bool, concurrency: int, expected: str) -> Side:
    litellm = import_litellm()
    router = litellm.Router(
        model_list=[
            {
                "model_name": "m",
                "litellm_params": {"model": f"openai/{MODEL}", "api_base": url, "api_key": API_KEY},
            }
        ]
    )

    async def plain(i: int) -> Any:
        answer = await router.acompletion(model="m", messages=PROMPT)
        return answer.choices[0].message.content

    async def streamed(i: int) -> Any:
        return await _joined(await router.acompletion(model="m", messages=PROMPT, stream=True))

    return Side(
        "LiteLLM Router",
        streamed if stream else plain,
        check=expect_text(expected),
        concurrency=concurrency,
    )


ALL = {
    "bare aiohttp": bare_aiohttp,
    "relaykit": relaykit,
    "relaykit full pipeline": relaykit_full,
    "openai SDK": openai_sdk,
    "litellm.acompletion": litellm_acompletion,
    "LiteLLM Router": litellm_router,
}
