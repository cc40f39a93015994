"""Build a Relay from a YAML file or a dict.

The file says the same things as code: targets (with presets), per-target and outer middleware,
the strategy, and routes by model alias. ``${VAR}`` and ``${VAR:-default}`` expand from the
environment. Every mistake is a ``ConfigError`` naming its exact place (``targets[1].base_url``,
``routes["gpt-4o"]``) and what is allowed there; nothing is half-built. An error never shows
a setting's value that came from the environment (target names aside, which are shown
everywhere), nor the text of a file it cannot parse: either may be a key.

    targets:
      - name: primary
        preset: openai
        model: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}
        middleware:
          - circuit_breaker: {failures: 5}
          - rate_limit: {rpm: 600}
      - {name: backup, preset: openai_compatible, base_url: "http://127.0.0.1:8000/v1", model: m}
    middleware:
      - logging
      - cache: {ttl_s: 600}
      - timeout: {total_s: 30}
      - retry: {attempts: 3}
    strategy: {fallback: {continue_streams: true}}
    routes:
      smart: [primary, backup]
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from relaykit import presets
from relaykit._support.pydantic_errors import best_error, error_path, problem, subpath
from relaykit.backends.openai_compatible import OpenAICompatible
from relaykit.config.text import ENV, Expanded, expand, scalar, within, yaml_problem
from relaykit.contract import errors
from relaykit.contract.backend import Backend
from relaykit.contract.error_rules import ErrorRule, default_fallback_on
from relaykit.contract.errors import ConfigError
from relaykit.contract.pipeline import Middleware
from relaykit.contract.pricing import Price
from relaykit.contract.target import Group, Strategy, Target
from relaykit.strategies import Hedge, LoadBalance
from relaykit.strategies.fallback import AnswerCheck, Fallback, empty_answer, invalid_json, refusal

if TYPE_CHECKING:
    pass

__all__ = ["MIDDLEWARE", "build_relay_arguments", "file_options", "load_config"]

StrategyT = TypeVar("StrategyT", LoadBalance, Hedge)

# Config names of the middlewares, imported only when a config uses them.
MIDDLEWARE: dict[str, str] = {
    "logging": "relaykit.middleware.logging:Logging",
    "cache": "relaykit.middleware.cache:Cache",
    "timeout": "relaykit.middleware.timeout:Timeout",
    "retry": "relaykit.middleware.retry:Retry",
    "circuit_breaker": "relaykit.middleware.circuit_breaker:CircuitBreaker",
    "rate_limit": "relaykit.middleware.rate_limit:RateLimit",
    "opentelemetry": "relaykit.observability.telemetry:OpenTelemetry",
    "budget": "relaykit.middleware.budget:Budget",
}
# Middlewares that keep state in a store, which a config names with `store:`.
_STATEFUL = frozenset({"cache", "rate_limit", "circuit_breaker", "budget"})
_STATEFUL_CLASSES = frozenset({"Cache", "RateLimit", "CircuitBreaker", "Budget"})
# Middleware options that take error types; a config file names them.
_ERROR_RULE_OPTIONS = frozenset({"retry_on", "failure_on"})
# What a file's value can be for any other option (see file_options).
# Budget's per and window are text choices, named by their Literal aliases.
_FILE_VALUE_TYPES = frozenset({"str", "int", "float", "bool", "None", "BudgetPer", "BudgetWindow"})
_ANSWER_CHECKS = {"empty_answer": empty_answer, "refusal": refusal, "invalid_json": invalid_json}
_DEFAULT_RULE: dict[str, ErrorRule] = {"default": default_fallback_on}
_PRESETS: dict[str, Callable[..., OpenAICompatible]] = {
    "openai": presets.openai,
    "voidai": presets.voidai,
    "morpheus": presets.morpheus,
    "openai_compatible": presets.openai_compatible,
}
MiddlewareEntry = str | dict[str, dict[str, Any] | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceConfig(_Strict):
    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    cached_input_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class TargetConfig(_Strict):
    name: str | None = None
    backend: Literal["openai_compatible", "litellm"] = "openai_compatible"
    preset: Literal["openai", "voidai", "morpheus", "openai_compatible"] = "openai_compatible"
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float | None = Field(default=None, gt=0)
    headers: dict[str, str] | None = None
    secret_headers: list[str] | None = None
    extra_body: dict[str, Any] | None = None
    session_id: str | None = None
    context_window: int | None = Field(default=None, gt=0)
    prefill: bool | dict[str, Any] = False
    middleware: list[MiddlewareEntry] = Field(default_factory=list)
    # backend: litellm only: keyword arguments of litellm.acompletion.
    options: dict[str, Any] | None = None
    price: PriceConfig | None = None


# Settings of the HTTP backend a litellm target has no use for, with what to write instead.
_NOT_FOR_LITELLM = {
    "preset": "a litellm target names its provider in model, e.g. 'anthropic/claude-3-5-haiku'",
    "connect_timeout": "LiteLLM has one timeout; set timeout",
    "extra_body": "put LiteLLM's keyword arguments under options",
    "session_id": "it is only for preset: morpheus",
}


class FallbackConfig(_Strict):
    continue_streams: bool = False
    fallback_on: list[str] | None = None


class LoadBalanceConfig(_Strict):
    mode: str = "weighted"
    weights: dict[str, float] | None = None
    fallback_on: list[str] | None = None
    decay_s: float | None = None


class HedgeConfig(_Strict):
    after_s: float | None = None
    after_percentile: float | None = None
    max_hedges: int | None = None
    budget: float | None = None
    budget_window_s: float | None = None
    min_samples: int | None = None
    fallback_on: list[str] | None = None


class StrategyConfig(_Strict):
    fallback: FallbackConfig | None = None
    load_balance: LoadBalanceConfig | None = None
    hedge: HedgeConfig | None = None


class GroupConfig(_Strict):
    targets: list[str] = Field(min_length=1)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)


# Where cache, rate_limit and circuit_breaker keep state: "memory" (in-process, the default), a
# Redis URL, or a mapping of RedisStore's arguments ({url: ..., prefix: ..., cluster: ...}).
StoreSetting = str | dict[str, Any]


class RelayConfig(_Strict):
    store: StoreSetting | None = None
    targets: list[TargetConfig] = Field(default_factory=list)
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    middleware: list[MiddlewareEntry] = Field(default_factory=list)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    routes: dict[str, list[str | TargetConfig]] = Field(default_factory=dict)
    # Which strings ${VAR} filled in, by path, so that errors found later can hide them too.
    _expanded: dict[str, Expanded] = PrivateAttr(default_factory=dict)


def load_config(source: str | Path | Mapping[str, Any]) -> RelayConfig:
    """Read, expand ``${VAR}`` and validate; errors name the exact path."""
    if isinstance(source, Mapping):
        raw: Any = source
    elif not isinstance(source, str | Path):
        raw = source  # rejected below with the shape a config must have
    else:
        import yaml  # only configs read from files need the YAML parser

        path = Path(source)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), f"is not UTF-8 text (byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            "config",
            "must be a mapping with 'targets' (and optionally 'middleware', 'strategy', 'routes')",
        )
    expanded: dict[str, Expanded] = {}
    data = expand(raw, "", expanded)
    try:
        config = RelayConfig.model_validate(data)
    except ValidationError as exc:
        error = best_error(exc.errors(include_url=False))
        where = error_path(error, "config", data)
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(
                str(error["loc"][-1]), _settings_near(data, error["loc"]), n=1
            )
            check = f"did you mean {close[0]!r}? Check" if close else "check"
            what = f"is not a known setting here; {check} its spelling against docs/config.md"
        elif where in expanded:
            what = problem(error, expanded[where].described())
        else:
            inside = [e.written for path, e in expanded.items() if within(path, where)]
            variables = dict.fromkeys(m.group(0) for w in inside for m in ENV.finditer(w))
            what = problem(error, f"a value using {', '.join(variables)}" if inside else None)
        raise ConfigError(where, what) from None
    config._expanded = expanded
    return config


def _settings_near(data: Any, loc: Sequence[int | str]) -> set[str]:
    """The setting names a misspelled key at ``loc`` was likely meant as, for "did you mean":
    those of the sections whose settings include every other key next to it."""
    node = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
            break
    siblings = set(node) - {loc[-1]} if isinstance(node, Mapping) else set()
    sections = [m.model_fields for m in _Strict.__subclasses__()]
    near = {name for fields in sections if siblings <= set(fields) for name in fields}
    return near or {name for fields in sections for name in fields}


def build_relay_arguments(config: RelayConfig) -> dict[str, Any]:
    """The keyword arguments of ``Relay(...)`` that ``config`` describes."""
    try:
        return _relay_arguments(config)
    except ConfigError as exc:
        # Constructors quote what they reject (``got 'sk-...'``); a value from ${VAR} is named
        # by its variable instead.
        what = exc.problem
        for path, expanded in config._expanded.items():
            if within(path, exc.path):
                what = expanded.hidden_in(what)
        raise ConfigError(exc.path, what) from None


def _relay_arguments(config: RelayConfig) -> dict[str, Any]:
    stores = _Stores(config.store)
    if not config.targets and not config.routes:
        raise ConfigError("targets", "name at least one target (or give routes)")
    targets = _grouped(
        [_target(t, f"targets[{i}]", stores) for i, t in enumerate(config.targets)], config.groups
    )
    # A route may name a group or any target, grouped or not.
    by_name = {t.label: t for entry in targets for t in (entry, *_members(entry))}
    routes: dict[str, list[Target | Group]] = {}
    for alias, chain in config.routes.items():
        routes[alias] = []
        for i, entry in enumerate(chain):
            where = subpath(subpath("routes", alias), i)
            if isinstance(entry, str):
                if entry not in by_name:
                    known = ", ".join(map(repr, by_name)) or "none"
                    raise ConfigError(where, f"names no target; targets are {known}")
                routes[alias].append(by_name[entry])
            else:
                routes[alias].append(_target(entry, where, stores))
    return {
        "targets": targets,
        "routes": routes or None,
        "middleware": _middleware(config.middleware, "middleware", stores),
        "strategy": _strategy(config.strategy, {t.label for t in targets}),
    }


def _grouped(targets: list[Target], groups: Mapping[str, GroupConfig]) -> list[Target | Group]:
    """The chain with each group in place of its members (where its first member was)."""
    by_name = {t.label: t for t in targets}
    group_of: dict[str, Group] = {}
    for name, config in groups.items():
        where = subpath("groups", name)
        if name in by_name:
            raise ConfigError(where, "has the name of a target; give the group its own name")
        members: list[Target] = []
        for i, member in enumerate(config.targets):
            place = subpath(subpath(where, "targets"), i)
            if member not in by_name:
                known = ", ".join(map(repr, by_name)) or "none"
                raise ConfigError(place, f"names no target; targets are {known}")
            if member in group_of:
                raise ConfigError(place, f"is in group {group_of[member].name!r} already")
            members.append(by_name[member])
        strategy = _strategy(config.strategy, set(config.targets), subpath(where, "strategy"))
        group = Group(name, members, strategy)
        for member in config.targets:
            group_of[member] = group
    chain: list[Target | Group] = []
    for target in targets:
        entry = group_of.get(target.label, target)
        if entry not in chain:
            chain.append(entry)
    return chain


def _members(entry: Target | Group) -> tuple[Target | Group, ...]:
    return entry.members if isinstance(entry, Group) else ()


def _target(config: TargetConfig, where: str, stores: _Stores) -> Target:
    backend = _litellm(config, where) if config.backend == "litellm" else _http(config, where)
    return Target(
        backend,
        name=config.name,
        middleware=_middleware(config.middleware, f"{where}.middleware", stores),
        context_window=config.context_window,
        prefill=config.prefill,
        price=None if config.price is None else Price(**config.price.model_dump()),
    )


def _litellm(config: TargetConfig, where: str) -> Backend:
    for setting, instead in _NOT_FOR_LITELLM.items():
        if setting in config.model_fields_set:
            raise ConfigError(
                f"{where}.{setting}", f"is not a setting of backend: litellm; {instead}"
            )
    if config.model is None:
        raise ConfigError(
            f"{where}.model",
            "is required for backend: litellm: LiteLLM's model name, e.g. "
            "'anthropic/claude-3-5-haiku-latest'",
        )
    options = dict(config.options or {})
    arguments: dict[str, Any] = {"model": config.model, "name": config.name, **options}
    if config.api_key is not None:
        arguments["api_key"] = config.api_key
    if config.base_url is not None:
        arguments["api_base"] = config.base_url
    if config.timeout is not None:
        arguments["timeout"] = config.timeout
    if config.headers is not None:
        arguments["extra_headers"] = config.headers
    from relaykit.backends.litellm import LiteLLM

    try:
        return LiteLLM(**arguments)
    except ValueError as exc:
        # An option under options: is at fault there; model and timeout are settings of their own.
        place = _at_argument(f"{where}.options", options, exc)
        if place == f"{where}.options":
            place = _at_argument(where, {"model": None, "timeout": None}, exc)
        raise ConfigError(place, str(exc)) from None


def _http(config: TargetConfig, where: str) -> Backend:
    if config.options is not None:
        raise ConfigError(f"{where}.options", "is only for backend: litellm")
    options: dict[str, Any] = {
        key: value
        for key, value in config.model_dump(
            exclude={
                "name",
                "backend",
                "preset",
                "context_window",
                "prefill",
                "middleware",
                "session_id",
                "base_url",
                "options",
                "price",
            },
            exclude_none=True,
        ).items()
    }
    if config.base_url is not None:
        options["base_url"] = config.base_url
    if config.session_id is not None:
        if config.preset != "morpheus":
            raise ConfigError(f"{where}.session_id", "is only for preset: morpheus")
        options["session_id"] = config.session_id
    if config.name is not None:
        options["name"] = config.name
    try:
        return _PRESETS[config.preset](**options)
    except ConfigError as exc:
        field = exc.path.rsplit(".", 1)[-1]
        raise ConfigError(f"{where}.{field}", exc.problem) from None
    except ValueError as exc:
        raise ConfigError(_at_argument(where, options, exc), str(exc)) from None


def _middleware(
    entries: Sequence[MiddlewareEntry], where: str, stores: _Stores
) -> list[Middleware]:
    layers: list[Middleware] = []
    for i, entry in enumerate(entries):
        place = f"{where}[{i}]"
        if isinstance(entry, str):
            name, options = entry, {}
        elif len(entry) == 1:
            name, given = next(iter(entry.items()))
            options = given or {}
        else:
            raise ConfigError(place, "give one middleware per list entry, e.g. '- retry: {...}'")
        if name not in MIDDLEWARE:
            raise ConfigError(
                f"{place}", f"unknown middleware {name!r}; known: {', '.join(sorted(MIDDLEWARE))}"
            )
        module_name, _, class_name = MIDDLEWARE[name].partition(":")
        factory = getattr(importlib.import_module(module_name), class_name)
        settable = file_options(factory)
        textual = {p.name for p in settable.values() if "str" in str(p.annotation)}
        options = {
            k: scalar(v) if isinstance(v, str) and k not in textual else v
            for k, v in options.items()
        }
        for option, value in options.items():
            if option not in settable:
                in_code = option in inspect.signature(factory).parameters
                close = difflib.get_close_matches(option, settable, n=1)
                if in_code:
                    what = f"is set in code only ({class_name}({option}=...)); a file can set"
                elif close:
                    what = f"is not an option of {name}; did you mean {close[0]!r}? A file can set"
                else:
                    what = f"is not an option of {name}; a file can set"
                raise ConfigError(
                    subpath(subpath(place, name), option), f"{what} {', '.join(settable)}"
                )
            if option in _ERROR_RULE_OPTIONS:
                where_rules = subpath(subpath(place, name), option)
                options = {**options, option: _error_rules(value, where_rules)}
        if name in _STATEFUL:  # the entry's own store, else the top-level one
            store = stores.get(options.pop("store", None), subpath(subpath(place, name), "store"))
            if store is not None:
                options = {**options, "store": store}
        try:
            layers.append(factory(**options))
        except (TypeError, ValueError) as exc:
            raise ConfigError(_at_argument(subpath(place, name), options, exc), str(exc)) from None
    return layers


def file_options(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The options of a middleware that a config file can set, by name: the keyword
    parameters whose values are text, numbers or flags, and the error-rule lists a file names
    by type. The one list both the checks and the error messages use; an option that takes an
    object (a store, a logger) is set in code, unless a converter for it is added here.
    """
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        p.name: p
        for p in inspect.signature(factory).parameters.values()
        if p.kind in named
        and (
            p.name in _ERROR_RULE_OPTIONS
            or (p.name == "store" and factory.__name__ in _STATEFUL_CLASSES)
            or set(str(p.annotation).replace(" ", "").split("|")) <= _FILE_VALUE_TYPES
        )
    }


