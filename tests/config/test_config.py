"""Relay.from_config: YAML or dict in, a working Relay out, or an error naming the exact place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relaykit import (
    ConfigError,
    ContentFilterError,
    Fallback,
    InvalidRequestError,
    ProviderError,
    RateLimit,
    Relay,
    Retry,
)
from relaykit.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


async def test_yaml_file_builds_a_fallback_chain_with_env_expansion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeProvider() as primary, FakeProvider() as backup:
        monkeypatch.setenv("PRIMARY_URL", primary.url)
        monkeypatch.setenv("PRIMARY_KEY", "sk-from-env")
        path = tmp_path / "relay.yaml"
        path.write_text(
            f"""
targets:
  - name: primary
    base_url: ${{PRIMARY_URL}}
    api_key: ${{PRIMARY_KEY}}
    model: primary-model
  - name: backup
    base_url: {backup.url}
    model: ${{BACKUP_MODEL:-backup-model}}
"""
        )
        primary.script(Reply.overloaded())
        async with Relay.from_config(path) as relay:
            answer = await relay.acomplete(messages=HI)
        assert answer.relay is not None and answer.relay.target == "backup"
        assert primary.requests[0].headers["Authorization"] == "Bearer sk-from-env"
        assert backup.requests[0].body is not None
        assert backup.requests[0].body["model"] == "backup-model"


async def test_routes_pick_targets_by_alias_from_a_dict() -> None:
    async with FakeProvider() as cheap, FakeProvider() as smart:
        config = {
            "targets": [
                {"name": "cheap", "base_url": cheap.url, "model": "small"},
                {"name": "smart", "base_url": smart.url, "model": "large"},
            ],
            "routes": {"smart": ["smart", "cheap"]},
        }
        async with Relay.from_config(config) as relay:
            await relay.acomplete(model="smart", messages=HI)
            await relay.acomplete(messages=HI)
        assert (cheap.request_count, smart.request_count) == (1, 1)
        assert smart.requests[0].body is not None and smart.requests[0].body["model"] == "large"


async def test_fallback_strategy_options_from_config() -> None:
    async with FakeProvider() as a, FakeProvider() as b:
        config = {
            "targets": [
                {"name": "a", "base_url": a.url, "model": "m"},
                {"name": "b", "base_url": b.url, "model": "m"},
            ],
            "strategy": {"fallback": {"fallback_on": ["RateLimitError", "empty_answer"]}},
        }
        a.script(Reply.ok(""))
        async with Relay.from_config(config) as relay:
            answer = await relay.acomplete(messages=HI)
        assert answer.relay is not None and answer.relay.target == "b"


@pytest.mark.parametrize(
    ("config", "path", "problem"),
    [
        ({"targets": [{"name": "a", "model": "m"}]}, "targets[0].base_url", "required"),
        (
            {"targets": [{"base_url": "http://127.0.0.1:1/v1", "modle": "m"}]},
            "targets[0].modle",
            "not a known setting",
        ),
        ({"targets": [{"preset": "anthropic"}]}, "targets[0].preset", "openai"),
        (
            {"targets": [{"preset": "morpheus", "api_key": "k"}]},
            "targets[0].base_url",
            "no base URL",
        ),
        ({"targets": [{"base_url": "ftp://x"}]}, "targets[0].base_url", "http(s) URL"),
        (
            {"targets": [{"base_url": "http://127.0.0.1:1/v1", "timeout": -1}]},
            "targets[0].timeout",
            "greater than 0",
        ),
        (
            {"targets": [{"base_url": "http://127.0.0.1:1/v1", "api_key": "${NOT_SET_ANYWHERE}"}]},
            "targets[0].api_key",
            "NOT_SET_ANYWHERE",
        ),
        (
            {
                "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
                "middleware": ["retrying"],
            },
            "middleware[0]",
            "unknown middleware 'retrying'",
        ),
        (
            {
                "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
                "routes": {"smart": ["b"]},
            },
            "routes.smart[0]",
            "names no target; targets are 'a'",
        ),
        (
            {
                "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
                "strategy": {"fallback": {"fallback_on": ["Timeout"]}},
            },
            "strategy.fallback.fallback_on[0]",
            "neither a relaykit error type",
        ),
        ({}, "targets", "at least one target"),
    ],
)
def test_config_errors_name_the_exact_path(config: dict, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(config)
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_unreadable_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        Relay.from_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Relay.from_config(bad)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"targets: [{name: caf\xe9}]\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        Relay.from_config(latin1)


def test_broken_yaml_gives_line_and_column_but_never_the_key_on_the_broken_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text(
        'targets:\n  - base_url: "http://127.0.0.1:1/v1"\n    api_key: "sk-live-TOPSECRET-9f8e7d\n'
        "    model: m\n"
    )
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(path)
    assert caught.value.path == str(path)
    assert "while scanning a quoted scalar at line 3, column 14" in caught.value.problem
    assert "found unexpected end of stream at line 5, column 1" in caught.value.problem
    assert "TOPSECRET" not in str(caught.value)
    assert "TOPSECRET" not in repr(caught.value)


def test_a_name_pyyaml_takes_from_the_file_is_not_shown_either(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text("targets:\n  - base_url: http://127.0.0.1:1/v1\n    api_key: *sk-TOPSECRET\n")
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(path)
    assert "found undefined alias" in caught.value.problem
    assert "line 3, column 14" in caught.value.problem
    assert "TOPSECRET" not in str(caught.value)


UNUSED_URL = "http://127.0.0.1:1/v1"  # nothing is sent: every config here is refused


@pytest.mark.parametrize(
    ("config", "path"),
    [
        pytest.param(
            {
                "targets": [
                    {"base_url": UNUSED_URL},
                    {"name": "b", "base_url": UNUSED_URL, "api-key": "k"},
                ]
            },
            'targets[1]["api-key"]',
            id="misspelled api-key",
        ),
        pytest.param(
            {"targets": [{"base-url": UNUSED_URL}]}, 'targets[0]["base-url"]', id="base-url"
        ),
        pytest.param(
            {"targets": [{"name": "a", "base_url": UNUSED_URL}], "routes": {"gpt-4o": "a"}},
            'routes["gpt-4o"]',
            id="route alias not a list",
        ),
        pytest.param(
            {
                "targets": [{"name": "a", "base_url": UNUSED_URL}],
                "routes": {"gpt-4o": [{"base_url": UNUSED_URL, "modle": "m"}]},
            },
            'routes["gpt-4o"][0].modle',
            id="typo in an inline target of a route alias",
        ),
        pytest.param(
            {"targets": [{"name": "a", "base_url": UNUSED_URL}], "routes": {"gpt-4.1": ["b"]}},
            'routes["gpt-4.1"][0]',
            id="route alias names no target",
        ),
        pytest.param(
            {"targets": [{"name": "a", "base_url": UNUSED_URL}], "routes": {"tool": [5]}},
            "routes.tool[0]",
            id="route alias spelled like a pydantic tag",
        ),
        pytest.param(
            {"targets": [{"base_url": UNUSED_URL, "headers": {"X-Org": 5}}]},
            'targets[0].headers["X-Org"]',
            id="header value not text",
        ),
        pytest.param(
            {"targets": [{"base_url": UNUSED_URL, "headers": {"X-Org": "${NOT_SET_ANYWHERE}"}}]},
            'targets[0].headers["X-Org"]',
            id="header from an unset variable",
        ),
        pytest.param(
            {"targets": [{"base_url": UNUSED_URL}, {"name": "b", "base_url": "ftp://x"}]},
            "targets[1].base_url",
            id="base_url scheme",
        ),
        pytest.param(
            {"targets": [{"base_url": UNUSED_URL}], "middleware": [{"retry": {"max-wait": 3}}]},
            'middleware[0].retry["max-wait"]',
            id="middleware option",
        ),
    ],
)
def test_keys_that_are_not_identifiers_are_named_in_the_path(config: dict, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(config)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("config", "path"),
    [
        pytest.param(
            {"targets": [{"base_url": UNUSED_URL, "timeout": "${OPENAI_API_KEY}"}]},
            "targets[0].timeout",
            id="a number field",
        ),
        pytest.param(
            {"targets": [{"base_url": "${OPENAI_API_KEY}"}]},
            "targets[0].base_url",
            id="base_url",
        ),
        pytest.param(
            {
                "targets": [{"base_url": UNUSED_URL}],
                "middleware": [{"logging": {"level": "${OPENAI_API_KEY}"}}],
            },
            "middleware[0].logging.level",
            id="a middleware option",
        ),
    ],
)
def test_a_key_expanded_into_the_wrong_field_is_named_by_its_variable_never_shown(
    config: dict, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-TOPSECRET-9f8e7d")
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(config)
    assert caught.value.path == path
    assert "the value of ${OPENAI_API_KEY}" in caught.value.problem
    assert "TOPSECRET" not in str(caught.value)
    assert "TOPSECRET" not in repr(caught.value)


def test_api_keys_from_config_never_show_in_reprs() -> None:
    relay = Relay.from_config(
        {"targets": [{"base_url": "http://127.0.0.1:1/v1", "api_key": "sk-very-secret"}]}
    )
    assert "sk-very-secret" not in repr(relay.targets[0].backend)
    assert "sk-very-secret" not in repr(relay.targets)


def test_a_mistyped_inline_route_target_names_the_typo_and_never_echoes_the_key() -> None:
    config = {
        "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
        "routes": {
            "smart": [{"base_url": "http://127.0.0.1:1/v1", "api_key": "sk-SECRET-1", "modle": "m"}]
        },
    }
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(config)
    assert caught.value.path == "routes.smart[0].modle"
    assert "sk-SECRET-1" not in str(caught.value)


def test_a_bad_api_key_value_is_reported_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config({"targets": [{"base_url": "http://127.0.0.1:1/v1", "api_key": 12345}]})
    assert caught.value.path == "targets[0].api_key"
    assert "12345" not in str(caught.value)


def test_whole_value_env_references_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM", "600")
    monkeypatch.setenv("ATTEMPTS", "2")
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "name": "a",
                    "base_url": "http://127.0.0.1:1/v1",
                    "middleware": [{"rate_limit": {"rpm": "${RPM}"}}],
                }
            ],
            "middleware": [{"retry": {"attempts": "${ATTEMPTS:-3}"}}],
        }
    )
    assert relay.middleware[0].policy.attempts == 2  # type: ignore[attr-defined]


def test_unknown_middleware_option_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(
            {
                "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
                "middleware": [{"retry": {"attemps": 3}}],
            }
        )
    assert caught.value.path == "middleware[0].retry.attemps"
    assert "attempts" in caught.value.problem


def test_retry_on_and_failure_on_take_error_names() -> None:
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "name": "a",
                    "base_url": "http://127.0.0.1:1/v1",
                    "middleware": [{"circuit_breaker": {"failure_on": ["ProviderError"]}}],
                }
            ],
            "middleware": [{"retry": {"retry_on": ["RateLimitError"]}}],
        }
    )
    assert relay.middleware
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(
            {
                "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
                "middleware": [{"retry": {"retry_on": ["Oops"]}}],
            }
        )
    assert caught.value.path == "middleware[0].retry.retry_on[0]"


def test_chain_level_mistakes_are_config_errors_too() -> None:
    with pytest.raises(ConfigError, match="distinct names"):
        Relay.from_config(
            {
                "targets": [
                    {"name": "a", "base_url": "http://127.0.0.1:1/v1"},
                    {"name": "a", "base_url": "http://127.0.0.1:2/v1"},
                ]
            }
        )
    with pytest.raises(ConfigError, match="must be a mapping"):
        Relay.from_config(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_text_options_stay_text_in_config_files() -> None:
    relay = Relay.from_config(
        {
            "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
            "middleware": [{"cache": {"namespace": "2024"}}],
        }
    )
    assert relay.middleware[0].namespace == "2024"  # type: ignore[attr-defined]


async def test_env_values_stay_text_in_headers_and_bodies_but_type_middleware_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORG_ID", "1234567")
    monkeypatch.setenv("USER_TAG", "007")
    monkeypatch.setenv("RPM", "600")
    async with FakeProvider() as provider:
        relay = Relay.from_config(
            {
                "targets": [
                    {
                        "name": "a",
                        "base_url": provider.url,
                        "model": "m",
                        "headers": {"OpenAI-Organization": "${ORG_ID}"},
                        "extra_body": {"user_tag": "${USER_TAG}"},
                        "middleware": [{"rate_limit": {"rpm": "${RPM}"}}],
                    }
                ]
            }
        )
        async with relay:
            await relay.acomplete(messages=HI)
    seen = provider.requests[0]
    assert seen.headers["OpenAI-Organization"] == "1234567"
    assert seen.body is not None and seen.body["user_tag"] == "007"  # text, leading zeros kept
    limit = relay.targets[0].middleware[0]
    assert isinstance(limit, RateLimit) and limit.rpm == 600 and isinstance(limit.rpm, int)


def test_a_target_can_declare_assistant_prefill_for_continuations() -> None:
    relay = Relay.from_config(
        {
            "targets": [
                {"name": "a", "preset": "openai_compatible", "base_url": "http://127.0.0.1:1/v1"},
                {
                    "name": "b",
                    "preset": "openai_compatible",
                    "base_url": "http://127.0.0.1:2/v1",
                    "prefill": {"prefix": True},
                },
            ],
            "strategy": {"fallback": {"continue_streams": True}},
        }
    )
    assert [t.prefill for t in relay.targets] == [False, {"prefix": True}]


def test_a_bad_middleware_value_is_reported_at_its_own_option() -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config(
            {
                "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
                "middleware": ["logging", {"cache": {"ttl_s": "ten"}}],
            }
        )

    assert caught.value.path == "middleware[1].cache.ttl_s"
    assert "ttl_s must be a positive, finite number of seconds, got 'ten'" in str(caught.value)


def test_an_option_a_file_cannot_set_is_named_as_code_only_and_never_listed() -> None:
    with pytest.raises(ConfigError) as code_only:
        Relay.from_config(
            {
                "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
                "middleware": [{"retry": {"wait": "x"}}],
            }
        )
    with pytest.raises(ConfigError) as typo:
        Relay.from_config(
            {
                "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
                "middleware": [{"cache": {"tll_s": 5}}],
            }
        )

    assert code_only.value.path == "middleware[0].retry.wait"
    assert code_only.value.problem.startswith(
        "is set in code only (Retry(wait=...)); a file can set"
    )
    assert " wait" not in code_only.value.problem.split("can set", 1)[1]
    assert typo.value.problem == (
        "is not an option of cache; did you mean 'ttl_s'? A file can set ttl_s, max_entries, "
        "store, namespace"
    )


@pytest.mark.parametrize(
    ("section", "names", "expected"),
    [
        (
            "retry",
            ["RateLimitErr"],
            "'RateLimitErr' is not a relaykit error type (RateLimitError, ProviderError, ...); "
            "did you mean 'RateLimitError'?",
        ),
        (
            "fallback",
            ["ProviderErorr"],
            "'ProviderErorr' is neither a relaykit error type (RateLimitError, ProviderError, "
            "...), nor 'default' (the default rule), nor an answer check (empty_answer, "
            "refusal, invalid_json); did you mean 'ProviderError'?",
        ),
    ],
)
def test_a_misspelled_error_rule_reads_well_and_suggests_the_name(
    section: str, names: list[str], expected: str
) -> None:
    config: dict[str, Any] = {"targets": [{"base_url": "http://127.0.0.1:1/v1"}]}
    if section == "retry":
        config["middleware"] = [{"retry": {"retry_on": names}}]
    else:
        config["strategy"] = {"fallback": {"fallback_on": names}}

    with pytest.raises(ConfigError) as caught:
        Relay.from_config(config)

    assert caught.value.problem == expected


def test_fallback_on_in_a_file_can_add_to_the_default_rule() -> None:
    relay = Relay.from_config(
        {
            "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
            "strategy": {"fallback": {"fallback_on": ["default", "ContentFilterError"]}},
        }
    )

    assert isinstance(relay.strategy, Fallback)
    assert relay.strategy.moves_on(ContentFilterError("filtered"))
    assert relay.strategy.moves_on(ProviderError("answered 503"))
    assert not relay.strategy.moves_on(InvalidRequestError("bad"))


def test_numbers_as_text_are_read_in_a_file_and_refused_in_code() -> None:
    relay = Relay.from_config(
        {
            "targets": [{"base_url": "http://127.0.0.1:1/v1"}],
            "middleware": [{"retry": {"attempts": "3"}}],
        }
    )

    assert isinstance(relay.middleware[0], Retry) and relay.middleware[0].policy.attempts == 3
    with pytest.raises(ValueError, match="attempts must be a whole number of at least 1"):
        Retry(attempts="3")  # type: ignore[arg-type]


def test_a_misspelled_setting_is_suggested() -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config({"target": [{"base_url": "http://127.0.0.1:1/v1"}]})

    assert caught.value.path == "target"
    assert "did you mean 'targets'?" in caught.value.problem


def test_a_misspelled_target_setting_is_suggested_from_the_target_settings() -> None:
    with pytest.raises(ConfigError) as caught:
        Relay.from_config({"targets": [{"base_url": "http://127.0.0.1:1/v1", "modle": "m"}]})

    assert "did you mean 'model'?" in caught.value.problem
