"""The grammar automaton: llama.cpp's stacks of rule positions, advanced one code point (and one byte) at a time.

:class:`Grammar` compiles parsed rules into one flat element array; a stack is a tuple of positions in it (top
last), and the parser state is a set of stacks, each ending at a character element (or empty: complete).  For
the token walk, byte-level states (stacks plus a pending partial UTF-8 sequence) are interned to integers and
their transitions cached, so walking a token is mostly dictionary look-ups of ``state * 256 + byte``.
"""

from __future__ import annotations

from .gbnf import ALT, CHAR, CHAR_ALT, CHAR_ANY, CHAR_NOT, CHAR_RNG_UPPER, END, RULE_REF, ParsedGrammar, parse

Stack = tuple[int, ...]
Stacks = tuple[Stack, ...]
DEAD = -1
_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4)  # by the high nibble of the first byte


class Grammar:
    """A compiled grammar with its interned byte-level states (share one per grammar text)."""

    def __init__(self, parsed: ParsedGrammar | str) -> None:
        g = parse(parsed) if isinstance(parsed, str) else parsed
        self.parsed = g
        types: list[int] = []
        values: list[int] = []
        starts: list[int] = []
        for rule in g.rules:
            starts.append(len(types))
            for t, v in rule:
                types.append(t)
                values.append(v)
        self.types = types
        self.values = [starts[v] if t == RULE_REF else v for t, v in zip(types, values, strict=True)]
        self._classes: dict[int, tuple[tuple[tuple[int, int], ...], bool, bool, int]] = {}
        self._advance: dict[Stack, Stacks] = {}
        self._states: list[tuple[Stacks, int, int]] = []
        self._ids: dict[tuple[Stacks, int, int], int] = {}
        self.trans: dict[int, int] = {}
        self.complete: list[bool] = []
        root: list[Stack] = []
        pos = starts[g.root]
        while True:
            stack: Stack = () if self._is_end(pos) else (pos,)
            root.extend(self.advance_stack(stack))
            while not self._is_end(pos):
                pos += 1
            if types[pos] != ALT:
                break
            pos += 1
        self.start = self.intern(_dedup(root), 0, 0)

    # -- stacks -------------------------------------------------------------------------------------------
    def _is_end(self, pos: int) -> bool:
        return self.types[pos] in (END, ALT)

    def char_class(self, pos: int) -> tuple[tuple[tuple[int, int], ...], bool, bool, int]:
        """The character element at ``pos``: (ranges, positive, any, position after it or -1 at the end)."""
        got = self._classes.get(pos)
        if got is not None:
            return got
        types, values = self.types, self.values
        positive = types[pos] != CHAR_NOT
        ranges: list[tuple[int, int]] = []
        any_char = False
        p = pos
        while True:
            if types[p + 1] == CHAR_RNG_UPPER:
                ranges.append((values[p], values[p + 1]))
                p += 2
            else:
                if types[p] == CHAR_ANY:
                    any_char = True
                else:
                    ranges.append((values[p], values[p]))
                p += 1
            if types[p] != CHAR_ALT:
                break
        got = (tuple(ranges), positive, any_char, DEAD if self._is_end(p) else p)
        self._classes[pos] = got
        return got

    def advance_stack(self, stack: Stack) -> Stacks:
        """llama.cpp's ``advance_stack``: expand rule references until every stack ends at a character (or is
        empty)."""
        got = self._advance.get(stack)
        if got is not None:
            return got
        types, values = self.types, self.values
        out: dict[Stack, None] = {}
        seen: set[Stack] = set()
        todo = [stack]
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            if not cur:
                out[cur] = None
                continue
            pos = cur[-1]
            if types[pos] == RULE_REF:
                sub = values[pos]
                while True:
                    nxt = cur[:-1]
                    if not self._is_end(pos + 1):
                        nxt += (pos + 1,)
                    if not self._is_end(sub):
                        nxt += (sub,)
                    todo.append(nxt)
                    while not self._is_end(sub):
                        sub += 1
                    if types[sub] != ALT:
                        break
                    sub += 1
            elif types[pos] in (CHAR, CHAR_NOT, CHAR_ANY):
                out[cur] = None
            else:
                raise AssertionError(f"stack left on element type {types[pos]}")
        result = tuple(out)
        self._advance[stack] = result
        return result

    def accept_char(self, stacks: Stacks, cp: int) -> Stacks:
        """The stacks after code point ``cp`` (empty: rejected)."""
        out: dict[Stack, None] = {}
        for stack in stacks:
            if not stack:
                continue
            ranges, positive, any_char, nxt = self.char_class(stack[-1])
            found = any_char or any(lo <= cp <= hi for lo, hi in ranges)
            if found != positive:
                continue
            base = stack[:-1] if nxt == DEAD else stack[:-1] + (nxt,)
            for s in self.advance_stack(base):
                out[s] = None
        return tuple(out)

    def partial_ok(self, stacks: Stacks, value: int, n_remain: int) -> bool:
        """Whether some continuation of a partial UTF-8 sequence can match a stack (llama.cpp's
        ``match_partial_char``)."""
        if n_remain == 1 and value < 2:
            return False
        low = value << (n_remain * 6)
        high = low | ((1 << (n_remain * 6)) - 1)
        if low == 0:
            low = 1 << 11 if n_remain == 2 else (1 << 16 if n_remain == 3 else low)
        for stack in stacks:
            if not stack:
                continue
            ranges, positive, any_char, _ = self.char_class(stack[-1])
            if any_char:
                return True
            hit = any(lo <= high and low <= hi for lo, hi in ranges)
            if hit == positive:
                return True
        return False

    # -- byte-level states --------------------------------------------------------------------------------
    def intern(self, stacks: Stacks, value: int, n_remain: int) -> int:
        """The id of a byte-level state (DEAD when no stack is left)."""
        if not stacks:
            return DEAD
        key = (stacks, value, n_remain)
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._states)
            self._states.append(key)
            self._ids[key] = sid
            self.complete.append(n_remain == 0 and () in stacks)
        return sid

    def step(self, sid: int, byte: int) -> int:
        """The state after one byte (DEAD: rejected); cached in ``trans``."""
        stacks, value, n_remain = self._states[sid]
        if n_remain > 0:
            if byte >> 6 != 2:
                nxt = DEAD
            else:
                value = (value << 6) | (byte & 0x3F)
                n_remain -= 1
                nxt = self._char_or_partial(stacks, value, n_remain)
        else:
            n = _UTF8_LEN[byte >> 4] - 1
            if n < 0:
                nxt = DEAD
            elif n == 0:
                nxt = self.intern(self.accept_char(stacks, byte), 0, 0)
            else:
                nxt = self._char_or_partial(stacks, byte & ((1 << (7 - n)) - 1), n)
        self.trans[sid * 256 + byte] = nxt
        return nxt

    def _char_or_partial(self, stacks: Stacks, value: int, n_remain: int) -> int:
        if n_remain == 0:
            return self.intern(self.accept_char(stacks, value), 0, 0)
        return self.intern(stacks, value, n_remain) if self.partial_ok(stacks, value, n_remain) else DEAD

    def feed(self, sid: int, data: bytes) -> int:
        """The state after ``data`` from state ``sid`` (DEAD as soon as a byte is rejected)."""
        trans = self.trans
        for byte in data:
            if sid < 0:
                return DEAD
            nxt = trans.get(sid * 256 + byte)
            sid = self.step(sid, byte) if nxt is None else nxt
        return sid


