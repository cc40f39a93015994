"""``import relaykit`` stays light: names load when first used, heavy dependencies later still.

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import relaykit

OPTIONAL = ["litellm", "redis", "opentelemetry", "starlette", "uvicorn"]
# Loaded by the code that first needs them: the first HTTP request, Logging(), a YAML config.
HEAVY = ["aiohttp", "structlog", "yaml", *OPTIONAL]


def loaded_after(code: str, modules: list[str]) -> list[str]:
    """Which of ``modules`` (or their submodules) a fresh interpreter has loaded after ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps([m for m in {modules!r} "
        "if any(n == m or n.startswith(m + '.') for n in sys.modules)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_import_relaykit_pulls_in_no_optional_dependency() -> None:
    # relaykit.backends.LiteLLM is there to construct, yet litellm loads only when it is.
    code = "import relaykit, relaykit.backends\nrelaykit.backends.LiteLLM"

    assert loaded_after(code, OPTIONAL) == []


def test_import_relaykit_loads_no_module_until_a_name_is_used() -> None:
    code = (
        "import relaykit, sys\n"
        "print([n for n in sys.modules if n.startswith(('relaykit.', 'pydantic'))])\n"
        "relaykit.Relay\n"
        "print(relaykit.Relay.__module__ in sys.modules and 'pydantic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.splitlines() == ["[]", "True"]


def test_every_public_name_resolves_without_aiohttp_structlog_yaml_or_any_extra() -> None:
    code = "import relaykit\nfor name in relaykit.__all__: getattr(relaykit, name)"

    assert loaded_after(code, HEAVY) == []


def test_aiohttp_loads_with_the_first_request_and_structlog_with_logging() -> None:
    code = """
import asyncio, socket, sys
from relaykit import Logging, OpenAICompatible, Relay, RelayError
held = socket.socket(); held.bind(("127.0.0.1", 0))  # bound, not listening: refused
relay = Relay(targets=[OpenAICompatible(f"http://127.0.0.1:{held.getsockname()[1]}/v1",
                                        model="m")])
before = "aiohttp" in sys.modules
async def ask():
    try:
        await relay.acomplete(messages=[{"role": "user", "content": "hi"}])
    except RelayError:
        pass
    await relay.aclose()
asyncio.run(ask())
assert not before and "aiohttp" in sys.modules, before
assert "structlog" not in sys.modules
Logging()
"""

    assert loaded_after(code, ["aiohttp", "structlog"]) == ["aiohttp", "structlog"]


def test_every_public_name_is_importable() -> None:
    missing = [name for name in relaykit.__all__ if not hasattr(relaykit, name)]

    assert missing == []
    assert {"Relay", "OpenAICompatible", "FunctionBackend", "RelayError"} <= set(relaykit.__all__)


def test_the_lazy_table_names_exactly_the_public_api() -> None:
    from relaykit import _EXPORTS

    assert sorted(_EXPORTS) == sorted(relaykit.__all__)
    assert set(relaykit.__all__) <= set(dir(relaykit))  # what an IDE lists before first use
