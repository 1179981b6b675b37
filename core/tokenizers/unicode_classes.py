"""Unicode character classes for the BPE pre-tokenizers, without the ``regex`` package.

The pre-tokenizer patterns of Llama 3, Qwen2, GPT-2 ... use ``\\p{L}``, ``\\p{N}``, ``\\s``, ``\\p{P}``,
``\\p{S}`` and ``\\p{M}``, which the standard ``re`` module cannot express. Instead every character of the
text is replaced by a *class character*: ASCII characters stay themselves (so patterns can still name
``'``, ``s``, ``\\r``...), every other character becomes one placeholder per class. The standard ``re`` then
runs an ASCII-only pattern over that class string; since the mapping is one character to one character,
match offsets are offsets into the original text.

Classes come from ``unicodedata`` (present in Pyodide). ``\\s`` is Unicode's ``White_Space`` property
(which, unlike ``str.isspace``, excludes U+001C..U+001F).
"""

from __future__ import annotations

import unicodedata

#: Placeholders for non-ASCII characters, by class.
LETTER = "\x80"
NUMBER = "\x81"
SPACE = "\x82"
MARK = "\x83"
PUNCT = "\x84"
SYMBOL = "\x85"
OTHER = "\x86"

#: Unicode White_Space characters outside ASCII.
_NON_ASCII_SPACES = frozenset(
    [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

_CATEGORY_CLASS = {"L": LETTER, "N": NUMBER, "M": MARK, "P": PUNCT, "S": SYMBOL}


def char_class(cp: int) -> str:
    """The class character of code point ``cp`` (ASCII code points map to themselves)."""
    if cp < 0x80:
        return chr(cp)
    if cp in _NON_ASCII_SPACES:
        return SPACE
    return _CATEGORY_CLASS.get(unicodedata.category(chr(cp))[0], OTHER)


class _ClassTable(dict[int, str]):
    """A ``str.translate`` table that classifies code points on first sight and remembers them."""

    def __missing__(self, cp: int) -> str:
        cls = char_class(cp)
        self[cp] = cls
        return cls


_TABLE = _ClassTable((cp, chr(cp)) for cp in range(0x80))


def classify(text: str) -> str:
    """The class string of ``text``: same length, one class character per character."""
    if text.isascii():
        return text
    return text.translate(_TABLE)


_SPACE_AS_VT = dict.fromkeys(_NON_ASCII_SPACES, "\x0b")


def text_subject(text: str) -> str:
    """``text`` as llama.cpp's ``std::wregex`` splits read it: non-ASCII White_Space becomes U+000B."""
    if text.isascii():
        return text
    return text.translate(_SPACE_AS_VT)


def _ascii_of_category(prefix: str) -> str:
    """The ASCII characters whose general category starts with ``prefix``, escaped for a ``re`` class."""
    chars = [chr(c) for c in range(0x80) if unicodedata.category(chr(c)).startswith(prefix)]
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


# Bodies of ``re`` character classes (without brackets) for the Unicode classes, over class strings.
#: ``\p{L}``
L = "A-Za-z" + LETTER
#: ``\p{N}``
N = "0-9" + NUMBER
#: ``\s`` (White_Space)
S = "\\t\\n\\x0b\\x0c\\r " + SPACE
#: ``\p{M}``
M = MARK
#: ``\p{P}``
P = _ascii_of_category("P") + PUNCT
#: ``\p{S}`` (symbols)
SYM = _ascii_of_category("S") + SYMBOL