def _at_argument(where: str, options: Mapping[str, Any], exc: Exception) -> str:
    """The setting a constructor's error is about: its checks start with the argument they
    reject (``ttl_s must be ...``, ``weights['a'] must be ...``)."""
    message = str(exc)
    for option in options:
        rest = message[len(option) : len(option) + 1]
        if message.startswith(option) and not (rest.isalnum() or rest == "_"):
            return subpath(where, option)
    return where


class _Stores:
    """The stores a config names, each made once: middlewares naming the same store share it
    (one connection pool), and the top-level ``store`` is the default of every stateful one."""

    def __init__(self, default: StoreSetting | None) -> None:
        self.default = default
        self._made: dict[str, object] = {}

    def get(self, setting: Any, where: str) -> object | None:
        """The store ``setting`` names (the default when None), or None for in-process."""
        if setting is None:
            setting, where = self.default, "store"
        if setting is None or setting == "memory":
            return None
        if isinstance(setting, str):
            options: dict[str, Any] = {"url": setting}
        elif isinstance(setting, Mapping) and "url" in setting:
            options = dict(setting)
        else:
            raise ConfigError(
                where,
                "must be memory, a Redis URL (redis://127.0.0.1:6379/0) or a mapping with url "
                "and RedisStore's other options (prefix, timeout_s, cluster, ...)",
            )
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in self._made:
            self._made[key] = _redis_store(options, where)
        return self._made[key]


