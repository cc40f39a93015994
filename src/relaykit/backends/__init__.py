"""Backends: where a target's requests go. Optional ones (litellm) import lazily."""

from relaykit.backends.base import Backend
from relaykit.backends.function import FunctionBackend
from relaykit.backends.litellm import LiteLLM
from relaykit.backends.openai_compatible import OpenAICompatible

__all__ = ["Backend", "FunctionBackend", "LiteLLM", "OpenAICompatible"]
