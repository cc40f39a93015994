"""MemoryCacheStore and FrozenCompletion: a stored answer is never changed by its callers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import PrivateAttr

from relaykit.contract.schema import ChatCompletion
from relaykit.stores.cache import FrozenCompletion, MemoryCacheStore

ANSWER = {
    "id": "c1",
    "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


class Carrying(ChatCompletion):
    """An answer carrying a value of its own, the way ``@resilient`` carries a return value."""

    _value: Any = PrivateAttr(default=None)


def carrying(value: Any) -> Carrying:
    answer = Carrying.model_validate(ANSWER)
    answer._value = value
    return answer


def test_a_private_value_changed_after_freezing_does_not_change_the_frozen_answer() -> None:
    original = carrying({"senses": ["one"]})
    frozen = FrozenCompletion.of(original)
    original._value["senses"].append("added after freezing")
    thawed = frozen.thaw()
    assert isinstance(thawed, Carrying)
    assert thawed._value == {"senses": ["one"]}


def test_each_thaw_gets_its_own_copy_of_a_private_value() -> None:
    frozen = FrozenCompletion.of(carrying({"senses": ["one"]}))
    first, second = frozen.thaw(), frozen.thaw()
    assert isinstance(first, Carrying) and isinstance(second, Carrying)
    first._value["senses"].append("changed by the first caller")
    assert second._value == {"senses": ["one"]}
    assert frozen.thaw()._value == {"senses": ["one"]}  # type: ignore[attr-defined]


async def test_store_hits_do_not_share_a_private_value() -> None:
    store = MemoryCacheStore()
    await store.set("k", FrozenCompletion.of(carrying([1, 2])), now=0.0, ttl_s=10)
    first = await store.get("k", now=1.0)
    second = await store.get("k", now=1.0)
    assert first is not None and second is not None
    first_answer, second_answer = first.entry.thaw(), second.entry.thaw()
    first_answer._value.append(3)  # type: ignore[attr-defined]
    assert second_answer._value == [1, 2]  # type: ignore[attr-defined]


def test_a_thawed_answer_says_it_is_cached_and_which_target_gave_it() -> None:
    from relaykit.contract.schema import RelayInfo, set_relay_info

    plain = FrozenCompletion.of(ChatCompletion.model_validate(ANSWER)).thaw()
    assert plain.relay is not None
    assert (plain.relay.target, plain.relay.attempts, plain.relay.cached) == (None, 0, True)
    served = ChatCompletion.model_validate(ANSWER)
    set_relay_info(served, RelayInfo("primary", 2))
    thawed = FrozenCompletion.of(served).thaw()
    assert thawed.relay is not None
    assert (thawed.relay.target, thawed.relay.cached) == ("primary", True)
    assert thawed.content == "hi"


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "10", None])
def test_max_entries_must_be_a_whole_number_of_at_least_one(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^max_entries must be a whole number of at least 1"):
        MemoryCacheStore(max_entries=value)
