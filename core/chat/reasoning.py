"""Reasoning ("thinking") in replies: the tags a chat template thinks in, and a reply split into its reasoning and
its content, as llama.cpp's ``reasoning_format`` ``deepseek`` does (``reasoning_content`` beside ``content``).

A template that thinks wraps the reasoning in a pair of tags (``<think>``…``</think>`` for DeepSeek-R1, Qwen3,
QwQ; ``<|START_THINKING|>``…``<|END_THINKING|>`` for Command-R7B).  The prompt may already open the reasoning (the
generation prompt ends with the start tag), or the reply opens it; either way the reasoning runs to the end tag and
the rest of the reply is its content.  A reply cut off before the end tag is all reasoning.  The splitter works
on streamed text: it holds back only what could still be the start of a tag.

Pure Python: it runs in Pyodide too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["THINK_TAGS", "ReasoningSplitter", "split_reasoning", "think_tags"]

#: (start, end) tag pairs of the reasoning templates llama.cpp parses, most common first.
THINK_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<seed:think>", "</seed:think>"),
    ("[THINK]", "[/THINK]"),
)


def think_tags(template_source: str) -> tuple[str, str] | None:
    """The reasoning tags a chat template uses (both of a pair appear in its source), or None."""
    for start, end in THINK_TAGS:
        if start in template_source and end in template_source:
            return start, end
    return None


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


@dataclass
class ReasoningSplitter:
    """Streamed reply text in, ``(reasoning, content)`` pieces out (``opened``: the prompt ends inside the
    reasoning, i.e. with the start tag).  Whitespace at the start of the reasoning and of the content after it is
    dropped."""

    start: str
    end: str
    opened: bool = False
    state: str = field(default="", init=False)  # "lead" (may still open), "reasoning", "content"
    held: str = field(default="", init=False)
    trim: bool = field(default=False, init=False)  # drop leading whitespace of the part now running

    def __post_init__(self) -> None:
        self.state = "reasoning" if self.opened else "lead"
        self.trim = self.opened

    def feed(self, text: str) -> tuple[str, str]:
        """The reasoning and content that ``text`` (the next piece of the reply) makes certain."""
        self.held += text
        reasoning, content = "", ""
        while True:
            if self.trim:
                self.held = self.held.lstrip()
                if not self.held:
                    return reasoning, content
                self.trim = False
            if self.state == "lead":
                lead = self.held.lstrip()
                if lead.startswith(self.start):
                    self.state, self.held, self.trim = "reasoning", lead[len(self.start):], True
                    continue
                if self.start.startswith(lead):  # (an empty lead too): it may still open
                    return reasoning, content
                self.state = "content"
                continue
            if self.state == "reasoning":
                at = self.held.find(self.end)
                if at >= 0:
                    reasoning += self.held[:at]
                    self.held, self.state, self.trim = self.held[at + len(self.end):], "content", True
                    continue
                keep = _partial_suffix(self.held, self.end)
                reasoning += self.held[: len(self.held) - keep]
                self.held = self.held[len(self.held) - keep:]
                return reasoning, content
            content, self.held = content + self.held, ""
            return reasoning, content

    def flush(self) -> tuple[str, str]:
        """What is held at the end of the reply: an unfinished tag is text of the part it was in."""
        held, self.held = self.held, ""
        if self.state == "reasoning":
            return held, ""
        return "", held


def split_reasoning(text: str, tags: tuple[str, str], opened: bool = False) -> tuple[str | None, str]:
    """A whole reply's reasoning (None when it has none) and content; the reasoning without surrounding
    whitespace."""
    splitter = ReasoningSplitter(*tags, opened=opened)
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.flush()
    had = opened or text.lstrip().startswith(tags[0])
    return ((r1 + r2).strip() if had else None), c1 + c2
