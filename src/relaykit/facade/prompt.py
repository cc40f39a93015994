"""``@relay.prompt``: a typed function as a model call through a Relay.

The function's docstring (a ``str.format`` template) or the string it returns is the prompt,
its arguments fill it, and its return annotation decides the result: ``str`` (or none) gives
the answer's text, a pydantic model gives validated structured output (requested as
``response_format: json_schema``); any other annotation is refused at decoration. An answer
that does not validate counts as a failed attempt, so Retry and Fallback handle it like any
other failure.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import string
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from relaykit.contract.errors import BadResponseError
from relaykit.contract.schema import ChatCompletion
from relaykit.facade.request import check_call_options, validate_request

__all__ = ["Completes", "prompt"]

F = TypeVar("F", bound=Callable[..., Any])


class Completes(Protocol):
    """What a prompt function calls: a Relay, or anything with its two completion methods.

    Named here, not imported, so the Relay (whose ``prompt`` method lands here) and this module
    do not import each other.
    """

    def acomplete(self, **arguments: Any) -> Awaitable[ChatCompletion]: ...

    def complete(self, **arguments: Any) -> ChatCompletion: ...


def prompt(
    relay: Completes,
    *,
    model: str | None = None,
    system: str | None = None,
    **options: Any,
) -> Callable[[F], F]:
    """Make a typed function a model call through ``relay`` (``@relay.prompt(...)``).

    ``options`` are checked here, as ``relay.acomplete`` would check them, so a typo fails at
    the decorator rather than at the first call. The return annotation must be ``str``, a
    pydantic model, or absent (text); anything else is a ``TypeError`` at decoration.
    """
    call_options: dict[str, Any] = dict(options)
    if model is not None:
        call_options["model"] = model
    _check_options(call_options, _call_arguments(relay))

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        answer = _Answer(fn, call_options)

        def request_for(args: tuple[Any, ...], kwargs: dict[str, Any], body: Any) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            text = body if isinstance(body, str) else _fill(fn, bound.arguments)
            messages = [{"role": "user", "content": text}]
            if system is not None:
                messages.insert(0, {"role": "system", "content": system})
            return {"messages": messages, **answer.options}

        def check(reply: ChatCompletion) -> None:
            if answer.model is not None:
                _parse(answer.model, reply)

        def result(reply: ChatCompletion) -> Any:
            return reply.content if answer.model is None else _parse(answer.model, reply)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                answer.resolve()
                body = await fn(*args, **kwargs)
                reply = await relay.acomplete(validate=check, **request_for(args, kwargs, body))
                return result(reply)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            answer.resolve()
            body = fn(*args, **kwargs)
            reply = relay.complete(validate=check, **request_for(args, kwargs, body))
            return result(reply)

        return run_sync  # type: ignore[return-value]

    return decorate


def _call_arguments(relay: Completes) -> frozenset[str]:
    """relay.acomplete's own keyword arguments (tenant=, cache=, extra_body=, ...): the rest of
    the options are request fields."""
    return frozenset(
        name
        for name, parameter in inspect.signature(relay.acomplete).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    )


_BUILT_BY_PROMPT = {
    "messages": "the prompt is the docstring or the string the function returns; system= adds "
    "a system message",
    "validate": "the return annotation decides how an answer is validated",
}


def _check_options(options: Mapping[str, Any], call_arguments: frozenset[str]) -> None:
    """Reject, at decoration, the options ``relay.acomplete`` would reject at every call."""
    for name, why in _BUILT_BY_PROMPT.items():
        if name in options:
            raise TypeError(f"@relay.prompt sets {name}= itself, so it cannot be an option: {why}")
    request = {name: value for name, value in options.items() if name not in call_arguments}
    # The same checks and messages as at the call; the message stands in for the prompt.
    request["messages"] = [{"role": "user", "content": "(the prompt)"}]
    validate_request(request, options.get("extra_body"), stream=False)
    check_call_options(
        options.get("tenant"),
        options.get("cache", "use"),
        options.get("cache_ttl_s"),
        options.get("cache_max_age_s"),
        options.get("extra_headers"),
        options.get("timeout"),
    )


class _Answer:
    """What a prompt function's answer becomes: text, or a validated pydantic model.

    Resolved from the return annotation at decoration. A string annotation (``from __future__
    import annotations``) naming a class defined further down the module cannot be resolved
    then; it is resolved at the first call, when the module has finished loading.
    """

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = fn
        self._resolved = False
        self.model: type[BaseModel] | None = None
        self.options = options  # the call's options; a model adds its response_format
        with contextlib.suppress(NameError):
            self._resolve()

    def resolve(self) -> None:
        """Resolve the annotation now if decoration could not; called before the function runs."""
        if self._resolved:
            return
        try:
            self._resolve()
        except NameError as exc:
            raise TypeError(
                f"{self._fn.__qualname__}'s annotations cannot be resolved ({exc}); define "
                "that class at module level, where a string annotation can find it"
            ) from None

    def _resolve(self) -> None:
        returns = get_type_hints(self._fn).get("return", str)
        if isinstance(returns, type) and issubclass(returns, BaseModel):
            self.model = returns
            self.options = {
                **self.options,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": returns.__name__,
                        "schema": returns.model_json_schema(),
                        "strict": False,
                    },
                },
            }
        elif returns is not str:
            written = inspect.get_annotations(self._fn)["return"]
            raise TypeError(
                f"{self._fn.__qualname__} is annotated -> "
                f"{written if isinstance(written, str) else inspect.formatannotation(written)}, "
                "which @relay.prompt cannot return: annotate -> str (or nothing) for the "
                "answer's text, or -> a pydantic model for structured output. For a list, a "
                "number or an optional value, return a model that holds it "
                "(class Answer(BaseModel): cities: list[City])"
            )
        self._resolved = True


# How to write a prompt docstring, for every message about one.
_TEMPLATE_SYNTAX = (
    "The docstring is a str.format template: {name} is replaced by the argument called name "
    '(or {self.attribute}), and literal braces are written {{ and }}, e.g. {{"city": ...}}'
)


def _fill(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> str:
    template = inspect.getdoc(fn)
    if not template:
        raise TypeError(
            f"{fn.__qualname__} has no docstring and returned no string: give it a docstring "
            "with {placeholders} for its arguments, or return the prompt"
        )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # a lone { or }
        raise TypeError(
            f"{fn.__qualname__}'s docstring is not a valid template ({exc}). {_TEMPLATE_SYNTAX}"
        ) from None
    for field in fields:
        argument = re.split(r"[.\[]", field, maxsplit=1)[0]  # "self" of {self.persona}
        if not argument or argument.isdigit():  # {} or {0}: str.format's positional fields
            raise TypeError(
                f"{fn.__qualname__}'s docstring has the positional field {{{field}}}, but its "
                f"fields are filled by argument name. {_TEMPLATE_SYNTAX}"
            )
    try:
        return template.format(**arguments)
    except KeyError as exc:
        raise TypeError(
            f"{fn.__qualname__}'s docstring uses {{{exc.args[0]}}}, which is not an argument "
            f"(its arguments: {', '.join(arguments) or 'none'}). {_TEMPLATE_SYNTAX}"
        ) from None


def _parse(model: type[BaseModel], answer: ChatCompletion) -> Any:
    try:
        return model.model_validate_json(answer.content or "")
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "answer"
        raise BadResponseError(
            f"gave an answer that is not a valid {model.__name__} ({where}: {problem['msg']})",
            target=answer.relay.target if answer.relay else None,
        ) from None
