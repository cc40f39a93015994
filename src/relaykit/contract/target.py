"""Target: one backend in a Relay, with its own name and per-target middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relaykit._support.checks import layer_list, whole_number
from relaykit.contract.backend import Backend
from relaykit.contract.errors import Attempt, ProviderTimeout, RelayError, RouteStep
from relaykit.contract.events import AttemptFailed, AttemptStarted, AttemptSucceeded
from relaykit.contract.pipeline import (
    CallContext,
    Handler,
    Middleware,
    Response,
    TimeBounds,
    compose,
)
from relaykit.contract.pricing import HasPrice, Price, ceiling
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = ["BoundTarget", "Group", "Strategy", "Target", "chain_of", "leaves_of"]


@dataclass(frozen=True, slots=True)
class Target:
    """A backend as one step of a fallback chain.

    ``middleware`` wraps only this target (first listed = outermost), which is where a circuit
    breaker or a rate limit belongs: it then guards one provider, not the whole chain.
    ``context_window`` (tokens) lets the fallback skip to a larger model on a context error.
    ``price`` is what its tokens cost (``Price``, US dollars per million tokens): answers report
    ``answer.relay.cost_usd`` and a ``Budget`` reserves and settles by it. Without one, the
    backend's own price is used when it knows one (``LiteLLM``, from LiteLLM's model cost map).
    ``prefill`` declares that the model continues an assistant message sent as the last one
    (Anthropic, vLLM with ``continue_final_message``, ...): ``Fallback(continue_streams=True)``
    then asks it to continue a broken stream that way, else with an instruction turn. A mapping
    adds its fields to that message (``{"prefix": True}`` for DeepSeek's and Mistral's prefix
    mode). A target that refuses the prefill with a 400 is asked the other way.

    >>> Target(backend, name="primary", middleware=[CircuitBreaker()])
    """

    backend: Backend
    name: str | None = None
    middleware: Sequence[Middleware] = field(default_factory=tuple)
    context_window: int | None = None
    prefill: bool | Mapping[str, Any] = False
    price: Price | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.backend, Backend):
            raise ValueError(_not_a_backend("Target backend", self.backend))
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"Target name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "middleware", layer_list("middleware", self.middleware))
        window = self.context_window
        if window is not None:
            whole_number("context_window", window, minimum=1, hint="tokens")
        if self.price is None and isinstance(self.backend, HasPrice):
            # A backend that knows its model's price (LiteLLM's cost map) prices the target.
            object.__setattr__(self, "price", self.backend.price)
        elif self.price is not None and not isinstance(self.price, Price):
            raise ValueError(
                f"price must be a relaykit.Price(input_per_mtok=..., output_per_mtok=...), "
                f"got {self.price!r}"
            )

    @property
    def label(self) -> str:
        """The name errors, events and results use for this target."""
        return self.name or self.backend.name

    def bind(self) -> BoundTarget:
        """The target's handler: its middleware around one upstream request.

        ``ctx.target`` names this target from the moment it is tried, so per-target middleware
        (a breaker, a rate limit) can keep state by target, and after success it names the
        target that answered.
        """
        name = self.label
        inner = compose(self.middleware, _upstream(self.backend, name))

        price = self.price

        async def enter(request: ChatRequest, ctx: CallContext) -> Response:
            previous, ctx.target = ctx.target, name
            previous_price, ctx.price = ctx.price, price
            try:
                return await inner(request, ctx)
            except RelayError as exc:
                # Layers outside the targets (an outer RateLimit under a Retry) must not see
                # the last target tried as if it were theirs. A cancellation (a deadline) keeps
                # it, so the Timeout can name the target that was too slow.
                ctx.target = previous
                ctx.price = previous_price
                # A refusal by the target's middleware (an open circuit) never reached the
                # upstream request, which records its own failures.
                route = ctx.route
                if not route or route[-1].error is not exc:
                    ctx.record(RouteStep.of_error(name, exc, None))
                raise

        return BoundTarget(self, enter)


@dataclass(frozen=True, slots=True)
class Group:
    """Several targets that act as one target of an outer strategy: ``strategy`` over ``targets``.

    A group goes wherever a target goes (``Relay(targets=[...])``, another group), so
    strategies nest: load-balance between two regions, each a fallback chain of its own. The
    answer and the route name the member that answered; a group whose every member failed
    fails as a whole and the outer strategy moves on. Names must be distinct across a
    Relay's chain, members included.

    >>> east = Group("east", [Target(a1, name="east-1"), Target(a2, name="east-2")], Fallback())
    >>> west = Group("west", [Target(b1, name="west-1"), Target(b2, name="west-2")], Fallback())
    >>> Relay(targets=[east, west], strategy=LoadBalance(weights={"east": 3, "west": 1}))
    """

    name: str
    targets: Sequence[Backend | Target | Group]
    strategy: Strategy
    # ``targets`` as Targets and Groups, checked once.
    members: tuple[Target | Group, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Group name must be a non-empty string, got {self.name!r}")
        if not self.targets:
            raise ValueError(f"Group {self.name!r}: targets must name at least one target")
        members = chain_of(f"Group {self.name!r} targets", self.targets)
        object.__setattr__(self, "members", members)

    @property
    def label(self) -> str:
        """The name errors, events and the outer strategy's options (weights) use."""
        return self.name

    @property
    def context_window(self) -> None:
        """A group has no window of its own; its strategy skips members that are too small."""
        return None

    @property
    def prefill(self) -> bool:
        """A group continues a broken stream by the instruction turn, which every member
        understands; which member will answer is its strategy's choice."""
        return False

    @property
    def price(self) -> Price | None:
        """The most a call through the group may cost per token: each rate at its most
        expensive member's (``pricing.ceiling``); None when a member has no price."""
        return ceiling(leaf.price for leaf in self.leaves())

    def leaves(self) -> tuple[Target, ...]:
        """Every Target inside, in order, however deeply grouped."""
        return tuple(leaf for t in self.members for leaf in leaves_of(t))

    def bind(self) -> BoundTarget:
        """The group's handler: its strategy over its members' handlers.

        A failure the strategy did not count as a try (one member raising its own error)
        is counted here, so the outer strategy's ``AllTargetsFailedError`` lists every try.
        """
        members = tuple(t.bind() for t in self.members)
        inner = self.strategy.build(members)
        name = self.name

        async def group(request: ChatRequest, ctx: CallContext) -> Response:
            counted = len(ctx.failures)
            started = ctx.clock.now()
            try:
                return await inner(request, ctx)
            except RelayError as exc:
                if len(ctx.failures) == counted:
                    ctx.failures.append(Attempt(exc.target or name, exc, ctx.clock.now() - started))
                raise

        return BoundTarget(self, group, members)


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A target with its composed handler, as strategies (Fallback, ...) receive it.

    ``await bound.handler(request, ctx)`` makes one attempt on this target, through its own
    middleware; ``name`` is the label errors and events use for it. For a ``Group``,
    ``members`` are its members, bound (empty for a plain target).
    """

    target: Target | Group
    handler: Handler
    members: tuple[BoundTarget, ...] = ()

    @property
    def name(self) -> str:
        return self.target.label


def chain_of(where: str, targets: Sequence[Backend | Target | Group]) -> tuple[Target | Group, ...]:
    """``targets`` as Targets and Groups (a bare backend becomes a Target), with distinct names
    across the chain and every group's members; a ``ValueError`` names ``where`` otherwise."""
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise ValueError(
            f"{where} must be a list of backends, Targets or Groups, e.g. {where}=[backend]; "
            f"got {targets!r}"
        )
    for i, entry in enumerate(targets):
        if not isinstance(entry, Target | Group | Backend):
            raise ValueError(_not_a_backend(f"{where}[{i}]", entry))
    chain = tuple(t if isinstance(t, Target | Group) else Target(t) for t in targets)
    names = [t.label for t in chain]
    names += [leaf.label for t in chain if isinstance(t, Group) for leaf in t.leaves()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"{where} must have distinct names; {duplicates} appear more than once. "
            "Pass Target(backend, name=...) to tell them apart"
        )
    return chain


