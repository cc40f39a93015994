"""Presets carry what each provider's document says: base URL, auth, extra fields, key source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relaykit import ConfigError, OpenAICompatible, Relay, presets
from relaykit.testing import FakeProvider

KEY = "sk-preset-secret-42"
HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("preset", "base_url", "name"),
    [
        (presets.openai, "https://api.openai.com/v1", "openai"),
        (presets.voidai, "https://api.voidai.app/v1", "voidai"),
    ],
)
def test_presets_default_to_their_documented_base_url_and_name(
    preset: Callable[..., OpenAICompatible], base_url: str, name: str
) -> None:
    backend = preset(api_key=KEY, model="gpt-4o")

    assert backend.base_url == base_url
    assert backend.name == name
    assert backend.model == "gpt-4o"
    assert KEY not in repr(backend)


@pytest.mark.parametrize("preset", [presets.openai, presets.voidai, presets.morpheus])
async def test_presets_send_the_key_as_a_bearer_token(
    provider: FakeProvider, preset: Callable[..., OpenAICompatible]
) -> None:
    async with Relay(targets=[preset(api_key=KEY, base_url=provider.url, model="m")]) as relay:
        await relay.acomplete(messages=HI)

    assert provider.requests[0].header("Authorization") == f"Bearer {KEY}"
    assert provider.requests[0].path == "/v1/chat/completions"


def test_morpheus_without_a_base_url_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        presets.morpheus(api_key=KEY)

    assert caught.value.path == "morpheus.base_url"
    assert str(caught.value).startswith("morpheus.base_url: required")
    assert KEY not in str(caught.value)


async def test_morpheus_sends_session_id_in_every_body(provider: FakeProvider) -> None:
    backend = presets.morpheus(api_key=KEY, base_url=provider.url, model="m", session_id="s-9")

    async with Relay(targets=[backend]) as relay:
        await relay.acomplete(messages=HI)
        await (await relay.astream(messages=HI)).completion()

    for sent in provider.requests:
        assert sent.body is not None
        assert sent.body["session_id"] == "s-9"
    assert backend.name == "morpheus"
    assert KEY not in repr(backend)


async def test_morpheus_session_id_joins_other_extra_body_fields(provider: FakeProvider) -> None:
    backend = presets.morpheus(
        api_key=KEY, base_url=provider.url, model="m", session_id="s-1", extra_body={"x": 1}
    )

    async with Relay(targets=[backend]) as relay:
        await relay.acomplete(messages=HI)

    assert provider.requests[0].body is not None
    assert (provider.requests[0].body["session_id"], provider.requests[0].body["x"]) == ("s-1", 1)


async def test_a_per_call_session_id_reaches_the_body(provider: FakeProvider) -> None:
    backend = presets.morpheus(api_key=KEY, base_url=provider.url, model="m")

    async with Relay(targets=[backend]) as relay:
        await relay.acomplete(messages=HI, session_id="per-call")

    assert provider.requests[0].body is not None
    assert provider.requests[0].body["session_id"] == "per-call"


@pytest.mark.parametrize(
    ("preset", "variable", "options"),
    [
        (presets.openai, "OPENAI_API_KEY", {}),
        (presets.voidai, "VOIDAI_API_KEY", {}),
        (presets.morpheus, "MORPHEUS_API_KEY", {"base_url": "https://gw.example/api/v1"}),
    ],
)
def test_a_missing_key_is_a_config_error_naming_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
    preset: Callable[..., OpenAICompatible],
    variable: str,
    options: dict[str, Any],
) -> None:
    monkeypatch.delenv(variable, raising=False)

    with pytest.raises(ConfigError, match=f"\\${variable}") as caught:
        preset(**options)

    assert caught.value.path.endswith(".api_key")


async def test_the_key_is_read_from_the_env_var(
    monkeypatch: pytest.MonkeyPatch, provider: FakeProvider
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = presets.openai(base_url=provider.url, model="m")

    async with Relay(targets=[backend]) as relay:
        await relay.acomplete(messages=HI)

    assert provider.requests[0].header("Authorization") == f"Bearer {KEY}"
    assert KEY not in repr(backend)


def test_openai_compatible_requires_a_base_url() -> None:
    with pytest.raises(ConfigError) as caught:
        presets.openai_compatible(api_key=KEY)

    assert caught.value.path == "openai_compatible.base_url"


async def test_openai_compatible_works_without_a_key(provider: FakeProvider) -> None:
    backend = presets.openai_compatible(provider.url, model="local", name="local")

    async with Relay(targets=[backend]) as relay:
        answer = await relay.acomplete(messages=HI)

    assert answer.relay is not None and answer.relay.target == "local"
    assert provider.requests[0].header("Authorization") is None
