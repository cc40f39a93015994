"""Incremental server-sent-events decoder for OpenAI-style streams.

Network reads split events anywhere, and one read may carry several events, so the decoder keeps
a byte buffer and emits complete ``data`` payloads only. It accepts LF, CRLF and CR line ends,
comment lines (``: keep-alive``), ``event:``/``id:``/``retry:`` fields, and multi-line data. It is
byte-based and does not use aiohttp's line reader, whose line-length limit a single large
tool-call chunk can exceed. Lines are decoded only once whole, so a character split across reads
is intact; a byte that is not UTF-8 (a provider's broken output) becomes U+FFFD rather than an
exception that retry and fallback would not recognise.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events they completed."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        buffer = self._buffer + data
        events: list[SSEEvent] = []
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else length)
            if cr >= 0:
                end = cr
                # A CR at the very end may be the first half of a CRLF: wait for more bytes.
                if cr + 1 == length:
                    break
                next_start = cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif lf >= 0:
                end, next_start = lf, lf + 1
            else:
                break
            self._line(buffer[start:end].decode("utf-8", "replace"), events)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """Events completed by the end of the stream (a last event without its blank line)."""
        events: list[SSEEvent] = []
        if self._buffer:
            # A CR held back as a possible half of a CRLF is, at the end, a line end.
            self._line(self._buffer.removesuffix(b"\r").decode("utf-8", "replace"), events)
            self._buffer = b""
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event))
            self._data = []
            self._event = None
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
