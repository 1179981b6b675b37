"""The regular-expression subset of JSON schema ``pattern`` that llama.cpp turns into GBNF.

Supported: ``^...$`` anchors around the whole pattern, literals and escapes, character classes
(``[a-z]``, ``[^...]``), groups (``(...)``, ``(?:...)``), alternation, ``. ? * + {m} {m,} {m,n}`` and the
shorthands ``\\d \\w \\s`` (also ``\\D \\W \\S`` outside classes). Anything else raises ``UnsupportedPatternError``
(valid regex, no grammar equivalent) or ``InvalidPatternError`` (not a regex at all).

Unlike llama.cpp, the pattern is matched against the *decoded* string: literal characters, ``.`` and classes
produce JSON-escaped text where JSON needs it (``"``, ``\\``, ``\\b \\f \\n \\r \\t``), so the output stays valid JSON;
other control characters and DEL are left out of classes and ``.``.
An unanchored side (no ``^`` / ``$``) accepts any JSON characters there, as JSON schema's ``pattern`` means.
"""

from __future__ import annotations

from collections.abc import Callable

# a JSON string character other than a line break (unescaped, or escaped)
DOT_RULE = '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\/bft] | "u" [0-9a-fA-F]{4})'
DOTALL_RULE = '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})'
ANY_CHARS = "(" + DOTALL_RULE + ")*"
MAX_PATTERN_DEPTH = 100

NON_LITERAL = frozenset("|.()[]{}*+?^$")
QUANTIFIERS = frozenset("*+?{")
ESCAPED_META = frozenset("^$.[]()|{}*+?/")
SHORTHANDS: dict[str, list[tuple[int, int]]] = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x09, 0x0D), (0x20, 0x20)],
}
SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "f": "\f", "v": "\v", "\\": "\\", '"': '"', "[": "[", "]": "]",
                  "-": "-"}
HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}
# characters JSON writes escaped, and their escapes (other control characters and DEL are left out of classes)
JSON_ESCAPED = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
NOT_RAW_IN_JSON = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]
MAX_CODE_POINT = 0x10FFFF

AddRule = Callable[[str, str], str]


class PatternError(ValueError):
    """A ``pattern`` that cannot become a grammar."""


class UnsupportedPatternError(PatternError):
    """A valid regular expression outside the supported subset."""


class InvalidPatternError(PatternError):
    """Not a valid regular expression."""


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escapes = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
    return '"' + "".join(escapes.get(c, c) for c in text) + '"'


def json_text(chars: str) -> str:
    """How JSON writes ``chars`` inside a string."""
    out = []
    for c in chars:
        cp = ord(c)
        out.append(JSON_ESCAPED.get(cp) or (f"\\u{cp:04x}" if cp < 0x20 else c))
    return "".join(out)


def read_escape(pattern: str, pos: int) -> tuple[int, int] | None:
    """The code point and length of the single-character escape at ``pos`` (None: not one)."""
    kind = pattern[pos + 1 : pos + 2]
    if kind in SIMPLE_ESCAPES or kind in ESCAPED_META:
        return ord(SIMPLE_ESCAPES.get(kind, kind)), 2
    n_hex = HEX_LENGTHS.get(kind, 0)
    digits = pattern[pos + 2 : pos + 2 + n_hex]
    if n_hex == 0 or len(digits) != n_hex or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    cp = int(digits, 16)
    return (cp, 2 + n_hex) if cp <= MAX_CODE_POINT else None


def _class_endpoint(cp: int) -> str:
    """A code point inside a GBNF character class."""
    c = chr(cp)
    if c in "-]\\":
        return "\\" + c
    if c.isalnum() and cp < 0x80 or c in " _.,:;!#$%&'()*+/<=>?@`{|}~":
        return c
    return f"\\x{cp:02X}" if cp < 0x100 else f"\\u{cp:04X}" if cp < 0x10000 else f"\\U{cp:08X}"


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    """Code point ranges as the inside of a GBNF character class."""
    return "".join(_class_endpoint(lo) if lo == hi else f"{_class_endpoint(lo)}-{_class_endpoint(hi)}"
                   for lo, hi in ranges)


