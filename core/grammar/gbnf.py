"""GBNF parser with llama.cpp's semantics (``src/llama-grammar.cpp``): text -> rules of grammar elements.

A rule is a list of ``(type, value)`` elements, alternatives separated by ``ALT`` and ended by ``END``, exactly
llama.cpp's ``llama_grammar_element`` encoding; values are Unicode code points or rule ids.  Repetitions
(``* + ? {m,n}``) and groups are rewritten into generated rules the way llama.cpp does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

END, ALT, RULE_REF, CHAR, CHAR_NOT, CHAR_RNG_UPPER, CHAR_ALT, CHAR_ANY = range(8)
MAX_REPETITION_THRESHOLD = 2000
_ESCAPES = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
_HEX = {"x": 2, "u": 4, "U": 8}

Element = tuple[int, int]
Rule = list[Element]


class GrammarDeadEndError(ValueError):
    """A grammar that no token of the vocabulary can continue at some point of a generation."""


class GrammarError(ValueError):
    """A malformed grammar; ``line`` and ``column`` (1-based) say where."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"grammar error{where}: {message}")
        self.line = line
        self.column = column


@dataclass
class ParsedGrammar:
    """Rules by id, rule names by id, and the root rule's id."""

    rules: list[Rule]
    names: list[str]
    root: int
    symbol_ids: dict[str, int] = field(default_factory=dict)