class Matcher:
    """One generation's position in a grammar: feed it text or bytes; ask whether it is complete."""

    def __init__(self, grammar: Grammar | str) -> None:
        self.grammar = grammar if isinstance(grammar, Grammar) else Grammar(grammar)
        self.state = self.grammar.start

    def reset(self) -> None:
        """Back to the grammar's start."""
        self.state = self.grammar.start

    def accept_bytes(self, data: bytes) -> bool:
        """Advance by ``data`` (may end inside a UTF-8 character); False (and unchanged) if rejected."""
        nxt = self.grammar.feed(self.state, data)
        if nxt < 0:
            return False
        self.state = nxt
        return True

    def accept_char(self, cp: int) -> bool:
        """Advance by one code point; False (and unchanged) if rejected."""
        return self.accept_bytes(chr(cp).encode("utf-8", "surrogatepass"))

    def accepts(self, text: str) -> bool:
        """Whether the grammar matches exactly ``text`` from its start (the state is left unchanged)."""
        sid = self.grammar.feed(self.grammar.start, text.encode("utf-8", "surrogatepass"))
        return sid >= 0 and self.grammar.complete[sid]

    def is_complete(self) -> bool:
        """Whether the text so far is a whole match (generation may end here)."""
        return self.grammar.complete[self.state]


def _dedup(stacks: list[Stack]) -> Stacks:
    return tuple(dict.fromkeys(stacks))
