"""Backends: where a target's requests go. Optional ones (litellm) import lazily."""

from relaykit.backends.function import FunctionBackend
from relaykit.backends.litellm import LiteLLM
from relaykit.backends.openai_compatible import OpenAICompatible
from relaykit.contract.backend import Backend

__all__ = ["Backend", "FunctionBackend", "LiteLLM", "OpenAICompatible"]
