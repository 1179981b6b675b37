"""Grammar-constrained decoding overhead at 1 thread on the Gemma model (not run in CI).

    python bench/grammar_overhead.py              # 3 seeds x 64 tokens per grammar
    python bench/grammar_overhead.py --tokens 128 --seeds 5

For each grammar (none, a JSON-schema-like object grammar, a generic JSON grammar) it generates at temperature
0.8 and prints ms per generated token (forward pass + sampling) and the sampling part alone; the overhead is the
difference to the run without a grammar, in ms and % of the token time; "sampling +ms" is the difference in the
sampling time alone (the grammar's whole cost, without the forward pass's run-to-run noise).  The first run of each
grammar is a warm-up (it builds the vocabulary index and the grammar's transition cache), reported separately.
"""

from __future__ import annotations

import argparse
import fcntl
import time

from emberllm.runtime.model import Model
from emberllm.runtime.model_store import default_model_path

SCHEMA_LIKE = r'''root ::= "{" ws name "," ws age "," ws email "," ws tags-kv ws "}"
name ::= "\"name\"" ws ":" ws string
age ::= "\"age\"" ws ":" ws integer
email ::= "\"email\"" ws ":" ws string
tags-kv ::= "\"tags\"" ws ":" ws tags
tags ::= "[" ws (string ("," ws string)*)? "]"
string ::= "\"" ([^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}))* "\"" ws
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ws
ws ::= | " " | "\n" [ \t]{0,20}'''

JSON = r'''root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}'''

PROMPT = "Write a JSON object describing a person called Ada, with her age, email and a few tags:\n"


def run(model: Model, grammar: str, seed: int, n_tokens: int) -> tuple[float, float, int]:
    """(token ms total, sampling ms total, tokens) of one generation."""
    steps = list(model.generate(PROMPT, n_predict=n_tokens, temperature=0.8, seed=seed, grammar=grammar,
                                ignore_eos=not grammar))
    tm = model.timings
    return tm.eval_ms + tm.sample_ms, tm.sample_ms, len(steps)


def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    model = Model(default_model_path(), n_ctx=512, n_threads=1)
    with open("/tmp/emberllm-bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = []
        for name, grammar in (("none", ""), ("json-schema-like", SCHEMA_LIKE), ("json", JSON)):
            warm = 0.0
            if grammar:
                t0 = time.perf_counter()
                run(model, grammar, 1000, 8)
                warm = (time.perf_counter() - t0) * 1000.0
            total = sample = 0.0
            count = 0
            for seed in range(args.seeds):
                t, s, n = run(model, grammar, seed, args.tokens)
                total, sample, count = total + t, sample + s, count + n
            rows.append((name, total / count, sample / count, count, warm))
    base, base_sample = rows[0][1], rows[0][2]
    print(f"{'grammar':<18} {'ms/token':>9} {'sample ms':>10} {'overhead ms':>12} {'overhead %':>11} "
          f"{'sampling +ms':>13} {'sampling +%':>12} {'tokens':>7} {'warm-up ms':>11}")
    for name, per_token, per_sample, count, warm in rows:
        over, extra = per_token - base, per_sample - base_sample
        print(f"{name:<18} {per_token:9.2f} {per_sample:10.3f} {over:12.2f} {100 * over / base:10.1f}% "
              f"{extra:13.3f} {100 * extra / base:11.1f}% {count:7d} {warm:11.0f}")


if __name__ == "__main__":
    main()
