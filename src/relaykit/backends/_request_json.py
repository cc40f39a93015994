"""A request's JSON body in one step: the HTTP backend's one speed shortcut, labelled here.

What is sent is ``json.dumps({**request.body(), "model": model, "stream": stream})``, without
``stream_options`` when not streaming. Building that dict and encoding it with the json module
costs about twice what pydantic-core takes to write the validated request as JSON directly,
and the body is encoded on every upstream request; benchmarks/README.md has the counts. So the
request is serialized by pydantic-core without ``model`` and ``stream``, and those two lead the
object, their bytes prepared once per model. Where the shortcut cannot say the same thing (the
backend adds fields of its own with ``extra_body``, which override the request's), or pydantic
cannot serialize a value (a Python object in ``extra_body``), the dict is built and encoded as
before, so the answer to "what is sent" never depends on the path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic_core import PydanticSerializationError

from relaykit.contract.schema import ChatRequest

__all__ = ["request_json"]

_SERIALIZER = ChatRequest.__pydantic_serializer__
_LEADS = {"model", "stream"}
_LEADS_PLAIN = {"model", "stream", "stream_options"}  # OpenAI rejects stream_options alone


def request_json(
    request: ChatRequest, model: str, *, stream: bool, extra: Mapping[str, Any]
) -> bytes:
    """The body to POST for ``request`` to ``model``; ``extra`` fields override the request's."""
    if not extra:
        try:
            rest: bytes = _SERIALIZER.to_json(
                request,
                exclude_none=True,
                by_alias=True,
                exclude=_LEADS if stream else _LEADS_PLAIN,
            )
        except PydanticSerializationError:
            pass  # a value only the json module may know how to refuse: the dict path says
        else:
            # rest is '{...}' and never '{}': a request has at least one message.
            return _lead(model, stream) + rest[1:]
    body = {**request.body(), "model": model, "stream": stream, **extra}
    if not stream:
        body.pop("stream_options", None)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@lru_cache(maxsize=64)
def _lead(model: str, stream: bool) -> bytes:
    """``{"model":"<model>","stream":<stream>,`` (the rest of the object follows)."""
    return b'{"model":%s,"stream":%s,' % (
        json.dumps(model, ensure_ascii=False).encode(),
        b"true" if stream else b"false",
    )