def _redis_store(options: dict[str, Any], where: str) -> object:
    try:
        from relaykit.stores.redis import RedisStore
    except ImportError:  # pragma: no cover - the redis extra is part of the dev install
        raise ConfigError(where, "needs the redis extra: pip install 'relaykit[redis]'") from None
    allowed = [p for p in inspect.signature(RedisStore).parameters if p != "clock"]
    for option in options:
        if option not in allowed:
            raise ConfigError(
                subpath(where, option),
                f"is not an option of RedisStore; its options are {', '.join(allowed)}",
            )
    url = options.pop("url")
    try:
        return RedisStore(url, **options)
    except (TypeError, ValueError) as exc:
        argument = str(exc).split(" ", 1)[0]
        place = subpath(where, argument) if argument in allowed and argument != "url" else where
        raise ConfigError(place, str(exc)) from None
    except ConnectionError as exc:
        raise ConfigError(where, str(exc)) from None


def _strategy(config: StrategyConfig, targets: set[str], at: str = "strategy") -> Strategy:
    """The one strategy ``config`` (at ``at``) names (``fallback`` when it names none)."""
    named = [name for name in StrategyConfig.model_fields if getattr(config, name) is not None]
    if len(named) > 1:
        raise ConfigError(at, f"name one strategy, not {len(named)} ({', '.join(named)})")
    if config.load_balance is not None:
        return _load_balance(config.load_balance, f"{at}.load_balance", targets)
    if config.hedge is not None:
        where = f"{at}.hedge"
        options = config.hedge.model_dump(exclude={"fallback_on"}, exclude_none=True)
        if config.hedge.fallback_on is not None:
            options["fallback_on"] = _error_rules(
                config.hedge.fallback_on, f"{where}.fallback_on", _DEFAULT_RULE
            )
        return _built(where, Hedge, options)
    fallback = config.fallback or FallbackConfig()
    if fallback.fallback_on is None:
        return Fallback(continue_streams=fallback.continue_streams)
    rules = _error_rules(
        fallback.fallback_on, "strategy.fallback.fallback_on", {**_DEFAULT_RULE, **_ANSWER_CHECKS}
    )
    return Fallback(fallback_on=rules, continue_streams=fallback.continue_streams)


