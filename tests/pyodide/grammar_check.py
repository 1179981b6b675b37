"""Grammar-constrained generation in Pyodide (tests/test_grammar.py), the model read from the global ``MODEL``.

Prints ``MATCH <bool> <text>`` for sampled outputs under two grammars and ``TIMING`` lines: ms per generated
token (forward pass + sampling) and the sampling part, without a grammar and with a JSON-schema-like one.
"""

from __future__ import annotations

from emberllm.grammar import Matcher
from emberllm.runtime.model import Model

SCHEMA_LIKE = r'''root ::= "{" ws "\"name\"" ws ":" ws string "," ws "\"age\"" ws ":" ws integer "," ws tags ws "}"
tags ::= "\"tags\"" ws ":" ws "[" ws (string ("," ws string)*)? "]"
string ::= "\"" ([^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}))* "\"" ws
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ws
ws ::= | " " | "\n" [ \t]{0,20}'''
PROMPT = "Write a JSON object describing a person called Ada, with her age and a few tags:\n"

model = Model(MODEL, n_ctx=256, n_threads=1)  # noqa: F821 - set by run_in_pyodide.mjs
for grammar in ('root ::= "yes" | "no"', SCHEMA_LIKE):
    for seed in (1, 2):
        text = "".join(s.text for s in model.generate(PROMPT, n_predict=60, temperature=0.8, seed=seed,
                                                       grammar=grammar))
        print("MATCH", Matcher(grammar).accepts(text), repr(text))
list(model.generate(PROMPT, n_predict=4, temperature=0.8, seed=9, grammar=SCHEMA_LIKE))  # warm-up
for name, grammar in (("none", ""), ("json-schema-like", SCHEMA_LIKE)):
    total = sample = 0.0
    count = 0
    for seed in (1, 2):
        steps = list(model.generate(PROMPT, n_predict=32, temperature=0.8, seed=seed, grammar=grammar,
                                    ignore_eos=not grammar))
        tm = model.timings
        total, sample, count = total + tm.eval_ms + tm.sample_ms, sample + tm.sample_ms, count + len(steps)
    print(f"TIMING {name} ms_per_token={total / count:.2f} sample_ms={sample / count:.3f} tokens={count}")
