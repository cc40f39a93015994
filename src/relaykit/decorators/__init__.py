"""Decorators: typed prompt functions, and resilience around functions that call models themselves.

``@relay.prompt()`` turns a typed function into a model call through that Relay: the function's
docstring (a ``str.format`` template) or the string it returns is the prompt, its arguments
fill it, and its return annotation decides the result: ``str`` (or none) gives the answer's text,
a pydantic model gives validated structured output (requested as ``response_format:
json_schema``); any other annotation is refused at decoration. An answer that does not validate
counts as a failed attempt, so Retry and Fallback handle it like any other failure.

``@resilient(...)`` wraps a function that calls a model with any SDK (the openai SDK, httpx, ...):
the same middlewares run around it, the SDK's exceptions are classified into relaykit's taxonomy,
and fallback calls the function again with the next model.
"""

from relaykit.decorators.resilient import resilient
from relaykit.facade.prompt import prompt

__all__ = ["prompt", "resilient"]
