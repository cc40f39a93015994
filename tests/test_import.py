"""``import relaykit`` stays light: optional backends and servers load only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import relaykit

OPTIONAL = ["litellm", "redis", "opentelemetry", "starlette", "uvicorn"]


def test_import_relaykit_pulls_in_no_optional_dependency() -> None:
    # relaykit.backends.LiteLLM is there to construct, yet litellm loads only when it is.
    code = (
        "import json, sys, relaykit, relaykit.backends; relaykit.backends.LiteLLM; "
        f"print(json.dumps([m for m in {OPTIONAL!r} "
        "if any(n == m or n.startswith(m + '.') for n in sys.modules)]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )

    assert json.loads(result.stdout) == []


def test_every_public_name_is_importable() -> None:
    missing = [name for name in relaykit.__all__ if not hasattr(relaykit, name)]

    assert missing == []
    assert {"Relay", "OpenAICompatible", "FunctionBackend", "RelayError"} <= set(relaykit.__all__)
