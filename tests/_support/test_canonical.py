"""canonical_json: the cache key's text is json.dumps with sorted keys, built faster."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit._support import canonical as _canonical
from relaykit._support.canonical import canonical_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def reference(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_text_is_json_dumps_with_sorted_keys(value: Any) -> None:
    assert canonical_json(value) == reference(value)


def test_dict_order_does_not_change_the_text() -> None:
    a = {"tools": [{"parameters": {"b": 1, "a": {"y": [1, 2], "x": "é"}}}], "model": "m"}
    b = {"model": "m", "tools": [{"parameters": {"a": {"x": "é", "y": [1, 2]}, "b": 1}}]}
    assert canonical_json(a) == canonical_json(b) == reference(a)


def test_what_json_cannot_hold_raises_and_the_next_call_is_unaffected() -> None:
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        canonical_json({"extra": object()})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError):
        canonical_json(cycle)
    shared = {"k": "v"}
    assert canonical_json([shared, shared]) == '[{"k":"v"},{"k":"v"}]'


def test_without_the_c_encoder_the_text_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    pure = _canonical._build()
    assert isinstance(getattr(pure, "__self__", None), json.JSONEncoder)
    value = {"b": [1.5, None, True], "a": "ü\n", "c": {"z": 1, "y": 2}}
    assert pure(value) == reference(value)
    with pytest.raises(TypeError):
        pure({"extra": object()})
