"""The pre-tokenizer splits llama.cpp writes as code instead of a regex (``unicode.cpp``'s custom splitters).

Each function takes the class string of :mod:`emberllm.tokenizers.unicode_classes` (and the text where it needs
more than the class) and one span ``[start, end)`` of it, and returns the spans it cuts that span into.
"""

from __future__ import annotations

from emberllm.tokenizers.unicode_classes import LETTER, NUMBER, SPACE

_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" + LETTER)
_NUMBERS = frozenset("0123456789" + NUMBER)
_SPACES = frozenset("\t\n\x0b\x0c\r " + SPACE)


def digit_groups(classes: str, start: int, end: int) -> list[tuple[int, int]]:
    """llama.cpp's ``unicode_regex_split_custom_afmoe`` (AFMoE, Tiny Aya): each run of ``\\p{N}`` ends its own
    span after its first ``len % 3`` digits and after every three more.

    As in llama.cpp, the text before a digit run joins that run's first group (later splits cut it off).
    """
    spans: list[tuple[int, int]] = []
    prev = pos = start
    while pos < end:
        if classes[pos] not in _NUMBERS:
            pos += 1
            continue
        run = pos
        while pos < end and classes[pos] in _NUMBERS:
            pos += 1
        cut = run + (pos - run) % 3
        if cut == run:
            cut += 3
        while True:
            spans.append((prev, cut))
            prev = cut
            if cut >= pos:
                break
            cut += 3
    if prev < end:
        spans.append((prev, end))
    return spans


def _is_han(cp: int) -> bool:
    """llama.cpp's ``unicode_cpt_is_han``: the CJK unified and compatibility ideograph blocks."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2EBEF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def kimi_k2(text: str, classes: str, start: int, end: int) -> list[tuple[int, int]]:
    """llama.cpp's ``unicode_regex_split_custom_kimi_k2`` (Kimi K2), step for step.

    It stands for ``[\\p{Han}]+|[^\\r\\n\\p{L}\\p{N}]?[letters but Han]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}|
    ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`` (marks are not letters here).
    """
    spans: list[tuple[int, int]] = []
    prev = start

    def cls(i: int) -> str:  # "" past the span: in no class
        return classes[i] if start <= i < end else ""

    def han(i: int) -> bool:
        return start <= i < end and _is_han(ord(text[i]))

    def letter(i: int) -> bool:
        return cls(i) in _LETTERS and not han(i)

    def add(to: int) -> None:
        nonlocal prev
        if to > prev:
            spans.append((prev, to))
        prev = to

    pos = start
    while pos < end:
        c = classes[pos]
        if han(pos):
            while han(pos):
                pos += 1
            add(pos)
            continue
        leader = c not in "\r\n" and c not in _LETTERS and c not in _NUMBERS
        if letter(pos) or (leader and letter(pos + 1)):
            if leader:
                pos += 1
            while letter(pos):
                pos += 1
            if cls(pos) == "'" and pos + 1 < end:
                nxt = text[pos + 1].lower() if text[pos + 1].isascii() else ""
                if nxt in ("s", "t", "m", "d"):
                    pos += 2
                elif pos + 2 < end and text[pos + 2].isascii() and nxt + text[pos + 2].lower() in ("re", "ve", "ll"):
                    pos += 3
            add(pos)
            continue
        if c in _NUMBERS:
            run = pos
            while cls(pos) in _NUMBERS:
                pos += 1
                if pos - run >= 3:
                    add(pos)
                    run = pos
            add(pos)
            continue
        first = cls(pos + 1) if c == " " else c
        if first and first not in _SPACES and first not in _LETTERS and first not in _NUMBERS:
            pos += c == " "
            while cls(pos) and cls(pos) not in _SPACES and cls(pos) not in _LETTERS and cls(pos) not in _NUMBERS:
                pos += 1
            while cls(pos) in ("\r", "\n"):
                pos += 1
            add(pos)
            continue
        n_spaces = 0
        after_newline = 0
        while cls(pos + n_spaces) in _SPACES:
            if cls(pos + n_spaces) in "\r\n":
                after_newline = pos + n_spaces + 1
            n_spaces += 1
        if after_newline:
            pos = after_newline
        elif n_spaces > 1 and pos + n_spaces < end:
            pos += n_spaces - 1
        elif n_spaces:
            pos += n_spaces
        else:
            pos += 1
        add(pos)
    return spans
