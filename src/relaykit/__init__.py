"""relaykit: reliable LLM calls behind one OpenAI-shaped interface.

from relaykit import Relay, OpenAICompatible

relay = Relay(targets=[OpenAICompatible("https://api.openai.com/v1", api_key=..., model=...)])
answer = relay.complete(messages=[{"role": "user", "content": "Hello"}])
"""

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
from relaykit.decorators import resilient
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
