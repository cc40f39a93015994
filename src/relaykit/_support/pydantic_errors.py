"""Readable, key-free descriptions of pydantic validation errors.

Request arguments and config files are both validated by pydantic; both report a mistake by its
path (``messages[0].role``, ``targets[1].base_url``) and a short view of what was given. One
module serves both, so both hide secrets the same way: a value under a key that looks like a
credential is never echoed back.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

from relaykit._support.secrets import MASK, is_secret_name, mask_shapes, masked_mapping

__all__ = ["best_error", "describe_input", "error_path", "problem", "subpath"]

# Union members and discriminator tags pydantic puts in error locations; they are not fields.
_TAGS = frozenset(
    {
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
        "text",
        "image_url",
        "input_audio",
        "str",
        "list",
    }
)
_MAX_INPUT = 60


def error_path(error: ErrorDetails, root: str, data: Mapping[str, Any] | None = None) -> str:
    """``messages[0].role`` from pydantic's location, without union and tag noise.

    pydantic's location mixes keys and indexes with the names of union members and tags
    (``str``, ``TargetConfig``). Given the validated ``data``, a part is kept exactly when it is
    a key or an index of the data at that point, so every key is named whatever it is called
    (``routes.tool``, ``routes["gpt-4o"]``): config files name the exact place. Without it,
    tags are told by name and keys that are not identifiers are left out; request errors keep
    the paths they have always had.
    """
    loc: list[int | str] = list(error["loc"])
    # A field that is not in the data: a required one left out (the last part of its location,
    # whatever it is called, "function" included), or a missing discriminator. It is named
    # after the walk, which keeps only what the data spells.
    absent: int | str | None = None
    discriminator = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
    if error["type"] == "union_tag_invalid":  # the discriminator itself is the bad field
        loc.append(discriminator)
    elif error["type"] == "union_tag_not_found":
        absent = discriminator
    elif error["type"] == "missing" and loc:
        absent = loc.pop()
    path = ""
    if data is None:
        for part in loc:
            if isinstance(part, int) or (part not in _TAGS and part.isidentifier()):
                path = subpath(path, part)
    else:
        node: Any = data
        for part in loc:
            key = isinstance(node, Mapping) and part in node
            index = isinstance(part, int) and isinstance(node, list | tuple) and part < len(node)
            if key or index:  # else a union member or a tag, which no key of the data spells
                node = node[part]
                path = subpath(path, part)
    if absent is not None and absent != "":
        path = subpath(path, absent)
    return path or root


def subpath(path: str, part: object) -> str:
    """``path`` one step down: ``targets[1]``, ``targets[1].base_url``; a key that is not an
    identifier is quoted (``routes["gpt-4o"]``, ``headers["X-Org"]``) so the path stays exact."""
    if isinstance(part, str):
        if part.isidentifier():
            return f"{path}.{part}" if path else part
        return f"{path}[{json.dumps(part, ensure_ascii=False)}]"
    return f"{path}[{part!r}]"


def best_error(errors: Sequence[ErrorDetails]) -> ErrorDetails:
    """The most specific of several errors: for a union, the branch that got furthest."""
    return max(errors, key=lambda error: len(error["loc"]))


def problem(error: ErrorDetails, given: str | None = None) -> str:
    """What is wrong, in lower case, with a short and key-free view of the input (or ``given``,
    a description of it, when the input itself must not be shown)."""
    # pydantic's words for a message without a role are about its own machinery.
    message = "field required" if error["type"] == "union_tag_not_found" else error["msg"]
    message = message[:1].lower() + message[1:]
    shown = given if given is not None else describe_input(error.get("input"), error["loc"])
    return f"{message} (got {shown})"


def describe_input(value: Any, loc: Collection[int | str] = ()) -> str:
    """A short repr of ``value`` that never shows a credential."""
    if loc and any(isinstance(p, str) and is_secret_name(p) for p in loc):
        return repr(MASK)
    text = mask_shapes(repr(masked_mapping(value)))
    return text if len(text) <= _MAX_INPUT else text[: _MAX_INPUT - 3] + "..."
