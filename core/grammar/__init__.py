"""GBNF grammars with llama.cpp's semantics: parser (``gbnf``), automaton (``matcher``), vocabulary walk (``tokens``).

``parse(text)`` checks a grammar (:class:`GrammarError` with line and column); :class:`Grammar` compiles it;
:class:`Matcher` follows one generation through it; :class:`TokenIndex` and :func:`allowed_tokens` find the
vocabulary's tokens the grammar allows next without testing every token.
"""

from __future__ import annotations

from .gbnf import GrammarDeadEndError, GrammarError, ParsedGrammar, parse
from .matcher import Grammar, Matcher

__all__ = ["Grammar", "GrammarDeadEndError", "GrammarError", "Matcher", "ParsedGrammar", "parse"]
