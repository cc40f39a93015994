"""Ready-made backends for the providers relaykit was started from.

Each preset carries what its provider's API document says: the auth scheme, the base URL where
the document gives one, and its extra request fields. Where a document gives no base URL,
leaving ``base_url`` out is an error that says so, rather than a guess.
"""

from __future__ import annotations

import os
from typing import Any

from relaykit.backends.openai_compatible import OpenAICompatible
from relaykit.contract.errors import ConfigError

__all__ = ["morpheus", "openai", "openai_compatible", "voidai"]


def openai(
    api_key: str | None = None,
    *,
    model: str | None = None,
    base_url: str = "https://api.openai.com/v1",
    name: str = "openai",
    **options: Any,
) -> OpenAICompatible:
    """OpenAI's API; the key defaults to ``$OPENAI_API_KEY``."""
    return OpenAICompatible(
        base_url, _key(api_key, "OPENAI_API_KEY", "openai"), model=model, name=name, **options
    )


def voidai(
    api_key: str | None = None,
    *,
    model: str | None = None,
    base_url: str = "https://api.voidai.app/v1",
    name: str = "voidai",
    **options: Any,
) -> OpenAICompatible:
    """VoidAI's gateway (Bearer key, ``/v1/chat/completions``); key from ``$VOIDAI_API_KEY``."""
    return OpenAICompatible(
        base_url, _key(api_key, "VOIDAI_API_KEY", "voidai"), model=model, name=name, **options
    )


def morpheus(
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    model: str | None = None,
    session_id: str | None = None,
    name: str = "morpheus",
    **options: Any,
) -> OpenAICompatible:
    """The Morpheus gateway (Bearer key). ``session_id`` is sent with every request.

    Morpheus' document gives no base URL, so ``base_url`` is required. The key defaults to
    ``$MORPHEUS_API_KEY``.
    """
    if not base_url:
        raise ConfigError(
            "morpheus.base_url",
            "required: the Morpheus API document gives no base URL; pass your gateway's URL "
            "(the one you would give the OpenAI SDK), e.g. base_url='https://<gateway>/api/v1'",
        )
    extra_body = dict(options.pop("extra_body", None) or {})
    if session_id is not None:
        extra_body["session_id"] = session_id
    return OpenAICompatible(
        base_url,
        _key(api_key, "MORPHEUS_API_KEY", "morpheus"),
        model=model,
        name=name,
        extra_body=extra_body,
        **options,
    )


def openai_compatible(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    model: str | None = None,
    name: str | None = None,
    **options: Any,
) -> OpenAICompatible:
    """Any other OpenAI-compatible server (Bearer key when one is given); ``base_url`` required."""
    if not base_url:
        raise ConfigError(
            "openai_compatible.base_url",
            "required: pass the server's base URL, e.g. 'http://127.0.0.1:8000/v1'",
        )
    return OpenAICompatible(base_url, api_key, model=model, name=name, **options)


def _key(api_key: str | None, variable: str, preset: str) -> str:
    key = api_key or os.environ.get(variable)
    if not key:
        raise ConfigError(f"{preset}.api_key", f"required: pass api_key=... or set ${variable}")
    return key