def _subtract(ranges: list[tuple[int, int]], removed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` without the code points in ``removed``."""
    out = list(ranges)
    for r_lo, r_hi in removed:
        nxt = []
        for lo, hi in out:
            if hi < r_lo or lo > r_hi:
                nxt.append((lo, hi))
                continue
            if lo < r_lo:
                nxt.append((lo, r_lo - 1))
            if hi > r_hi:
                nxt.append((r_hi + 1, hi))
        out = nxt
    return out


def class_rule(ranges: list[tuple[int, int]], negated: bool) -> str:
    """GBNF for one JSON-encoded character of a (possibly negated) class of decoded characters."""
    def inside(cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in ranges) != negated

    escaped = [gbnf_literal(JSON_ESCAPED[cp]) for cp in sorted(JSON_ESCAPED) if inside(cp)]
    if negated:
        raw = "[^" + _ranges_text(ranges) + _ranges_text(NOT_RAW_IN_JSON) + "]"
    else:
        safe = _subtract(ranges, NOT_RAW_IN_JSON)
        raw = "[" + _ranges_text(safe) + "]" if safe else ""
    alts = ([raw] if raw else []) + escaped
    if not alts:
        raise UnsupportedPatternError("a character class with no character JSON can hold")
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


def build_repetition(item: str, min_items: int, max_items: int | None, separator: str = "") -> str:
    """GBNF for ``item`` repeated min..max times (``max_items`` None: unbounded), optionally separated."""
    if max_items == 0:
        return ""
    if min_items == 0 and max_items == 1:
        return item + "?"
    if not separator:
        if min_items == 1 and max_items is None:
            return item + "+"
        if min_items == 0 and max_items is None:
            return item + "*"
        return f"{item}{{{min_items},{'' if max_items is None else max_items}}}"
    rest_max = None if max_items is None else max_items - 1
    result = item + " " + build_repetition(f"({separator} {item})", max(min_items - 1, 0), rest_max)
    return f"({result})?" if min_items == 0 else result


class _PatternConverter:
    """One pass over an anchored pattern's body, adding helper rules through ``add_rule``."""

    def __init__(self, body: str, name: str, add_rule: AddRule, dotall: bool) -> None:
        """Keep the pattern body and the rule sink."""
        self.body = body
        self.name = name
        self.add_rule = add_rule
        self.dotall = dotall
        self.pos = 0
        self.depth = 0
        self.sub_rule_ids: dict[str, str] = {}

    def convert(self) -> str:
        """The GBNF expression for the whole body."""
        rule = self._to_rule(self._sequence())
        if self.depth != 0:
            raise InvalidPatternError("unbalanced parentheses")
        return rule

    @staticmethod
    def _to_rule(item: tuple[str, bool]) -> str:
        """A (text, is_literal) item as GBNF (literal text is decoded characters)."""
        text, is_literal = item
        return gbnf_literal(json_text(text)) if is_literal else text

    def _join(self, seq: list[tuple[str, bool]]) -> tuple[str, bool]:
        """Join a sequence, merging consecutive literals."""
        parts: list[str] = []
        literal = ""
        for text, is_literal in seq:
            if is_literal:
                literal += text
                continue
            if literal:
                parts.append(self._to_rule((literal, True)))
                literal = ""
            parts.append(text)
        if literal:
            parts.append(self._to_rule((literal, True)))
        return " ".join(parts), False

    def _sequence(self) -> tuple[str, bool]:
        """Parse until the end or a closing parenthesis."""
        seq: list[tuple[str, bool]] = []
        while self.pos < len(self.body):
            c = self.body[self.pos]
            if c == ")":
                self.pos += 1
                if self.depth == 0:
                    raise InvalidPatternError("unbalanced parentheses")
                self.depth -= 1
                return self._join(seq)
            self._step(c, seq)
        return self._join(seq)

    def _step(self, c: str, seq: list[tuple[str, bool]]) -> None:
        """Consume one construct starting with ``c``."""
        if c == ".":
            self.pos += 1
            seq.append((self.add_rule("dot", DOTALL_RULE if self.dotall else DOT_RULE), False))
        elif c == "(":
            seq.append((self._group(), False))
        elif c in "^$":
            raise UnsupportedPatternError("anchor inside the pattern")
        elif c == "[":
            seq.append((self._char_class(), False))
        elif c == "|":
            self.pos += 1
            seq.append(("|", False))
        elif c in "*+?":
            self.pos += 1
            if not seq:
                raise InvalidPatternError("nothing to repeat")
            seq[-1] = (self._to_rule(seq[-1]) + c, False)
        elif c == "{":
            self._curly(seq)
        elif c == "\\" and self.body[self.pos + 1 : self.pos + 2] in ("d", "w", "s", "D", "W", "S"):
            letter = self.body[self.pos + 1]
            self.pos += 2
            seq.append((class_rule(SHORTHANDS[letter.lower()], letter.isupper()), False))
        else:
            seq.append((self._literal(c), True))

    def _group(self) -> str:
        """A parenthesised group (plain or non-capturing)."""
        self.pos += 1
        if self.body[self.pos : self.pos + 1] == "?":
            if self.body[self.pos + 1 : self.pos + 2] != ":":
                raise UnsupportedPatternError("unsupported group syntax")
            self.pos += 2
        self.depth += 1
        if self.depth > MAX_PATTERN_DEPTH:
            raise UnsupportedPatternError("pattern nesting too deep")
        return "(" + self._to_rule(self._sequence()) + ")"

    def _char_class(self) -> str:
        """A bracketed character class."""
        self.pos += 1
        negated = self.body[self.pos : self.pos + 1] == "^"
        self.pos += negated
        ranges: list[tuple[int, int]] = []
        first = True
        while self.pos < len(self.body) and (self.body[self.pos] != "]" or first):
            first = False
            shorthand = self._class_shorthand()
            if shorthand is not None:
                ranges.extend(shorthand)
                continue
            lo = self._class_char()
            hi = lo
            if self.body[self.pos : self.pos + 1] == "-" and self.body[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                hi = self._class_char()
                if hi < lo:
                    raise InvalidPatternError("bad character range in class")
            ranges.append((lo, hi))
        if self.pos >= len(self.body):
            raise InvalidPatternError("unterminated character class")
        self.pos += 1
        return class_rule(ranges, negated)

    def _class_shorthand(self) -> list[tuple[int, int]] | None:
        """``\\d``, ``\\w`` or ``\\s`` inside a class (None: not one)."""
        if self.body[self.pos] == "\\" and self.body[self.pos + 1 : self.pos + 2] in SHORTHANDS:
            letter = self.body[self.pos + 1]
            self.pos += 2
            return SHORTHANDS[letter]
        return None

    def _class_char(self) -> int:
        """One (possibly escaped) character inside a class, as a code point."""
        body = self.body
        if self.pos >= len(body):
            raise InvalidPatternError("unterminated character class")
        if body[self.pos] != "\\":
            self.pos += 1
            return ord(body[self.pos - 1])
        escape = read_escape(body, self.pos)
        if escape is None:
            raise UnsupportedPatternError(f"unsupported escape in character class: {body[self.pos:self.pos + 2]}")
        self.pos += escape[1]
        return escape[0]

    def _curly(self, seq: list[tuple[str, bool]]) -> None:
        """A ``{m}``, ``{m,}`` or ``{m,n}`` repetition applied to the last item."""
        end = self.body.find("}", self.pos)
        if end < 0:
            raise UnsupportedPatternError("unterminated curly brackets")
        nums = self.body[self.pos + 1 : end].split(",")
        self.pos = end + 1
        if len(nums) not in (1, 2) or not all(n.strip().isdigit() or (n == "" and len(nums) == 2) for n in nums):
            raise UnsupportedPatternError("invalid number in curly brackets")
        min_times = int(nums[0]) if nums[0] else 0
        max_times: int | None = min_times if len(nums) == 1 else (int(nums[1]) if nums[1] else None)
        if not seq:
            raise InvalidPatternError("nothing to repeat")
        text, is_literal = seq[-1]
        if not is_literal:
            if text not in self.sub_rule_ids:
                self.sub_rule_ids[text] = self.add_rule(f"{self.name}-{len(self.sub_rule_ids) + 1}", text)
            text = self.sub_rule_ids[text]
        seq[-1] = (build_repetition(self._to_rule((text, True)) if is_literal else text, min_times, max_times), False)

    def _literal_next_ok(self) -> bool:
        """Whether the character after the current one lets it join a literal run (it is not a quantifier)."""
        nxt = self.body[self.pos + 1]
        return nxt == "." or nxt not in NON_LITERAL

    def _literal(self, first: str) -> str:
        """A run of literal characters, decoded (a character followed by a quantifier stands alone)."""
        body, literal = self.body, ""
        while self.pos < len(body):
            c = body[self.pos]
            if c == "\\":
                if self.pos == len(body) - 1:
                    raise InvalidPatternError("trailing backslash")
                if body[self.pos + 1] in "dwsDWS":
                    break
                escape = read_escape(body, self.pos)
                if escape is None:
                    raise UnsupportedPatternError(f"unsupported escape: {body[self.pos:self.pos + 2]}")
                if literal and body[self.pos + escape[1] : self.pos + escape[1] + 1] in QUANTIFIERS:
                    break
                literal += chr(escape[0])
                self.pos += escape[1]
            elif c not in NON_LITERAL and (self.pos == len(body) - 1 or not literal or self._literal_next_ok()):
                literal += c
                self.pos += 1
            else:
                break
        if not literal:
            raise UnsupportedPatternError(f"unsupported character: {first}")
        return literal


def pattern_to_rule(pattern: str, name: str, add_rule: AddRule, *, dotall: bool = False) -> str:
    """Add the rule ``name`` for a JSON string whose decoded text matches ``pattern``; return the rule's name."""
    body = pattern
    head = tail = ""
    if body.startswith("^"):
        body = body[1:]
    else:
        head = add_rule("any-chars", ANY_CHARS) + " "
    if body.endswith("$") and (len(body) - len(body[:-1].rstrip("\\")) - 1) % 2 == 0:
        body = body[:-1]
    else:
        tail = " " + add_rule("any-chars", ANY_CHARS)
    rule = _PatternConverter(body, name, add_rule, dotall).convert()
    return add_rule(name, f'"\\"" {head}({rule}){tail} "\\""')
