"""The stream assembler: chunks give back the ChatCompletion the non-streamed call returns."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit.contract.assembler import StreamAssembler, chunks_from_completion
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk

HEAD = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4o",
    "system_fingerprint": "fp_1",
}


def chunk(delta: dict[str, Any] | None = None, **choice: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {**HEAD, "choices": [{"index": 0, "delta": delta or {}, **choice}]}
    )


def assemble(chunks: list[ChatCompletionChunk]) -> ChatCompletion:
    assembler = StreamAssembler()
    for item in chunks:
        assembler.add(item)
    return assembler.completion()


def call_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


def logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}


def test_content_deltas_usage_and_finish_reason_assemble_into_the_plain_completion() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "The capital"}, logprobs={"content": [logprob("The capital")]}),
        chunk({"content": " is Paris."}, logprobs={"content": [logprob(" is Paris.")]}),
        chunk({}, finish_reason="stop"),
        ChatCompletionChunk.model_validate(
            {
                **HEAD,
                "choices": [],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": 5,
                    "total_tokens": 17,
                    "prompt_tokens_details": {"cached_tokens": 8},
                    "completion_tokens_details": {"reasoning_tokens": 2},
                },
            }
        ),
    ]

    completion = assemble(chunks)

    assert completion.model_dump(exclude_none=True) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital is Paris."},
                "finish_reason": "stop",
                "logprobs": {"content": [logprob("The capital"), logprob(" is Paris.")]},
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }


def test_two_parallel_tool_calls_with_interleaved_argument_deltas_assemble_by_index() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk(call_delta(0, id="call_a", type="function", function={"name": "get_weather"})),
        chunk(call_delta(1, id="call_b", type="function", function={"name": "get_time"})),
        chunk(call_delta(0, function={"arguments": '{"ci'})),
        chunk(call_delta(1, function={"arguments": '{"tz":'})),
        chunk(call_delta(0, function={"arguments": 'ty":"Paris"}'})),
        chunk(call_delta(1, function={"arguments": '"CET"}'})),
        chunk({}, finish_reason="tool_calls"),
    ]

    completion = assemble(chunks)

    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", '{"tz":"CET"}'),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_tool_call_deltas_arriving_out_of_index_order_still_sort_by_index() -> None:
    chunks = [
        chunk(call_delta(1, id="call_b", function={"name": "second", "arguments": "{}"})),
        chunk(call_delta(0, id="call_a", function={"name": "first", "arguments": "{}"})),
        chunk({}, finish_reason="tool_calls"),
    ]

    calls = assemble(chunks).choices[0].message.tool_calls

    assert calls is not None
    assert [c.id for c in calls] == ["call_a", "call_b"]


def test_several_choices_assemble_separately_by_index() -> None:
    def choice_chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> Any:
        return ChatCompletionChunk.model_validate(
            {**HEAD, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
        )

    chunks = [
        choice_chunk(0, {"role": "assistant", "content": "A"}),
        choice_chunk(1, {"role": "assistant", "content": "B"}),
        choice_chunk(1, {"content": "b"}),
        choice_chunk(0, {"content": "a"}, "stop"),
        choice_chunk(1, {}, "length"),
    ]

    completion = assemble(chunks)

    assert [(c.index, c.message.content, c.finish_reason) for c in completion.choices] == [
        (0, "Aa", "stop"),
        (1, "Bb", "length"),
    ]


def test_provider_text_fields_in_deltas_concatenate_like_content() -> None:
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}),
        chunk({"content": "42"}),
        chunk({}, finish_reason="stop"),
    ]

    message = assemble(chunks).choices[0].message

    assert message.model_dump(exclude_none=True) == {
        "role": "assistant",
        "content": "42",
        "reasoning_content": "Let me think.",
    }


def test_partial_completion_holds_what_arrived_and_is_not_finished() -> None:
    assembler = StreamAssembler()
    for item in [chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"})]:
        assembler.add(item)

    partial = assembler.completion()

    assert partial.content == "Hello"
    assert partial.choices[0].finish_reason is None
    assert assembler.text() == "Hello"
    assert assembler.chunk_count == 2
    assert not assembler.finished
    assembler.add(chunk({}, finish_reason="stop"))
    assert assembler.finished


def test_chunks_from_completion_send_usage_only_when_asked() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )

    without = chunks_from_completion(completion)
    with_usage = chunks_from_completion(completion, include_usage=True)

    assert all(c.usage is None for c in without)
    assert with_usage[-1].choices == [] and with_usage[-1].usage == completion.usage
    assert all(c.object == "chat.completion.chunk" for c in with_usage)


# --- property: chunks_from_completion, then assembling, gives the completion back -----------

_text = st.text(max_size=20)
_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.from_regex(r"call_[a-z0-9]{1,6}", fullmatch=True),
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True), "arguments": _text}
            ),
        }
    ),
    min_size=1,
    max_size=3,
)
_logprobs = st.fixed_dictionaries(
    {
        "content": st.lists(
            st.fixed_dictionaries(
                {
                    "token": _text,
                    "logprob": st.floats(-20, 0),
                    "bytes": st.lists(st.integers(0, 255), max_size=4),
                }
            ),
            min_size=1,
            max_size=3,
        )
    }
)


@st.composite
def _messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if draw(st.booleans()):
        message["tool_calls"] = draw(_tool_calls)
        # A tool-call answer's content is null, or real text; "" would come back as null.
        content = draw(st.none() | _text.filter(bool))
    else:
        content = draw(st.none() | _text)
    message["content"] = content
    if draw(st.booleans()):
        message["reasoning_content"] = draw(_text)
    if draw(st.booleans()):
        message["refusal"] = draw(_text)
    return message


@st.composite
def _completions(draw: st.DrawFn) -> ChatCompletion:
    count = draw(st.integers(1, 3))
    choices = []
    for index in range(count):
        choice: dict[str, Any] = {
            "index": index,
            "message": draw(_messages()),
            "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls"])),
        }
        if draw(st.booleans()):
            choice["logprobs"] = draw(_logprobs)
        choices.append(choice)
    data: dict[str, Any] = {
        "id": draw(st.from_regex(r"chatcmpl-[a-z0-9]{1,8}", fullmatch=True)),
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(st.sampled_from(["gpt-4o", "llama-3", "m"])),
        "choices": choices,
    }
    if draw(st.booleans()):
        data["system_fingerprint"] = "fp_x"
    if draw(st.booleans()):
        data["provider_meta"] = {"region": draw(_text)}
    if draw(st.booleans()):
        prompt, completion = draw(st.integers(0, 999)), draw(st.integers(0, 999))
        data["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
        }
    return ChatCompletion.model_validate(data)


@settings(max_examples=100, deadline=None)
@given(completion=_completions())
def test_streaming_a_completion_and_assembling_it_gives_it_back(
    completion: ChatCompletion,
) -> None:
    assembled = assemble(chunks_from_completion(completion, include_usage=True))

    assert assembled.model_dump(exclude_none=True) == completion.model_dump(exclude_none=True)


@settings(max_examples=30, deadline=None)
@given(completion=_completions())
def test_streaming_without_include_usage_gives_it_back_without_usage(
    completion: ChatCompletion,
) -> None:
    assembled = assemble(chunks_from_completion(completion))

    expected = completion.model_dump(exclude_none=True)
    expected.pop("usage", None)
    assert assembled.model_dump(exclude_none=True) == expected


def test_tool_call_deltas_without_index_and_stream_only_fields_still_assemble() -> None:
    from relaykit.contract.assembler import StreamAssembler
    from relaykit.contract.schema import ChatCompletionChunk

    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [
        {
            **head,
            "obfuscation": "x1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ],
                    },
                }
            ],
        },
        {
            **head,
            "obfuscation": "x2",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"function": {"arguments": ": 1}"}}]}}
            ],
        },
        {
            **head,
            "obfuscation": "x3",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        },
    ]
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(ChatCompletionChunk.model_validate(chunk))
    completion = assembler.completion()
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.arguments == '{"a": 1}'
    assert "obfuscation" not in completion.model_dump()


def test_parallel_tool_calls_without_index_are_told_apart_by_id() -> None:
    from relaykit.contract.assembler import StreamAssembler
    from relaykit.contract.schema import ChatCompletionChunk

    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(call: dict[str, object]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {**head, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
        )

    assembler = StreamAssembler()
    for delta in (
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}},
        {"function": {"arguments": "}"}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "[]"}},
    ):
        assembler.add(chunk(delta))
    calls = assembler.completion().choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", "{}"),
        ("b", "g", "[]"),
    ]


def test_fields_sent_only_on_later_chunks_and_choice_extras_are_kept() -> None:
    first = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1}
    chunks = [
        ChatCompletionChunk.model_validate(
            {**first, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}
        ),
        ChatCompletionChunk.model_validate(
            {
                **first,
                "model": "m",
                "system_fingerprint": "fp_late",
                "session_id": "s-1",
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": None},
                ],
            }
        ),
        ChatCompletionChunk.model_validate(
            {
                **first,
                "session_id": "s-2",
                "choices": [{"index": 0, "delta": {}, "stop_reason": 128009}],
            }
        ),
    ]

    answer = assemble(chunks)

    dumped = answer.model_dump(exclude_none=True)
    assert (dumped["model"], dumped["system_fingerprint"]) == ("m", "fp_late")
    assert dumped["session_id"] == "s-1"  # the first value sent wins
    assert dumped["choices"][0]["stop_reason"] == 128009  # vLLM's, on the choice
    assert dumped["choices"][0]["finish_reason"] == "stop"
    # Streaming the assembled answer again and assembling it gives it back, extras included.
    again = assemble(chunks_from_completion(answer))
    assert again.model_dump(exclude_none=True) == dumped


def test_several_unindexed_tool_calls_in_one_delta_stay_apart() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"id": "", "function": {"name": "f", "arguments": "{}"}},
                            {"id": "", "function": {"name": "g", "arguments": "[]"}},
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    assembler = StreamAssembler()
    assembler.add(chunk)
    calls = assembler.completion().choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["f", "g"]
