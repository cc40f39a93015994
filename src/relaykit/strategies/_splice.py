"""The pure part of continuing a broken stream: the request that asks, and where answers join.

``_continuation`` acts on these; nothing here needs a clock, a network or a stream.

``continuation_request`` asks a target to go on from the partial answer the caller holds, the
way that target supports: as an assistant prefill (the partial is the last message, which the
model extends) when the Target declares ``prefill``, else as an instruction turn (the partial as
an assistant message, then a user turn asking to continue without repeating).

``Splice`` decides, from the continuation's opening, how it joins the partial. Models asked to
continue often start over instead, and a target that ignores the request always does; the caller
must never see text twice. So the opening is held back until one of these is certain:

- **restart**: it repeats the whole partial. The repeated part is dropped, the rest released.
- **overlap**: it goes on, but first repeats the partial's last words (up to ``_OVERLAP_TOKENS``
  tokens, or the cut word's start). Those are dropped.
- **continue**: it goes on from where the partial stopped. Released as it is.
- **diverged**: it restates the partial's opening (16 letters or digits, or half of a shorter
  partial) and then departs from it: a new answer, which cannot be joined to the old one. It
  is discarded, and the next target is asked; with none left the stream fails with the partial.

Text is compared by its letters and digits only, Unicode compatibility-normalized and
case-folded, so a restart that differs from the partial only in spacing, tokenization,
punctuation, markup or case still counts.
A paraphrased restart (same meaning, other words) is not recognised; that limit is documented.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from relaykit.contract.schema import ChatRequest

__all__ = ["CONTINUE_PROMPT", "Join", "Splice", "continuation_request", "separator"]

CONTINUE_PROMPT = (
    "Your previous message was cut off. Continue it exactly where it stopped, without "
    "repeating anything and without any preamble."
)

# How much of the partial's opening a continuation may restate before departing from it and
# still count as going on (a reply that happens to start like the answer did); any more is a
# restart that went another way. 16 letters or digits are three or four words; of a shorter partial,
# half (at least 4). Erring towards "diverged" is safe: it costs a continuation, never a
# doubled answer.
_RESTART_CHARS = 16
# The most trailing tokens of the partial a continuation may repeat and have dropped.
_OVERLAP_TOKENS = 40
_TOKEN = re.compile(r"\w+|[^\w\s]")

JoinKind: TypeAlias = Literal["restart", "overlap", "continue", "diverged"]


def continuation_request(
    request: ChatRequest, partial_text: str, prefill: bool | Mapping[str, Any]
) -> ChatRequest:
    """``request`` asking to continue ``partial_text``, by prefill or by an instruction turn.

    ``prefill`` is the Target's declaration: False, True, or fields to add to the prefilled
    assistant message (``{"prefix": True}`` for DeepSeek's and Mistral's prefix mode).
    """
    body = request.body()
    partial: dict[str, Any] = {"role": "assistant", "content": partial_text}
    if prefill:
        if isinstance(prefill, Mapping):
            partial.update(prefill)
        messages = [*body["messages"], partial]
    else:
        messages = [*body["messages"], partial, {"role": "user", "content": CONTINUE_PROMPT}]
    return ChatRequest.model_validate({**body, "messages": messages, "stream": True})


@dataclass(frozen=True, slots=True)
class Join:
    """How a continuation joins the partial: ``drop`` characters of its opening are repeats."""

    kind: JoinKind
    drop: int = 0


class _Folded:
    """The letters and digits of a text, folded, each mapped back to where it ends in the text.

    Whitespace, punctuation and markup are left out, so "Alpha, bravo" and "**Alpha** bravo"
    fold alike: a restart that reformats the answer is still the same answer.
    """

    __slots__ = ("ends", "text")

    def __init__(self, raw: str) -> None:
        chars: list[str] = []
        ends: list[int] = []  # ends[i]: the raw length that covers folded character i
        for position, char in enumerate(raw):
            if char.isspace():
                continue
            for folded in unicodedata.normalize("NFKC", char).casefold():
                if folded.isalnum():
                    chars.append(folded)
                    ends.append(position + 1)
        self.text = "".join(chars)
        self.ends = ends


class Splice:
    """Decides how a continuation's opening joins ``partial`` (see the module docstring)."""

    __slots__ = ("_partial", "_partial_tokens", "_raw_partial")

    def __init__(self, partial: str) -> None:
        self._raw_partial = partial
        self._partial = _Folded(partial).text
        self._partial_tokens = _tokens(partial)[-_OVERLAP_TOKENS:]

    def decide(self, opening: str, *, ended: bool) -> Join | None:
        """The join for a continuation that has sent ``opening`` so far, or None to wait.

        ``ended`` says the continuation finished with ``opening``: then a decision is due.
        """
        partial = self._partial
        if not partial:
            return Join("continue")
        seen = _Folded(opening)
        text = seen.text
        common = _common_prefix(partial, text)
        if common == len(partial):
            return Join("restart", seen.ends[common - 1])
        if common == len(text):  # all of it so far restates the partial's opening
            if not ended:
                return None
            return Join("continue") if not text else Join("diverged")
        if common >= min(_RESTART_CHARS, max(4, len(partial) // 2)):
            return Join("diverged")
        return self._overlap(opening, ended)

    def _overlap(self, opening: str, ended: bool) -> Join | None:
        """A real continuation: how much of its opening repeats the partial's last words."""
        tokens = _tokens(opening)
        partial = self._partial_tokens
        for size in range(min(len(partial), _OVERLAP_TOKENS), 0, -1):
            tail = partial[-size:]
            if len(tokens) >= size:
                if [t for t, _ in tokens[:size]] == [t for t, _ in tail]:
                    return Join("overlap", tokens[size - 1][1])
            elif not ended and [t for t, _ in tail[: len(tokens)]] == [t for t, _ in tokens]:
                return None  # it may yet repeat this whole tail: wait for more
        # The partial was cut inside a word that the continuation writes out whole: "Fra" then
        # "France is" joins as "France is", not "FraFrance is".
        if partial and self._raw_partial[-1:].isalnum() and opening[:1].isalnum() and tokens:
            cut, first = partial[-1][0], tokens[0][0]
            if len(first) > len(cut) and first.startswith(cut):
                return Join("overlap", len(cut))
            if not ended and len(tokens) == 1 and cut.startswith(first):
                return None
        return Join("continue")


def separator(partial: str, opening: str) -> str:
    """The space an instruction-turn continuation leaves out between its text and the partial.

    A model answering a new turn starts its message without a leading space, while a stream
    breaks between tokens, which mostly means after a whole word: "...delta echo" continued as
    "foxtrot golf" must read "echo foxtrot". A prefilled continuation extends the text itself
    and brings its own spacing, so this is for the instruction turn only. A word that the cut
    split and the continuation finishes ("Fra" then "nce") gets a space it should not: the
    rarer case, and a documented limit.
    """
    end, start = partial[-1:], opening[:1]
    if (end.isalnum() and start.isalnum()) or (end in ",;:!?." and start.isalpha()):
        return " "
    return ""


def _tokens(text: str) -> list[tuple[str, int]]:
    """Words and punctuation marks, folded, each with the raw offset where it ends."""
    folded = unicodedata.normalize("NFKC", text)
    if len(folded) != len(text):  # offsets must index the raw text: fold token by token
        return [
            (unicodedata.normalize("NFKC", m.group()).casefold(), m.end())
            for m in _TOKEN.finditer(text)
        ]
    return [(m.group().casefold(), m.end()) for m in _TOKEN.finditer(text)]


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    index = 0
    while index < limit and a[index] == b[index]:
        index += 1
    return index
