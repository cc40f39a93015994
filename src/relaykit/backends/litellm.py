"""The LiteLLM backend: LiteLLM's providers behind relaykit's pipeline (the ``litellm`` extra).

LiteLLM is imported when a backend is constructed, never by ``import relaykit``. relaykit owns
retries, fallbacks and caching (one owner each, or attempts multiply), so every call switches
LiteLLM's own off; its exceptions map onto relaykit's taxonomy through the same function as
the HTTP backend's answers (``relaykit.classify``), and its streams are committed like every
other backend's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr, ValidationError

from relaykit._support.secrets import MASK, Secrets, is_secret_name
from relaykit.backends._timing import time_allowed, timed_out
from relaykit.backends.classify import classify_exception, describe_exception
from relaykit.contract.errors import (
    BadResponseError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeout,
    RelayError,
)
from relaykit.contract.pipeline import CallContext
from relaykit.contract.pricing import Price
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = ["LiteLLM"]

# What each call passes so that LiteLLM neither retries, nor falls back, nor answers from or
# writes to its cache. LiteLLM reads caching=False for lookups but not for writes, hence both.
# num_retries also sets max_retries, the openai SDK's own retries (2 by default) that LiteLLM
# passes on for OpenAI-compatible providers; max_retries says it once more for the providers
# that read it directly.
_SWITCHED_OFF: dict[str, Any] = {
    "num_retries": 0,
    "max_retries": 0,
    "retry_policy": None,
    "fallbacks": None,
    "context_window_fallback_dict": None,
    "caching": False,
    "cache": {"no-cache": True, "no-store": True},
}
# LiteLLM options that would take over what a relaykit layer does, with the layer to use.
_OWNED_BY_RELAYKIT = {
    "num_retries": "Retry(attempts=...)",
    "max_retries": "Retry(attempts=...)",
    "retry_policy": "Retry(retry_on=...)",
    "fallbacks": "more targets in the Relay (Fallback)",
    "context_window_fallback_dict": "a fallback Target with a larger context_window",
    "caching": "Cache(...)",
    "cache": "Cache(...)",
    "stream": "relay.astream(...)",
    "model": "the model= argument",
    "messages": "the call's messages",
}
# Read at import time by LiteLLM, which otherwise fetches its model cost map and a few other
# files from GitHub: a backend's construction should not reach out to the internet. A value the
# user set wins.
_OFFLINE_SETTINGS = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
)


def _import_litellm() -> Any:
    for setting in _OFFLINE_SETTINGS:
        os.environ.setdefault(setting, "True")
    try:
        import litellm
    except ImportError:
        raise ImportError(
            "the LiteLLM backend needs the litellm package: pip install 'relaykit[litellm]'"
        ) from None
    # LiteLLM prints a "Give Feedback / Get Help" banner to stdout for every exception it
    # raises; relaykit reports each failure as a typed error (and Logging logs it), and a
    # service's stdout is no place for a banner per 429.
    litellm.suppress_debug_info = True
    return litellm


class LiteLLM:
    """A backend for any model LiteLLM can call (``anthropic/claude-...``, ``bedrock/...``).

    ``model`` is LiteLLM's model string, provider prefix included. ``litellm_kwargs`` go to
    every ``litellm.acompletion`` call as they are (``api_base=``, ``vertex_project=``,
    ``drop_params=True``, ...), except the options relaykit owns: retries, fallbacks and
    caching are switched off on every call, and passing one of them is an error naming the
    layer that does it here. ``timeout`` (seconds) bounds a whole answer, the wait for a
    stream's first chunk and any silence between two chunks; a call's deadline shortens it.

    ``price`` is the model's price in LiteLLM's model cost map (None for a model it does not
    list); a ``Target`` without a ``price=`` of its own uses it for ``answer.relay.cost_usd``
    and budgets.

    ``api_key`` and any keyword argument whose name says it is a credential (``*_key``,
    ``*_token``, ``*_secret``, ``password``) are kept out of reprs and masked in errors.

    >>> LiteLLM(model="anthropic/claude-3-5-haiku-latest", api_key=os.environ["ANTHROPIC_KEY"])
    """

    def __init__(
        self,
        *,
        model: str,
        name: str | None = None,
        api_key: str | SecretStr | None = None,
        timeout: float = 60.0,
        **litellm_kwargs: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(
                f"model must be LiteLLM's model name, e.g. 'anthropic/claude-3-5-haiku-latest', "
                f"got {model!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        for option, layer in _OWNED_BY_RELAYKIT.items():
            if option in litellm_kwargs:
                raise ValueError(
                    f"{option} is not a LiteLLM option here: relaykit does that with {layer}"
                )
        self._litellm = _import_litellm()
        api_base = litellm_kwargs.get("api_base")
        try:
            self._litellm.get_llm_provider(model=model, api_base=api_base)
        except Exception:  # LiteLLM raises its BadRequestError for a provider it does not know
            raise ValueError(
                f"model {model!r} names no provider LiteLLM knows; write it as "
                "'<provider>/<model>', e.g. 'anthropic/claude-3-5-haiku-latest' or "
                "'openai/<name>' with api_base= for an OpenAI-compatible server"
            ) from None
        self.model: str | None = model
        self.name = name or model
        self.price = _cost_map_price(self._litellm, model)
        self.timeout = float(timeout)
        self._api_key = api_key if isinstance(api_key, SecretStr | None) else SecretStr(api_key)
        self._options = dict(litellm_kwargs)
        if self._api_key is not None:
            self._options["api_key"] = self._api_key.get_secret_value()
        # Every credential the calls carry, to mask wherever a provider might echo one: options
        # with a credential's name, and the credential headers among extra_headers.
        headers = self._options.get("extra_headers")
        self._secrets = Secrets.of(
            headers=headers if isinstance(headers, dict) else None,
            url=self._options.get("api_base"),
            values=[
                value
                for option, value in self._options.items()
                if isinstance(value, str) and is_secret_name(option)
            ],
        )

    def __repr__(self) -> str:
        shown = {
            option: repr(MASK) if is_secret_name(option) else self._secrets.mask(repr(value))
            for option, value in self._options.items()
        }
        options = "".join(f", {option}={text}" for option, text in shown.items())
        return f"LiteLLM(model={self.model!r}, name={self.name!r}{options})"

    async def acomplete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        timeout = time_allowed(ctx, self.timeout, self.name)
        arguments = self._arguments(request, ctx, timeout, stream=False)
        try:
            response = await self._litellm.acompletion(**arguments)
        except Exception as exc:
            raise self._error(exc, timeout) from None
        return self._completion(response)

    async def astream(self, request: ChatRequest, ctx: CallContext) -> ChatStream:
        timeout = time_allowed(ctx, self.timeout, self.name)
        arguments = self._arguments(request, ctx, timeout, stream=True)
        try:
            # The commit point must arrive within the timeout; later silences are bounded by
            # LiteLLM's own read timeout, the same number.
            async with asyncio.timeout(timeout):
                upstream = await self._litellm.acompletion(**arguments)
                return await ChatStream.committed(
                    self._chunks(upstream, allowed_s=timeout), target=self.name
                )
        except RelayError:
            raise
        except TimeoutError:
            raise timed_out(timeout, self.timeout, self.name) from None
        except Exception as exc:
            raise self._error(exc, timeout) from None

    async def aclose(self) -> None:
        """Nothing to close: LiteLLM keeps its connection pools for the whole process."""

    # --- building the call ---------------------------------------------------------------------

    def _arguments(
        self, request: ChatRequest, ctx: CallContext, timeout: float, *, stream: bool
    ) -> dict[str, Any]:
        if self._litellm.model_fallbacks:
            # Set process-wide, LiteLLM's fallbacks apply whatever a call passes.
            raise InvalidRequestError(
                "was not called: litellm.model_fallbacks is set, and LiteLLM would fall back "
                "to other models on its own. Unset it and give the Relay more targets instead",
                target=self.name,
            )
        arguments = {
            **request.body(),
            **self._options,
            "model": self.model,
            "stream": stream,
            "timeout": timeout,
            **_SWITCHED_OFF,
        }
        if not stream:
            arguments.pop("stream_options", None)
        if ctx.options.extra_headers:
            arguments["extra_headers"] = {
                **(self._options.get("extra_headers") or {}),
                **ctx.options.extra_headers,
            }
        return arguments

    # --- reading the answer --------------------------------------------------------------------

    def _completion(self, response: Any) -> ChatCompletion:
        try:
            return ChatCompletion.model_validate(_wire(response))
        except ValidationError as exc:
            raise self._bad_answer(exc, "an answer") from None

    async def _chunks(
        self, upstream: Any, *, allowed_s: float
    ) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async for item in upstream:
                try:
                    chunk = ChatCompletionChunk.model_validate(_wire(item))
                except ValidationError as exc:
                    raise self._bad_answer(exc, "a stream chunk") from None
                yield chunk
        except RelayError:
            raise
        except Exception as exc:
            raise self._error(exc, allowed_s) from None
        finally:
            await upstream.aclose()

    # --- errors --------------------------------------------------------------------------------

    def _error(self, exc: Exception, timeout: float) -> RelayError:
        """relaykit's error for what LiteLLM raised, with this backend's credentials masked.

        It is raised without LiteLLM's exception as its cause: that one's text is the
        provider's, unredacted, and a logged traceback would print it.
        """
        error = classify_exception(exc, secrets=self._secrets)
        if error is None:  # not a failure LiteLLM recognised as one of a provider
            return ProviderError(
                f"failed inside LiteLLM: {describe_exception(exc, secrets=self._secrets)}",
                target=self.name,
                retryable=False,
            )
        if type(error) is ProviderTimeout and error.status is None:
            error = timed_out(timeout, self.timeout, self.name)
        error.target = self.name
        return error

    def _bad_answer(self, exc: ValidationError, what: str) -> BadResponseError:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in problem["loc"])
        return BadResponseError(
            f"sent {what} through LiteLLM that is not a valid completion ({where}: "
            f"{problem['msg']})",
            target=self.name,
        )


def _cost_map_price(litellm: Any, model: str) -> Price | None:
    """The price LiteLLM's model cost map lists for ``model``, None when it lists none."""
    try:
        info = litellm.get_model_info(model)
    except Exception:  # LiteLLM raises a plain Exception for a model it does not map
        return None
    rates = [info.get(key) for key in ("input_cost_per_token", "output_cost_per_token")]
    if not all(isinstance(rate, int | float) for rate in rates):
        return None
    cached = info.get("cache_read_input_token_cost")
    return Price(
        input_per_mtok=rates[0] * _PER_MILLION,
        output_per_mtok=rates[1] * _PER_MILLION,
        cached_input_per_mtok=cached * _PER_MILLION if isinstance(cached, int | float) else None,
    )


_PER_MILLION = 1_000_000


def _wire(response: Any) -> dict[str, Any]:
    """A LiteLLM response object as the OpenAI JSON it stands for.

    LiteLLM adds an empty ``provider_specific_fields`` to messages and choices; it is its own
    bookkeeping, not something the provider sent, so it is left out when empty.
    """
    data: dict[str, Any] = response.model_dump(exclude_none=True)
    for choice in data.get("choices") or ():
        for part in (choice, choice.get("message"), choice.get("delta")):
            if isinstance(part, dict) and part.get("provider_specific_fields") == {}:
                del part["provider_specific_fields"]
    return data