def _not_a_backend(where: str, value: object) -> str:
    hint = (
        f"; for a URL pass OpenAICompatible({value!r}, api_key=..., model=...)"
        if isinstance(value, str)
        else ""
    )
    return (
        f"{where} is {value!r}, not a backend (something with name, model, acomplete, astream "
        f"and aclose, such as OpenAICompatible or FunctionBackend){hint}"
    )


def leaves_of(target: Target | Group) -> tuple[Target, ...]:
    """The Targets a chain entry stands for: itself, or a group's members."""
    return target.leaves() if isinstance(target, Group) else (target,)


class Strategy(Protocol):
    """How a Relay uses its targets: turns the bound targets into one handler.

    ``build`` runs once per chain, when the Relay is constructed (so a strategy checks its
    options against the targets there, and keeps per-chain state in what it returns). Each
    ``BoundTarget`` has the target's ``name`` and its ``handler``: its middleware around one
    upstream request. The handler returned answers a call or raises a ``RelayError``.

    >>> class FirstOnly:
    ...     def build(self, targets):
    ...         return targets[0].handler
    """

    def build(self, targets: Sequence[BoundTarget]) -> Handler: ...


def _upstream(backend: Backend, name: str) -> Handler:
    async def call(request: ChatRequest, ctx: CallContext) -> Response:
        ctx.attempt += 1
        attempt = ctx.attempt
        started = ctx.clock.now()
        if AttemptStarted in ctx.observed:
            ctx.emit(AttemptStarted(name, attempt, backend.model or request.model))
        try:
            bounds = ctx.bounds
            if bounds.limits_attempts:  # without a Timeout, no timeout scope is entered at all
                result: Response = await _ask_in_time(backend, request, ctx, bounds, name)
            elif request.stream:
                stream = await backend.astream(request, ctx)
                stream.target = name
                result = stream
            else:
                result = await backend.acomplete(request, ctx)
            validate = ctx.options.validate
            if validate is not None and isinstance(result, ChatCompletion):
                validate(result)
        except RelayError as exc:
            exc.target = name
            latency_s = ctx.clock.now() - started
            ctx.record(RouteStep.of_error(name, exc, latency_s))
            if AttemptFailed in ctx.observed:
                ctx.emit(AttemptFailed(name, attempt, exc, latency_s))
            raise
        if AttemptSucceeded in ctx.observed:
            ctx.emit(AttemptSucceeded(name, attempt, ctx.clock.now() - started))
        idle_s = bounds.idle_s
        if idle_s is not None and isinstance(result, ChatStream):
            # Watched here, on the attempt's own stream, so a stall breaks this attempt: the
            # layers outside (a breaker, a continuing Fallback) see it break, wherever the
            # Timeout that set idle_s sits.
            return await ChatStream.through(result, _idle_watched(result, ctx, idle_s))
        return result

    return call


