"""Canonical JSON: one text per value, however its dicts were ordered, for cache keys.

The text is exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"))``. That call
builds a new encoder each time, which costs more than encoding a short request, and every
cached call makes a key; so the C encoder behind it is built once
(``relaykit._support.thirdparty``, where the private part it needs is pinned). Where the C encoder
is missing, the same text comes from a ``json.JSONEncoder`` built once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from relaykit._support.thirdparty import c_json_encoder

__all__ = ["canonical_json", "request_identity"]

# How an answer is delivered, not what is asked: a streamed and a plain call share an identity.
_DELIVERY = ("stream", "stream_options")


def _not_json(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _build() -> Callable[[Any], str]:
    encode = c_json_encoder(_not_json, sort_keys=True)
    if encode is None:
        return json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_not_json).encode

    def canonical(value: Any) -> str:
        return "".join(encode(value, 0))

    return canonical


canonical_json: Callable[[Any], str] = _build()
"""``value`` as sorted, compact JSON; TypeError, ValueError or RecursionError (a cycle) for
what JSON cannot hold."""


def request_identity(fields: Mapping[str, Any]) -> str | None:
    """What a request asks, as one text: canonical JSON of ``fields`` without the delivery
    fields (``stream``, ``stream_options``); None when a value is not JSON (a Python object
    passed in ``extra_body``). Equal texts ask the same question, which is what a cache keys on.
    """
    if "stream" in fields or "stream_options" in fields:
        fields = {k: v for k, v in fields.items() if k not in _DELIVERY}
    try:
        return canonical_json(fields)
    except (TypeError, ValueError, RecursionError):
        return None
