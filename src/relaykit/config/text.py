"""A config file's text: ``${VAR}`` expansion, and errors that never show a secret.

A value that came from the environment may be a key set for another field
(``timeout: ${OPENAI_API_KEY}``), and a YAML syntax error's own message quotes the file's lines
(often the line of the key with a missing quote): errors name the variable and the line and
column instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relaykit._support.pydantic_errors import subpath
from relaykit.contract.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["ENV", "Expanded", "expand", "scalar", "within", "yaml_problem"]

ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Text PyYAML quotes in a description: its own token names ('<scalar>'), single characters
# ('\t', ':') and, in a few descriptions, a name from the file (an alias, an anchor, a tag).
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_ONE_CHARACTER = re.compile(r"\\(?:x\w{2}|u\w{4}|U\w{8}|.)|.", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Expanded:
    """A string that ``${VAR}`` filled in: what the file says and what it became."""

    written: str
    value: str

    def described(self) -> str:
        """How an error names this value without showing it: ``the value of ${OPENAI_API_KEY}``.

        A variable's value may be a key, set for another field: ``timeout: ${OPENAI_API_KEY}``.
        """
        written = self.written if ENV.fullmatch(self.written) else repr(self.written)
        return f"the value of {written}"

    def hidden_in(self, text: str) -> str:
        """``text`` with every whole occurrence of the value (quoted, bare, or as the number or
        flag a middleware option read from it) replaced by its description."""
        if not self.value:
            return text
        described = self.described()
        for form in dict.fromkeys([repr(self.value), self.value, str(scalar(self.value))]):
            text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", lambda _: described, text)
        return text


def scalar(text: str) -> Any:
    """``600`` -> 600, ``0.5`` -> 0.5, ``true`` -> True; anything else stays text.

    For middleware options only, which take numbers and flags (``rpm: ${RPM}``); schema
    fields convert their own way, and a header or a body field must stay the text it was.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def expand(value: Any, where: str, expanded: dict[str, Expanded]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, naming the path when unset;
    ``expanded`` learns, by path, each string that changed."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name, default)
            if found is None:
                raise ConfigError(
                    where or "config", f"uses ${{{name}}}, which is not set in the environment"
                )
            return found

        if not ENV.search(value):
            return value
        expanded[where] = Expanded(value, ENV.sub(substitute, value))
        return expanded[where].value
    if isinstance(value, Mapping):
        return {k: expand(v, subpath(where, k), expanded) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, subpath(where, i), expanded) for i, v in enumerate(value)]
    return value


def within(path: str, place: str) -> bool:
    """Whether ``path`` is ``place`` or below it (``targets[1].headers`` is below ``targets``)."""
    return path == place or path.startswith((f"{place}.", f"{place}["))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's description of a syntax error and where it is, without the text of the file.

    PyYAML's own message quotes the lines around the mistake, and the line with a missing
    quote is often the key's (``api_key: "sk-...``); names it took from the file go as well.
    """
    import yaml  # loaded already: only a file read by PyYAML fails this way

    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        return f"{exc.reason}: character #x{exc.character:04x} at offset {exc.position}"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return "PyYAML could not read it"
    parts = []
    for description, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if description:
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            parts.append(f"{_QUOTED.sub(_own_words, description)}{at}")
    return ", ".join(parts)


def _own_words(quoted: re.Match[str]) -> str:
    """A quoted part of PyYAML's description, unless it is text taken from the file."""
    text = quoted.group(0)[1:-1]
    if text.startswith("<") or _ONE_CHARACTER.fullmatch(text):
        return quoted.group(0)
    return "(a name from the file, not shown)"