async def _idle_watched(
    stream: ChatStream, ctx: CallContext, idle_s: float
) -> AsyncIterator[ChatCompletionChunk]:
    """``stream``, failing with ``ProviderTimeout`` when no chunk arrives for ``idle_s``."""
    clock = ctx.clock
    try:
        yield await anext(stream)  # in hand: the stream is committed
        while True:
            try:
                async with clock.timeout(idle_s):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ProviderTimeout(
                    f"sent no chunk for {idle_s:g} s, the idle timeout", target=stream.target
                ) from None
            yield chunk
    finally:
        await stream.aclose()  # releases the connection when stalled or closed early


async def _ask_in_time(
    backend: Backend, request: ChatRequest, ctx: CallContext, bounds: TimeBounds, name: str
) -> Response:
    """One upstream request within the attempt timeout (for a stream: until its commit point),
    the first-token timeout and the call's deadline, whichever ends first."""
    limit = bounds.attempt_s
    bound = "attempt_s"
    first = bounds.first_token_s if request.stream else None
    if first is not None and (limit is None or first < limit):
        limit, bound = first, "first_token_s"
    remaining = ctx.remaining()
    if remaining is not None and (limit is None or remaining < limit):
        if remaining <= 0:
            raise ProviderTimeout.deadline_passed()
        limit, bound = remaining, "total_s"
    try:
        async with ctx.clock.timeout(limit):
            if request.stream:
                stream = await backend.astream(request, ctx)
                stream.target = name
                return stream
            return await backend.acomplete(request, ctx)
    except TimeoutError:
        if limit is None:  # not our scope: no limit applied to this (non-streamed) request
            raise
        # Retryable: the fallback moves on at once, and a Retry may try this target again.
        if bound == "total_s":
            raise ProviderTimeout.deadline_reached(limit, name) from None
        if bound == "attempt_s":
            what = f"did not answer within the {limit:g} s attempt timeout"
        else:
            what = f"sent no content within the {limit:g} s first-token timeout"
        raise ProviderTimeout(
            f"{what}. Raise Timeout({bound}=...) or add a fallback target", target=name
        ) from None
