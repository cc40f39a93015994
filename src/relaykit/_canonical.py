"""Canonical JSON: one text per value, however its dicts were ordered, for cache keys.

The text is exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"))``. That call
builds a new encoder each time, which costs more than encoding a short request (2 µs against
0.7 µs), and every cached call makes a key; so the C encoder behind it is built once, here.
Where the C encoder is missing (a Python without the ``_json`` accelerator), the same text comes
from a ``json.JSONEncoder`` built once.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["canonical_json", "request_identity"]

# How an answer is delivered, not what is asked: a streamed and a plain call share an identity.
_DELIVERY = ("stream", "stream_options")


def _not_json(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _build() -> Callable[[Any], str]:
    make: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:
        return json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_not_json).encode
    encode = make(
        None,  # markers: no cycle check, a request body is a tree (a cycle: RecursionError)
        _not_json,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )

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
