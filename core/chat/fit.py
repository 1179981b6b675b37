"""Fit a conversation into the context by leaving out its oldest turns.

Like llama-server's context shift, which keeps the first ``n_keep`` tokens and drops the oldest after them, but on
messages: every system message and the latest user message (with whatever follows it) stay; whole user/assistant
turns go, oldest first, so the chat template still renders a well-formed conversation.  The prompt is measured by
a caller's ``count_tokens(messages)`` (render the template, tokenize); a binary search over how many leading turns
to drop calls it O(log turns) times.

Pure Python (no numpy): it runs in Pyodide too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FitResult", "fit_messages", "reply_reserve"]

Message = Mapping[str, Any]


@dataclass(frozen=True)
class FitResult:
    """The messages to render, in their order, and how many were left out."""

    messages: list[Message]
    dropped: int


def reply_reserve(n_predict: int, n_ctx: int) -> int:
    """Tokens to keep free for the reply: ``n_predict``, at most a quarter of the context (the whole quarter when
    ``n_predict`` < 0), at least 1 (the first token).  A longer reply goes on with the engine's context shift."""
    quarter = n_ctx // 4
    return max(1, quarter if n_predict < 0 else min(n_predict, quarter))


def _turns(messages: Sequence[Message]) -> list[list[int]]:
    """Indices of the droppable messages grouped in turns: non-system messages before the latest user message,
    a turn starting at each user message (anything before the first user message is a turn of its own)."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    end = users[-1] if users else len(messages) - 1
    turns: list[list[int]] = []
    for i in range(end):
        role = messages[i].get("role")
        if role == "system":
            continue
        if role == "user" or not turns:
            turns.append([i])
        else:
            turns[-1].append(i)
    return turns


def fit_messages(count_tokens: Callable[[list[Message]], int], messages: Sequence[Message], n_ctx: int,
                 n_reserve: int) -> FitResult:
    """The longest tail of ``messages`` (system messages always kept) whose prompt, as ``count_tokens`` measures
    it, leaves ``n_reserve`` tokens of the ``n_ctx`` free; ``ValueError`` when the system messages and the latest
    user message alone do not.  Assumes dropping more turns never lengthens the prompt."""
    if not messages:
        raise ValueError("no messages to fit")
    turns = _turns(messages)

    def kept(k: int) -> list[Message]:
        gone = {i for turn in turns[:k] for i in turn}
        return [m for i, m in enumerate(messages) if i not in gone]

    def fits(k: int) -> bool:
        return count_tokens(kept(k)) + n_reserve <= n_ctx

    whole = count_tokens(list(messages))
    if whole + n_reserve <= n_ctx:
        return FitResult(list(messages), 0)
    least = count_tokens(kept(len(turns))) if turns else whole
    if least + n_reserve > n_ctx:
        reply = f" (+{n_reserve} kept for the reply)" if n_reserve > 0 else ""
        raise ValueError(f"the last message and system prompt take {least} tokens{reply}; the context holds "
                         f"{n_ctx}: shorten it or raise Context")
    lo, hi = 0, len(turns)  # kept(lo) does not fit, kept(hi) does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return FitResult(kept(hi), sum(len(turn) for turn in turns[:hi]))
