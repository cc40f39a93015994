"""relaykit: reliable LLM calls behind one OpenAI-shaped interface.

from relaykit import Relay, OpenAICompatible

relay = Relay(targets=[OpenAICompatible("https://api.openai.com/v1", api_key=..., model=...)])
answer = relay.complete(messages=[{"role": "user", "content": "Hello"}])
"""

from __future__ import annotations

from importlib import import_module

# Not typing.TYPE_CHECKING: importing typing would double the cost of `import relaykit`.
# Type checkers treat any constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from typing import Any

    from relaykit import presets
    from relaykit.backends import Backend, FunctionBackend, LiteLLM, OpenAICompatible
    from relaykit.contract.clock import Clock, SystemClock
    from relaykit.contract.error_rules import default_fallback_on
    from relaykit.contract.errors import (
        AllTargetsFailedError,
        Attempt,
        AuthenticationError,
        BadResponseError,
        BudgetExceededError,
        CacheMissError,
        CircuitOpenError,
        ConfigError,
        ContentFilterError,
        ContextWindowError,
        InvalidRequestError,
        LocalRateLimitError,
        ModelNotFoundError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeout,
        QuotaExceededError,
        RateLimitError,
        RelayClosedError,
        RelayError,
        RequestValidationError,
        RouteStep,
        StreamInterruptedError,
    )
    from relaykit.contract.pipeline import CallContext, Handler, Middleware
    from relaykit.contract.pricing import Price
    from relaykit.contract.schema import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatRequest,
        RelayInfo,
        Usage,
    )
    from relaykit.contract.stream import ChatStream
    from relaykit.contract.target import BoundTarget, Group, Strategy, Target
    from relaykit.decorators.resilient import resilient
    from relaykit.facade.relay import Relay
    from relaykit.facade.sync_stream import SyncChatStream
    from relaykit.middleware.budget import Budget
    from relaykit.middleware.cache import Cache
    from relaykit.middleware.circuit_breaker import CircuitBreaker
    from relaykit.middleware.rate_limit import RateLimit
    from relaykit.middleware.retry import Retry, RetryBudget
    from relaykit.middleware.timeout import Timeout
    from relaykit.observability.logging import Logging
    from relaykit.observability.telemetry import OpenTelemetry
    from relaykit.strategies import Hedge, LoadBalance
    from relaykit.strategies.fallback import (
        Fallback,
        answer_check,
        empty_answer,
        invalid_json,
        refusal,
    )

# Where each public name lives. `import relaykit` loads none of them: a name's module is
# imported the first time the name is used (PEP 562), so a program pays only for what it
# touches. The heavy dependencies (aiohttp, structlog, yaml) load later still, when first
# used. tests/test_import.py checks this table against __all__.
_EXPORTS: dict[str, str] = {
    "AllTargetsFailedError": "relaykit.contract.errors",
    "answer_check": "relaykit.strategies.fallback",
    "Attempt": "relaykit.contract.errors",
    "AuthenticationError": "relaykit.contract.errors",
    "Backend": "relaykit.backends",
    "BadResponseError": "relaykit.contract.errors",
    "BoundTarget": "relaykit.contract.target",
    "Budget": "relaykit.middleware.budget",
    "BudgetExceededError": "relaykit.contract.errors",
    "Cache": "relaykit.middleware.cache",
    "CacheMissError": "relaykit.contract.errors",
    "CallContext": "relaykit.contract.pipeline",
    "ChatCompletion": "relaykit.contract.schema",
    "ChatCompletionChunk": "relaykit.contract.schema",
    "ChatRequest": "relaykit.contract.schema",
    "ChatStream": "relaykit.contract.stream",
    "CircuitBreaker": "relaykit.middleware.circuit_breaker",
    "CircuitOpenError": "relaykit.contract.errors",
    "Clock": "relaykit.contract.clock",
    "ConfigError": "relaykit.contract.errors",
    "ContentFilterError": "relaykit.contract.errors",
    "ContextWindowError": "relaykit.contract.errors",
    "default_fallback_on": "relaykit.contract.error_rules",
    "empty_answer": "relaykit.strategies.fallback",
    "Fallback": "relaykit.strategies.fallback",
    "FunctionBackend": "relaykit.backends",
    "Group": "relaykit.contract.target",
    "Handler": "relaykit.contract.pipeline",
    "Hedge": "relaykit.strategies",
    "invalid_json": "relaykit.strategies.fallback",
    "InvalidRequestError": "relaykit.contract.errors",
    "LiteLLM": "relaykit.backends",
    "LoadBalance": "relaykit.strategies",
    "LocalRateLimitError": "relaykit.contract.errors",
    "Logging": "relaykit.observability.logging",
    "Middleware": "relaykit.contract.pipeline",
    "ModelNotFoundError": "relaykit.contract.errors",
    "OpenAICompatible": "relaykit.backends",
    "OpenTelemetry": "relaykit.observability.telemetry",
    "presets": "relaykit.presets",
    "Price": "relaykit.contract.pricing",
    "ProviderConnectionError": "relaykit.contract.errors",
    "ProviderError": "relaykit.contract.errors",
    "ProviderTimeout": "relaykit.contract.errors",
    "QuotaExceededError": "relaykit.contract.errors",
    "RateLimit": "relaykit.middleware.rate_limit",
    "RateLimitError": "relaykit.contract.errors",
    "refusal": "relaykit.strategies.fallback",
    "Relay": "relaykit.facade.relay",
    "RelayClosedError": "relaykit.contract.errors",
    "RelayError": "relaykit.contract.errors",
    "RelayInfo": "relaykit.contract.schema",
    "RequestValidationError": "relaykit.contract.errors",
    "resilient": "relaykit.decorators.resilient",
    "Retry": "relaykit.middleware.retry",
    "RetryBudget": "relaykit.middleware.retry",
    "RouteStep": "relaykit.contract.errors",
    "Strategy": "relaykit.contract.target",
    "StreamInterruptedError": "relaykit.contract.errors",
    "SyncChatStream": "relaykit.facade.sync_stream",
    "SystemClock": "relaykit.contract.clock",
    "Target": "relaykit.contract.target",
    "Timeout": "relaykit.middleware.timeout",
    "Usage": "relaykit.contract.schema",
}

__all__ = [
    "AllTargetsFailedError",
    "Attempt",
    "AuthenticationError",
    "Backend",
    "BadResponseError",
    "BoundTarget",
    "Budget",
    "BudgetExceededError",
    "Cache",
    "CacheMissError",
    "CallContext",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "ChatStream",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "ContentFilterError",
    "ContextWindowError",
    "Fallback",
    "FunctionBackend",
    "Group",
    "Handler",
    "Hedge",
    "InvalidRequestError",
    "LiteLLM",
    "LoadBalance",
    "LocalRateLimitError",
    "Logging",
    "Middleware",
    "ModelNotFoundError",
    "OpenAICompatible",
    "OpenTelemetry",
    "Price",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitError",
    "Relay",
    "RelayClosedError",
    "RelayError",
    "RelayInfo",
    "RequestValidationError",
    "Retry",
    "RetryBudget",
    "RouteStep",
    "Strategy",
    "StreamInterruptedError",
    "SyncChatStream",
    "SystemClock",
    "Target",
    "Timeout",
    "Usage",
    "answer_check",
    "default_fallback_on",
    "empty_answer",
    "invalid_json",
    "presets",
    "refusal",
    "resilient",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'relaykit' has no attribute {name!r}")
    loaded = import_module(module)
    value = loaded if module == f"relaykit.{name}" else getattr(loaded, name)
    globals()[name] = value  # the next use is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