def _is_word(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == "-"


class _Parser:
    """The recursive-descent parser (one per text)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.symbol_ids: dict[str, int] = {}
        self.rules: dict[int, Rule] = {}
        self.first_ref: dict[int, int] = {}

    # -- helpers ------------------------------------------------------------------------------------------
    def at(self, i: int) -> str:
        return self.s[i] if i < len(self.s) else ""

    def error(self, msg: str, i: int) -> GrammarError:
        line = self.s.count("\n", 0, i) + 1
        col = i - (self.s.rfind("\n", 0, i) + 1) + 1
        shown = self.s[i : i + 20].split("\n")[0]
        found = f"found {shown!r}" if i < len(self.s) else "found the end of the grammar"
        return GrammarError(f"{msg}, {found}", line, col)

    def symbol(self, name: str) -> int:
        return self.symbol_ids.setdefault(name, len(self.symbol_ids))

    def generate(self, base: str) -> int:
        rid = len(self.symbol_ids)
        self.symbol_ids[f"{base}_{rid}"] = rid
        return rid

    def space(self, i: int, newline_ok: bool) -> int:
        s = self.s
        while i < len(s) and (s[i] in " \t#" or (newline_ok and s[i] in "\r\n")):
            if s[i] == "#":
                while i < len(s) and s[i] not in "\r\n":
                    i += 1
            else:
                i += 1
        return i

    def name(self, i: int) -> int:
        j = i
        while _is_word(self.at(j)):
            j += 1
        if j == i:
            raise self.error("expected a rule name", i)
        return j

    def char(self, i: int) -> tuple[int, int]:
        c = self.at(i)
        if c == "\\":
            e = self.at(i + 1)
            if e in _HEX:
                n = _HEX[e]
                digits = self.s[i + 2 : i + 2 + n]
                if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise self.error(f"expected {n} hex digits after \\{e}", i + 2)
                return int(digits, 16), i + 2 + n
            if e and e in _ESCAPES:
                return _ESCAPES[e], i + 2
            raise self.error("unknown escape (expected one of \\x \\u \\U \\t \\r \\n \\\\ \\\" \\[ \\] \\-)", i)
        if not c:
            raise self.error("unexpected end of input", i)
        return ord(c), i + 1

    # -- grammar ------------------------------------------------------------------------------------------
    def parse(self) -> ParsedGrammar:
        i = self.space(0, True)
        while i < len(self.s):
            i = self.rule(i)
        n = len(self.symbol_ids)
        names = [""] * n
        for name, rid in self.symbol_ids.items():
            names[rid] = name
        for rid in range(n):
            if rid not in self.rules:
                raise self.error(f"undefined rule '{names[rid]}'", self.first_ref.get(rid, 0))
        if "root" not in self.symbol_ids:
            raise GrammarError("no 'root' rule (the grammar must define root ::= ...)")
        rules = [self.rules[rid] for rid in range(n)]
        return ParsedGrammar(rules, names, self.symbol_ids["root"], dict(self.symbol_ids))

    def rule(self, i: int) -> int:
        end = self.name(i)
        name = self.s[i:end]
        pos = self.space(end, False)
        rid = self.symbol(name)
        if self.s[pos : pos + 3] != "::=":
            raise self.error(f"expected '::=' after rule name '{name}'", pos)
        pos = self.alternates(self.space(pos + 3, True), name, rid, False)
        c = self.at(pos)
        if c == "\r":
            pos += 2 if self.at(pos + 1) == "\n" else 1
        elif c == "\n":
            pos += 1
        elif c:
            raise self.error("expected a newline or the end of the grammar after the rule", pos)
        return self.space(pos, True)

    def alternates(self, i: int, name: str, rid: int, nested: bool) -> int:
        rule: Rule = []
        pos = self.sequence(i, name, rule, nested)
        while self.at(pos) == "|":
            rule.append((ALT, 0))
            pos = self.sequence(self.space(pos + 1, True), name, rule, nested)
        rule.append((END, 0))
        self.rules[rid] = rule
        return pos

    def sequence(self, i: int, name: str, rule: Rule, nested: bool) -> int:
        last = len(rule)
        n_prev = 1
        pos = i
        while pos < len(self.s):
            c = self.s[pos]
            if c == '"':
                pos += 1
                last, n_prev = len(rule), 1
                while self.at(pos) != '"':
                    if not self.at(pos):
                        raise self.error("unterminated string literal (expected '\"')", pos)
                    cp, pos = self.char(pos)
                    rule.append((CHAR, cp))
                pos = self.space(pos + 1, nested)
            elif c == "[":
                pos += 1
                start = CHAR
                if self.at(pos) == "^":
                    pos += 1
                    start = CHAR_NOT
                last, n_prev = len(rule), 1
                while self.at(pos) != "]":
                    if not self.at(pos):
                        raise self.error("unterminated character class (expected ']')", pos)
                    cp, pos = self.char(pos)
                    rule.append((CHAR_ALT if last < len(rule) else start, cp))
                    if self.at(pos) == "-" and self.at(pos + 1) != "]":
                        if not self.at(pos + 1):
                            raise self.error("unterminated character range", pos + 1)
                        hi, pos = self.char(pos + 1)
                        rule.append((CHAR_RNG_UPPER, hi))
                pos = self.space(pos + 1, nested)
            elif _is_word(c):
                end = self.name(pos)
                ref = self.symbol(self.s[pos:end])
                self.first_ref.setdefault(ref, pos)
                pos = self.space(end, nested)
                last, n_prev = len(rule), 1
                rule.append((RULE_REF, ref))
            elif c == "(":
                open_at = pos
                pos = self.space(pos + 1, True)
                before = len(self.symbol_ids)
                sub = self.generate(name)
                pos = self.alternates(pos, name, sub, True)
                n_prev = max(1, len(self.symbol_ids) - before)
                last = len(rule)
                rule.append((RULE_REF, sub))
                if self.at(pos) != ")":
                    raise self.error(f"expected ')' to close the group opened at column {self._col(open_at)}", pos)
                pos = self.space(pos + 1, nested)
            elif c in "<!":
                raise self.error("token references (<[id]>, <token>, !<...>) are not supported", pos)
            elif c == ".":
                last, n_prev = len(rule), 1
                rule.append((CHAR_ANY, 0))
                pos = self.space(pos + 1, nested)
            elif c in "*+?":
                if last == len(rule):
                    raise self.error(f"expected an item before '{c}'", pos)
                lo, hi = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
                pos = self.space(pos + 1, nested)
                n_prev = self.repeat(rule, last, name, lo, hi, n_prev, pos)
            elif c == "{":
                brace = pos
                if last == len(rule):
                    raise self.error("expected an item before '{'", pos)
                pos = self.space(pos + 1, nested)
                lo, pos = self.integer(pos)
                pos = self.space(pos, nested)
                hi = lo
                if self.at(pos) == ",":
                    pos = self.space(pos + 1, nested)
                    hi = -1
                    if self.at(pos).isdigit():
                        hi, pos = self.integer(pos)
                        pos = self.space(pos, nested)
                    if self.at(pos) != "}":
                        raise self.error("expected '}' to close the repetition", pos)
                elif self.at(pos) != "}":
                    raise self.error("expected ',' or '}' in the repetition", pos)
                pos = self.space(pos + 1, nested)
                if lo > MAX_REPETITION_THRESHOLD:
                    raise self.error(f"more than {MAX_REPETITION_THRESHOLD} repetitions", brace)
                if hi != -1 and hi < lo:
                    raise self.error(f"repetition maximum {hi} is below its minimum {lo}", brace)
                if hi > MAX_REPETITION_THRESHOLD:
                    hi = -1
                n_prev = self.repeat(rule, last, name, lo, hi, n_prev, brace)
            else:
                break
        return pos

    def _col(self, i: int) -> int:
        return i - (self.s.rfind("\n", 0, i) + 1) + 1

    def integer(self, i: int) -> tuple[int, int]:
        j = i
        while self.at(j).isdigit() and self.at(j).isascii():
            j += 1
        if j == i:
            raise self.error("expected an integer", i)
        return int(self.s[i:j]), j

    def repeat(self, rule: Rule, last: int, name: str, lo: int, hi: int, n_prev: int, at: int) -> int:
        """llama.cpp's rewrite of ``S{lo,hi}`` (hi -1: unbounded) on the items from ``last``."""
        no_max = hi == -1
        prev = rule[last:]
        total = hi if not no_max and hi > 0 else (lo if lo > 0 else 1)
        if n_prev * total > MAX_REPETITION_THRESHOLD:
            raise self.error("the repetition makes too many rules (reduce the repetitions or nesting)", at)
        if lo == 0:
            del rule[last:]
        else:
            for _ in range(1, lo):
                rule.extend(prev)
        last_rec = 0
        n_opt = 1 if no_max else hi - lo
        for k in range(n_opt):
            rec = self.generate(name)
            body = list(prev)
            if k > 0 or no_max:
                body.append((RULE_REF, rec if no_max else last_rec))
            body += [(ALT, 0), (END, 0)]
            self.rules[rec] = body
            last_rec = rec
        if n_opt > 0:
            rule.append((RULE_REF, last_rec))
        return n_prev * total


def parse(text: str) -> ParsedGrammar:
    """Parse GBNF ``text``; raises :class:`GrammarError` (with line and column) when it is malformed."""
    if not isinstance(text, str):
        raise GrammarError("the grammar must be a string")
    g = _Parser(text).parse()
    check_left_recursion(g)
    return g


def check_left_recursion(g: ParsedGrammar) -> None:
    """Reject left recursion as llama.cpp does (a rule that can reach itself before consuming a character)."""
    n = len(g.rules)
    in_progress = [False] * n
    visited = [False] * n
    may_be_empty = [False] * n

    def detect(rid: int) -> bool:
        if in_progress[rid]:
            return True
        in_progress[rid] = True
        rule = g.rules[rid]
        at_start = True
        for t, _ in rule:
            if t in (END, ALT):
                if at_start:
                    may_be_empty[rid] = True
                    break
                at_start = True
            else:
                at_start = False
        recurse = True
        for t, v in rule:
            if t == RULE_REF and recurse:
                if detect(v):
                    return True
                if not may_be_empty[v]:
                    recurse = False
            elif t in (END, ALT):
                recurse = True
            else:
                recurse = False
        in_progress[rid] = False
        visited[rid] = True
        return False

    for rid in range(n):
        if not visited[rid] and detect(rid):
            raise GrammarError(f"left recursion in rule '{g.names[rid]}' (llama.cpp rejects left-recursive grammars)")
