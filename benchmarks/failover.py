"""Latency while the primary target is down: relaykit's fallback and breaker vs LiteLLM's Router.

Two targets, the secondary healthy (``fast_server.py`` in its own process), the primary down in
one of two ways:

- **refused**: nothing listens on its port (a crashed provider, a wrong port): every request to
  it fails at connect, fast;
- **black hole**: it accepts the request and never answers (a hung provider): only a timeout
  ends the wait, ``Timeout(attempt_s=0.05)`` on relaykit's side, ``timeout=0.05`` on the
  primary deployment on LiteLLM's.

For each, relaykit runs without and with ``CircuitBreaker()`` (defaults: opens after 5
consecutive failures, 5 s cool-down, then one probe) on the primary, and LiteLLM's Router runs
with both deployments in one model group (``order`` 1 and 2, ``num_retries=1``) and its
cooldown (defaults: a deployment that failed 3 times is skipped for 5 s). Calls are one at a
time; the healthy path (one healthy target) is the reference. A round lasts ~1.5 s and each
side runs 5 rounds in turns, so each breaker setup spans more than one cool-down: the probes
it sends to the dead primary are part of its p99 and max (their number is printed).

Goal (relaykit with the breaker, once it has opened): p99 within 1 ms of the healthy path, and
max under 50 ms for the refused primary.

    python benchmarks/failover.py            # ~2 min
    python benchmarks/failover.py --quick    # smoke test
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import contenders
import fast_server
from harness import (
    Side,
    figure,
    grouped_bars,
    import_litellm,
    in_turns,
    print_table,
    save,
    setup,
    write_results,
)

ATTEMPT_S = 0.05
# The smoke run shares a busy machine with the test suite: there a healthy secondary can take
# longer than 50 ms, and the tight timeout would fail it too.
QUICK_ATTEMPT_S = 0.5
GOAL_P99_MS = 1.0
GOAL_MAX_MS = 50.0


@contextmanager
def refused_url() -> Iterator[str]:
    """A base URL whose port is bound but not listening: connecting is refused at once."""
    with socket.socket() as held:  # held, so nothing else takes the port meanwhile
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}/v1"


class PrimaryAttempts:
    """A listener counting the requests relaykit sent to the primary (probes included)."""

    def __init__(self) -> None:
        from relaykit.events import AttemptStarted

        self.kind = AttemptStarted
        self.wants = frozenset({AttemptStarted})
        self.count = 0

    def __call__(self, event: Any) -> None:
        if isinstance(event, self.kind) and event.target == "primary":
            self.count += 1


def relaykit_side(
    label: str, primary: str | None, secondary: str, *, breaker: bool, attempt_s: float | None
) -> tuple[Side, PrimaryAttempts]:
    from relaykit import CircuitBreaker, OpenAICompatible, Relay, Target, Timeout

    attempts = PrimaryAttempts()
    key, model = contenders.API_KEY, contenders.MODEL
    targets: list[Any] = []
    if primary is not None:
        targets.append(
            Target(
                OpenAICompatible(primary, api_key=key, model=model, name="primary"),
                middleware=[CircuitBreaker()] if breaker else [],
            )
        )
    targets.append(OpenAICompatible(secondary, api_key=key, model=model, name="secondary"))
    relay = Relay(
        targets=targets,
        middleware=[Timeout(attempt_s=attempt_s)] if attempt_s else [],
        listeners=[attempts],
    )

    async def call(i: int) -> Any:
        answer = await relay.acomplete(messages=contenders.PROMPT)
        return answer.relay.target

    def check(target: Any) -> str | None:
        return None if target == "secondary" else f"answered by {target!r}, not the secondary"

    def count_timed_calls_only() -> None:
        attempts.count = 0

    side = Side(label, call, check=check, close=relay.aclose, before_rounds=count_timed_calls_only)
    return side, attempts


def router_side(
    label: str, primary: str | None, secondary: str, *, attempt_s: float | None
) -> Side:
    """LiteLLM's way to prefer one deployment and fail over to another with cooldown: both in
    one model group, ``order`` 1 and 2, ``num_retries=1`` (the retry goes to the other
    deployment), the SDK clients' own retries off. (With defaults — ``fallbacks`` between two
    groups, the clients retrying — each call spent ~5 s here retrying the refused primary, and
    a one-deployment group is never cooled down.)"""
    litellm = import_litellm()
    params = {"model": f"openai/{contenders.MODEL}", "api_key": contenders.API_KEY}
    params["max_retries"] = 0
    model_list = [{"model_name": "m", "litellm_params": {**params, "api_base": secondary}}]
    if primary is not None:
        first = {**params, "api_base": primary, "order": 1}
        if attempt_s:
            first["timeout"] = attempt_s
        model_list[0]["litellm_params"]["order"] = 2
        model_list.insert(0, {"model_name": "m", "litellm_params": first})
    router = litellm.Router(model_list=model_list, num_retries=1 if primary else 0)

    async def call(i: int) -> Any:
        answer = await router.acompletion(model="m", messages=contenders.PROMPT)
        return answer.choices[0].message.content

    return Side(label, call, check=contenders.expect_text("hi"))


async def measure(url: str, dead: str, *, quick: bool) -> dict[str, Any]:
    hang = url.replace("/v1", "/hang/v1")
    setups: dict[str, Any] = {}
    counters: dict[str, PrimaryAttempts] = {}
    for case, primary in (("refused", dead), ("black hole", hang)):
        attempt_s = (QUICK_ATTEMPT_S if quick else ATTEMPT_S) if case == "black hole" else None
        print(f"measuring a {case} primary ...", flush=True)
        sides: list[Side] = []
        for label, primary_url, breaker in (
            ("relaykit, healthy path", None, False),
            ("relaykit fallback", primary, False),
            ("relaykit fallback + CircuitBreaker", primary, True),
        ):
            side, attempts = relaykit_side(
                label, primary_url, url, breaker=breaker, attempt_s=attempt_s
            )
            sides.append(side)
            counters[f"{case}: {label}"] = attempts
        sides.append(router_side("LiteLLM Router, healthy path", None, url, attempt_s=None))
        sides.append(
            router_side("LiteLLM Router order + cooldown", primary, url, attempt_s=attempt_s)
        )
        stats = await in_turns(sides, quick=quick, round_s=1.5)
        setups[case] = {}
        for label, st in stats.items():
            counter = counters.get(f"{case}: {label}")
            if isinstance(st, dict) and counter is not None:
                st["primary_requests"] = counter.count
            setups[case][label] = st
    return setups


def latency(stats: dict[str, Any] | str, key: str) -> float | None:
    return stats[key] / 1000 if isinstance(stats, dict) else None


def verdicts(setups: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for case, sides in setups.items():
        healthy = sides["relaykit, healthy path"]
        guarded = sides["relaykit fallback + CircuitBreaker"]
        if not (isinstance(healthy, dict) and isinstance(guarded, dict)):
            continue
        p99_gap = (guarded["p99_us"] - healthy["p99_us"]) / 1000
        worst = guarded["max_us"] / 1000
        found[case] = {
            "p99_gap_ms": p99_gap,
            "max_ms": worst,
            "p99_goal_met": p99_gap <= GOAL_P99_MS,
            "max_goal_met": worst < GOAL_MAX_MS if case == "refused" else None,
        }
    return found


def report(results: dict[str, Any]) -> None:
    for case, sides in results["setups"].items():
        print(f"\n{case} primary (latency per call, ms):")
        print_table(
            ["setup", "p50", "p99", "max", "mean", "requests to the primary"],
            [
                [
                    label,
                    latency(st, "p50_us"),
                    latency(st, "p99_us"),
                    latency(st, "max_us"),
                    latency(st, "us_per_call"),
                    st.get("primary_requests", "-") if isinstance(st, dict) else st,
                ]
                for label, st in sides.items()
            ],
        )
    for case, v in results["verdicts"].items():
        line = (
            f"  >>> {case}: with the breaker, p99 is {v['p99_gap_ms']:+.2f} ms from the healthy "
            f"path (goal <= {GOAL_P99_MS} ms: {'MET' if v['p99_goal_met'] else 'NOT MET'})"
        )
        if v["max_goal_met"] is not None:
            line += (
                f", max {v['max_ms']:.1f} ms (goal < {GOAL_MAX_MS:.0f} ms: "
                f"{'MET' if v['max_goal_met'] else 'NOT MET'})"
            )
        else:
            line += f", max {v['max_ms']:.1f} ms (a probe waits out attempt_s)"
        print(line)
    print()


def plot(results: dict[str, Any]) -> Any:
    fig, axes = figure(12, 5, ncols=2)
    for ax, (case, sides) in zip(axes, results["setups"].items(), strict=True):
        labels = list(sides)
        grouped_bars(
            ax,
            [label.replace(", ", ",\n").replace(" + ", "\n+ ") for label in labels],
            {
                "p50": [latency(sides[x], "p50_us") for x in labels],
                "p99": [latency(sides[x], "p99_us") for x in labels],
                "max": [latency(sides[x], "max_us") for x in labels],
            },
            fmt="{:.1f}",
        )
        ax.set_yscale("log")
        ax.set_ylabel("ms per call (log)")
        ax.set_title(f"{case} primary", fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=8)
    fig.suptitle("Failover latency: relaykit vs LiteLLM Router (one call at a time)", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = setup(__doc__, argv)
    import_litellm()
    with fast_server.start() as url, refused_url() as dead:
        setups = asyncio.run(measure(url, dead, quick=args.quick))
    attempt_s = QUICK_ATTEMPT_S if args.quick else ATTEMPT_S
    results = {"setups": setups, "verdicts": verdicts(setups), "attempt_s": attempt_s}
    report(results)
    path = write_results(
        "failover",
        args,
        results,
        method=(
            "one call at a time; each side runs 5 rounds of ~1.5 s in turns; p50/p99/max over "
            "single calls pooled over the rounds; primary refused (bound, not listening) or "
            "black-holing (reads, never answers) with an attempt timeout (results.attempt_s)"
        ),
        compared=["litellm"],
    )
    print(f"wrote {path} and {save(plot(results), 'failover', args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
