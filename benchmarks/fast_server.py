"""A fast OpenAI-compatible chat-completions server, run in its own process for the HTTP benchmarks.

The client is what the HTTP benchmarks measure, so the server must cost far less than any
client: it is an ``asyncio.Protocol`` that parses just enough HTTP/1.1 (request line, headers,
a ``Content-Length`` body, keep-alive) and writes answers prepared in advance. Paths:

- ``/v1/chat/completions``: a plain answer (``"content": "hi"``, usage), or, when the body
  asks ``"stream": true``, a stream of 8 content chunks, a finish chunk, a usage chunk and
  ``[DONE]``, sent as chunked transfer encoding with one event per HTTP chunk;
- ``/chunks/<n>/v1/chat/completions``: the same, with ``n`` content chunks;
- ``/hang/v1/chat/completions``: reads the request and never answers (a black hole).

Run as a script it prints ``PORT <n>`` once listening; ``start()`` does that in a child process
and returns its base URL. ``loadgen()`` is a minimal keep-alive client (raw sockets, no parsing
beyond counting bytes), used to say how fast the server is alone.

    python benchmarks/fast_server.py [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

STREAM_CHUNKS = 8
_CHUNKS_PATH = re.compile(rb"^/chunks/(\d+)/v1/chat/completions$")
_HEAD_END = b"\r\n\r\n"

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    "system_fingerprint": "fp_bench",
}


def plain_response() -> bytes:
    body = json.dumps(COMPLETION, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def stream_events(n: int) -> list[bytes]:
    """The SSE events of a stream with ``n`` content chunks (``"hi"`` split into tokens)."""
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": "hi" if i == 0 else " x"}) for i in range(n)]
    events.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}
    events.append(
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "gpt-4o-mini",
                "choices": [],
                "usage": usage,
            },
            separators=(",", ":"),
        ).encode()
        + b"\n\n"
    )
    events.append(b"data: [DONE]\n\n")
    return events


def stream_response(n: int) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    )
    framed = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in stream_events(n))
    return head + framed + b"0\r\n\r\n"


class _Answers:
    """Responses prepared once per path; streams of each length built on first request."""

    def __init__(self) -> None:
        self.plain = plain_response()
        self.streams: dict[int, bytes] = {}

    def stream(self, n: int) -> bytes:
        found = self.streams.get(n)
        if found is None:
            found = self.streams[n] = stream_response(n)
        return found


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


class _Connection(asyncio.Protocol):
    def __init__(self, answers: _Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(_HEAD_END)
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else None])
            body_end = end + 4 + length
            if len(buffer) < body_end:
                break
            body = buffer[end + 4 : body_end]
            buffer = buffer[body_end:]
            self._answer(head, body)
        self.buffer = buffer

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        path = head[: head.find(b"\r\n")].split(b" ")[1]
        streamed = b'"stream":true' in body or b'"stream": true' in body
        if path.endswith(b"/v1/chat/completions") and path.startswith(b"/hang/"):
            return  # a black hole: the request was read, no answer ever comes
        if path == b"/v1/chat/completions":
            n = STREAM_CHUNKS
        else:
            match = _CHUNKS_PATH.match(path)
            if match is None:
                self.transport.write(_NOT_FOUND)
                return
            n = int(match.group(1))
        self.transport.write(self.answers.stream(n) if streamed else self.answers.plain)


async def serve(port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    answers = _Answers()
    server = await loop.create_server(
        lambda: _Connection(answers), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def start() -> Iterator[str]:
    """Run the server in a child process for the duration; yields its base URL (``/v1``)."""
    process = subprocess.Popen(
        [sys.executable, __file__], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def request_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def loadgen(
    base_url: str, *, concurrency: int, seconds: float, stream: bool = False
) -> float:
    """Requests per second the server answers to a client that does nothing but send and count.

    Each of ``concurrency`` connections sends a request, waits until the known number of bytes
    of the answer has arrived, and sends the next: as little client work as HTTP allows.
    """
    host_port = base_url.split("//")[1].split("/")[0]
    host, port = host_port.split(":")
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "Say hi."}], "stream": stream}
    ).encode()
    request = request_bytes("/v1/chat/completions", body)
    size = len(stream_response(STREAM_CHUNKS) if stream else plain_response())
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    done = 0
    began = time.perf_counter()
    deadline = began + seconds

    async def keep_asking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal done
        while True:  # at least one request per connection, however short the run
            writer.write(request)
            await reader.readexactly(size)
            done += 1
            if time.perf_counter() >= deadline:
                return

    try:
        await asyncio.gather(*(keep_asking(r, w) for r, w in connections))
        return done / (time.perf_counter() - began)
    finally:
        for _, writer in connections:
            writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args().port))
