"""relaykit: reliable LLM calls behind one OpenAI-shaped interface.

from relaykit import Relay, OpenAICompatible

relay = Relay(targets=[OpenAICompatible("https://api.openai.com/v1", api_key=..., model=...)])
answer = relay.complete(messages=[{"role": "user", "content": "Hello"}])
"""

from relaykit import presets
from relaykit.backends import Backend, FunctionBackend, OpenAICompatible
from relaykit.clock import Clock, SystemClock
from relaykit.errors import (
    AllTargetsFailedError,
    Attempt,
    AuthenticationError,
    BadResponseError,
    CircuitOpenError,
    ConfigError,
    ContentFilterError,
    ContextWindowError,
    InvalidRequestError,
    LocalRateLimitError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RelayError,
    RequestValidationError,
    StreamInterruptedError,
)
from relaykit.middleware.fallback import Fallback
from relaykit.pipeline import CallContext, Handler, Middleware
from relaykit.relay import Relay, SyncChatStream
from relaykit.stream import ChatStream
from relaykit.target import Target
from relaykit.types import ChatCompletion, ChatCompletionChunk, ChatRequest, RelayInfo, Usage

__all__ = [
    "AllTargetsFailedError",
    "Attempt",
    "AuthenticationError",
    "Backend",
    "BadResponseError",
    "CallContext",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "ChatStream",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "ContentFilterError",
    "ContextWindowError",
    "Fallback",
    "FunctionBackend",
    "Handler",
    "InvalidRequestError",
    "LocalRateLimitError",
    "Middleware",
    "OpenAICompatible",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceededError",
    "RateLimitError",
    "Relay",
    "RelayError",
    "RelayInfo",
    "RequestValidationError",
    "StreamInterruptedError",
    "SyncChatStream",
    "SystemClock",
    "Target",
    "Usage",
    "presets",
]