def _load_balance(config: LoadBalanceConfig, where: str, targets: set[str]) -> LoadBalance:
    for name in config.weights or {}:
        if targets and name not in targets:
            known = ", ".join(map(repr, sorted(targets)))
            raise ConfigError(
                subpath(subpath(where, "weights"), name), f"names no target; targets are {known}"
            )
    options = config.model_dump(exclude={"fallback_on"}, exclude_none=True)
    if config.fallback_on is not None:
        options["fallback_on"] = _error_rules(
            config.fallback_on, f"{where}.fallback_on", _DEFAULT_RULE
        )
    return _built(where, LoadBalance, options)


def _built(where: str, factory: Callable[..., StrategyT], options: dict[str, Any]) -> StrategyT:
    """``factory(**options)``; its ValueError (which starts with the option it rejects) becomes
    a ConfigError at that option."""
    try:
        return factory(**options)
    except ValueError as exc:
        raise ConfigError(_at_argument(where, options, exc), str(exc)) from None


def _error_rules(
    names: Any, where: str, named: Mapping[str, ErrorRule | AnswerCheck] | None = None
) -> list[ErrorRule | AnswerCheck]:
    """Error types named in a file, and the other rules ``named`` there allows (``default``,
    answer checks)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(where, "must be a list of error type names, e.g. [RateLimitError]")
    named = named or {}
    error_types = {
        name: kind
        for name, kind in vars(errors).items()
        if isinstance(kind, type) and issubclass(kind, errors.RelayError)
    }
    rules: list[ErrorRule | AnswerCheck] = []
    for i, name in enumerate(names):
        rule = named.get(name) or error_types.get(name)
        if rule is None:
            close = difflib.get_close_matches(name, [*error_types, *named], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            kinds = "a relaykit error type (RateLimitError, ProviderError, ...)"
            others = ["'default' (the default rule)"] if "default" in named else []
            checks = [n for n in named if n in _ANSWER_CHECKS]
            if checks:
                others.append(f"an answer check ({', '.join(checks)})")
            what = (
                f"neither {kinds}, " + ", ".join(f"nor {o}" for o in others)
                if others
                else (f"not {kinds}")
            )
            raise ConfigError(f"{where}[{i}]", f"{name!r} is {what}{hint}")
        rules.append(rule)
    return rules
