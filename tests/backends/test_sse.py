"""SSEDecoder: events come out whole however the network splits or joins the bytes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit.backends._sse import SSEDecoder, SSEEvent


def decode(*reads: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for read in reads for event in decoder.feed(read)]
    return events + decoder.flush()


def test_lf_separated_events_decode() -> None:
    assert decode(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [
        SSEEvent('{"a":1}'),
        SSEEvent("[DONE]"),
    ]


def test_crlf_separated_events_decode() -> None:
    assert decode(b"data: one\r\n\r\ndata: two\r\n\r\n") == [SSEEvent("one"), SSEEvent("two")]


def test_cr_only_separated_events_decode() -> None:
    assert decode(b"data: one\r\rdata: two\r\r") == [SSEEvent("one"), SSEEvent("two")]


def test_comments_and_keep_alives_are_skipped() -> None:
    raw = b": keep-alive\n\n:\n\ndata: x\n: in the middle\n\n: OPENROUTER PROCESSING\n\n"

    assert decode(raw) == [SSEEvent("x")]


def test_event_and_id_fields_are_read_and_the_event_name_kept() -> None:
    raw = b"event: message\nid: 7\nretry: 1000\ndata: hello\n\ndata: plain\n\n"

    assert decode(raw) == [SSEEvent("hello", event="message"), SSEEvent("plain")]


def test_multi_line_data_joins_with_newlines() -> None:
    assert decode(b"data: first\ndata: second\ndata:third\n\n") == [
        SSEEvent("first\nsecond\nthird")
    ]


def test_only_one_leading_space_is_stripped_from_a_value() -> None:
    assert decode(b"data:  indented\n\n") == [SSEEvent(" indented")]


def test_several_events_in_one_read_all_come_out_of_that_read() -> None:
    decoder = SSEDecoder()

    events = decoder.feed(b"data: 1\n\ndata: 2\n\ndata: 3\n\n")

    assert events == [SSEEvent("1"), SSEEvent("2"), SSEEvent("3")]


def test_an_event_split_across_reads_comes_out_when_its_blank_line_arrives() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b'data: {"content":') == []
    assert decoder.feed(b' "Hel"}\r') == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [SSEEvent('{"content": "Hel"}')]


def test_a_multibyte_character_split_across_reads_decodes() -> None:
    raw = "data: héllo ✓\n\n".encode()
    cut = raw.index("✓".encode()) + 1

    assert decode(raw[:cut], raw[cut:]) == [SSEEvent("héllo ✓")]


def test_a_last_event_without_its_blank_line_comes_out_at_flush() -> None:
    assert decode(b"data: a\n\ndata: [DONE]") == [SSEEvent("a"), SSEEvent("[DONE]")]


def test_a_last_cr_terminated_line_at_flush_carries_no_stray_cr() -> None:
    # A CR at the end of the bytes may be half a CRLF, so it waits; at the end it is a line end.
    assert decode(b"data: a\r\rdata: [DONE]\r") == [SSEEvent("a"), SSEEvent("[DONE]")]


def test_a_large_single_event_is_not_limited_by_line_length() -> None:
    payload = "x" * 300_000

    assert decode(f"data: {payload}\n\n".encode()) == [SSEEvent(payload)]


# --- property: splitting the byte stream anywhere yields the same events ---------------------

_payloads = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30
)
_separators = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    newline = draw(_separators)
    parts: list[str] = []
    expected: list[SSEEvent] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            parts.append(f": {draw(_payloads)}{newline}")
        event = draw(st.none() | st.from_regex(r"[a-z]{1,8}", fullmatch=True))
        if event is not None:
            parts.append(f"event: {event}{newline}")
        if draw(st.booleans()):
            parts.append(f"id: {draw(st.integers(0, 999))}{newline}")
        lines = draw(st.lists(_payloads, min_size=1, max_size=3))
        parts.extend(f"data: {line}{newline}" for line in lines)
        parts.append(newline)
        expected.append(SSEEvent("\n".join(lines), event))
    return "".join(parts).encode(), expected


@settings(max_examples=200, deadline=None)
@given(stream=_streams(), data=st.data())
def test_splitting_the_bytes_at_arbitrary_points_yields_the_same_events(
    stream: tuple[bytes, list[SSEEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=8)))
    reads = [raw[start:end] for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True)]

    assert decode(raw) == expected
    assert decode(*reads) == expected
    one_byte_at_a_time = [raw[i : i + 1] for i in range(len(raw))]
    assert decode(*one_byte_at_a_time) == expected


def test_a_broken_utf8_byte_becomes_a_replacement_character_instead_of_an_error() -> None:
    raw = b'data: {"content":"caf\xff au lait"}\n\n'

    events = decode(raw)

    assert events == [SSEEvent('{"content":"caf\ufffd au lait"}')]
    assert json.loads(events[0].data) == {"content": "caf\ufffd au lait"}


def test_a_broken_utf8_byte_in_a_last_event_without_its_blank_line_is_replaced_too() -> None:
    assert decode(b'data: {"content":"\xff"}') == [SSEEvent('{"content":"\ufffd"}')]
