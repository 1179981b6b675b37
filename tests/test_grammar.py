"""GBNF grammars: llama.cpp's integration cases, parser errors, the vocabulary walk and constrained sampling."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from emberllm.backends.binding import load_kernels
from emberllm.grammar import Grammar, GrammarError, Matcher, parse
from emberllm.grammar.tokens import TokenIndex, allowed_ranges, allowed_ranges_c, token_allowed
from emberllm.sampling import Sampler, SamplingParams, VocabInfo
from tests.pyodide_fixtures import run_in_pyodide

CASES = json.loads((Path(__file__).parent / "grammar_cases.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_llamacpp_integration_cases(case):
    m = Matcher(case["grammar"])
    assert [s for s in case["accept"] if not m.accepts(s)] == []
    assert [s for s in case["reject"] if m.accepts(s)] == []


def test_case_file_covers_utf8_and_repetition_bounds():
    names = {c["name"] for c in CASES}
    assert {"special characters", "min / max repetition", "simple max repetition", "segfault"} <= names
    assert sum(len(c["accept"]) + len(c["reject"]) for c in CASES) >= 100


@pytest.mark.parametrize("text", [
    'root ::= "a" | root "a"',
    'root ::= asdf\nasdf ::= "a" | asdf "a"',
    'root ::= asdf\nasdf ::= "a" | foo "b"\nfoo ::= "c" | asdf "d" | "e"',
    'root ::= asdf\nasdf ::= "a" | foo "b"\nfoo ::= "c" | empty asdf "d" | "e"\nempty ::= "blah" | ',
])
def test_left_recursion_is_rejected(text):
    with pytest.raises(GrammarError, match="left recursion"):
        parse(text)


def test_missing_root_and_undefined_reference():
    with pytest.raises(GrammarError, match="root"):
        parse('rot ::= expr\nexpr ::= [0-9]+')
    with pytest.raises(GrammarError, match="undefined rule 'numero'") as err:
        parse('root ::= expr\nexpr ::= term ("+" term)*\nterm ::= numero\nnumber ::= [0-9]+')
    assert (err.value.line, err.value.column) == (3, 10)


@pytest.mark.parametrize("text, line, column, words", [
    ('root ::= "abc', 1, 14, "unterminated string"),
    ("root ::= [a-z", 1, 14, "unterminated character class"),
    ('root ::= ("a" | "b"', 1, 20, "expected ')'"),
    ('root = "a"', 1, 6, "expected '::='"),
    ('root ::= "a"\n  ::= "b"', 2, 3, "expected a rule name"),
    ('root ::= "a" )', 1, 14, "expected a newline"),
    ('root ::= * "a"', 1, 10, "expected an item before '*'"),
    ('root ::= "a"{x}', 1, 14, "expected an integer"),
    ('root ::= "a"{2,3', 1, 17, "expected '}'"),
    ('root ::= "a"{3,2}', 1, 13, "below its minimum"),
    ('root ::= "\\q"', 1, 11, "unknown escape"),
    ('root ::= "\\x4"', 1, 13, "expected 2 hex digits"),
    ('root ::= "\\u12G4"', 1, 13, "expected 4 hex digits"),
    ('root ::= x\n# comment\nx ::= "a" y', 3, 11, "undefined rule 'y'"),
    ('root ::= <[10]> "a"', 1, 10, "token references"),
])
def test_parser_errors_name_the_position(text, line, column, words):
    with pytest.raises(GrammarError) as err:
        parse(text)
    assert (err.value.line, err.value.column) == (line, column), str(err.value)
    assert words in str(err.value) and f"line {line}, column {column}" in str(err.value)


def test_parser_syntax_and_escapes():
    g = r'''# a comment
root ::= greeting (" " name)? [\x21\u0021]{1,2}  # trailing comment
greeting ::= "h\x69" | "\U0001F600"
name ::= [^ \n!] .*? | (
   "x"
   | "y"
)'''
    m = Matcher(g)
    assert m.accepts("hi!") and m.accepts("hi bob!!") and m.accepts("\U0001F600 y!") and m.accepts("hi é!")
    assert not m.accepts("hi!!!") and not m.accepts("hi") and not m.accepts("ho!")
    assert Matcher('root ::= [\\]\\[\\-]+').accepts("][-")


def test_matcher_partial_utf8_and_completion():
    m = Matcher('root ::= "é" [a-c]+')
    assert not m.is_complete()
    assert m.accept_bytes(b"\xc3")  # ends inside a character
    assert not m.accept_bytes(b"\xa8")  # would complete to è
    assert m.accept_bytes(b"\xa9") and not m.is_complete()
    assert not m.accept_bytes(b"d")
    assert m.accept_bytes(b"ab") and m.is_complete()
    assert not Matcher('root ::= "a"').accept_bytes(b"\x80")


# -- the vocabulary walk ------------------------------------------------------------------------------------
def _vocab(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    alphabet = b'ab{}[]":, 019xyz\n\\' + "é🔵".encode()
    pieces = [b"", b""] + [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(n)]
    return pieces + [b"\xc3", b"\xa9", b"\xf0\x9f", b"\x94\xb5", b"\xff", b"\xff\xff", b"\x00", b"\x00a"]


GRAMMARS = [
    'root ::= "ab" [0-9]* "é"?',
    'root ::= ("{" [a-z ]* "}")+',
    'root ::= "\\"" [^"\\\\]* "\\""',
    'root ::= "🔵"+ "a" | .{2,3}',
    'root ::= "[" (n ("," n)*)? "]"\nn ::= [0-9]+',
]


@pytest.mark.parametrize("grammar", GRAMMARS)
def test_walk_matches_testing_every_token(grammar):
    pieces = _vocab(len(grammar), 4000)
    index = TokenIndex(pieces, eog_ids=[0])
    g = Grammar(grammar)
    rng = random.Random(7)
    states, sid = [g.start], g.start
    for _ in range(6):  # states along a random accepted path
        allowed = index.ids(allowed_ranges(g, sid, index))
        if not allowed:
            break
        sid = g.feed(sid, pieces[rng.choice(allowed)])
        states.append(sid)
    kernels = load_kernels()
    for sid in states:
        ranges = allowed_ranges(g, sid, index)
        assert allowed_ranges_c(g, sid, index, kernels) == ranges
        walked = set(index.ids(ranges))
        every = {t for t in range(2, len(pieces)) if token_allowed(g, sid, index, t)}
        assert walked == every
        assert not token_allowed(g, sid, index, 1)  # no text: never
        assert not token_allowed(g, sid, index, len(pieces) - 1)  # starting with NUL: never
        assert token_allowed(g, sid, index, 0) == g.complete[sid]  # EOG: when complete


# -- the sampler stage --------------------------------------------------------------------------------------
def _sampler_vocab(pieces: list[bytes]) -> VocabInfo:
    return VocabInfo(len(pieces), eog_ids=frozenset({0}), token_piece=pieces.__getitem__)


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.5])
def test_sampler_output_always_matches(temperature):
    pieces = _vocab(3, 3000)
    vocab = _sampler_vocab(pieces)
    grammar = 'root ::= "[" (n ("," n){1,3})? "]"\nn ::= [0-9]{1,2}'
    rng = random.Random(5)
    for seed in range(6):
        s = Sampler(SamplingParams(temperature=temperature, seed=seed, grammar=grammar, top_k=0, min_p=0.0), vocab)
        assert not s.is_argmax
        out = b""
        for _ in range(40):
            logits = memoryview(bytearray(4 * len(pieces))).cast("f")
            for i in range(len(pieces)):
                logits[i] = rng.gauss(0.0, 3.0)
            tok = s.sample(logits).token
            if tok == 0:
                break
            out += pieces[tok]
        else:
            pytest.fail(f"no end of generation: {out!r}")
        assert Matcher(grammar).accepts(out.decode()), out


def test_sampler_big_allowed_set_masks_the_buffer():
    pieces = _vocab(4, 15000)
    vocab = _sampler_vocab(pieces)
    s = Sampler(SamplingParams(temperature=1.0, seed=3, grammar='root ::= [^"]{1,5} "\\""'), vocab)
    logits = memoryview(bytearray(4 * len(pieces))).cast("f")
    allowed = set(s.grammar.allowed())
    assert len(allowed) > 4096
    bad = [t for t, p in enumerate(pieces) if b'"' in p and t not in allowed]
    for t in bad:
        logits[t] = 50.0  # the draw before the grammar picks one of these: resampled with the grammar
    tok = s.sample(logits).token
    assert tok in allowed and tok != 0
    assert logits[bad[0]] == 50.0 and logits[1] == 0.0  # the caller's logits are left as they were
    python_only = Sampler(SamplingParams(temperature=1.0, seed=3, grammar='root ::= [^"]{1,5} "\\""'), vocab)
    python_only.grammar.kernels = None  # the walk and the masking in Python give the same draw
    assert python_only.sample(logits).token == tok


def test_params_grammar_field():
    assert SamplingParams().grammar == ""
    with pytest.raises(GrammarError, match="line 1, column 11"):
        SamplingParams(grammar="root ::= (")
    with pytest.raises(ValueError, match="grammar"):
        SamplingParams(grammar=3)
    p = SamplingParams.from_dict({"grammar": 'root ::= "x"'})
    assert p.grammar == 'root ::= "x"' and p.to_dict()["grammar"] == 'root ::= "x"'


# -- the real model -----------------------------------------------------------------------------------------
MODEL_GRAMMARS = [
    'root ::= "yes" | "no"',
    'root ::= "[" num ("," " "? num){1,3} "]"\nnum ::= [0-9]{1,3}',
    r'''root ::= "{" ws "\"name\"" ws ":" ws str ws "," ws "\"tags\"" ws ":" ws list ws "}"
list ::= "[" ws (str (ws "," ws str){0,2})? ws "]"
str ::= "\"" [^"\\\n]{0,20} "\""
ws ::= [ ]?''',
]


@pytest.fixture(scope="module")
def model(gemma_path):
    from emberllm.runtime.model import Model

    return Model(gemma_path, n_ctx=256, n_threads=2)


@pytest.mark.parametrize("grammar", MODEL_GRAMMARS)
def test_gemma_sampled_outputs_match(model, grammar):
    for seed in (1, 2, 3):
        steps = list(model.generate("Describe the sky in a few words.", n_predict=80, temperature=0.8, seed=seed,
                                    grammar=grammar))
        text = "".join(s.text for s in steps)
        assert steps[-1].finish_reason == "stop", text
        assert Matcher(grammar).accepts(text), text


def test_gemma_greedy_with_grammar(model):
    grammar = 'root ::= "The sky is " ("green" | "purple") "."'
    assert not model.sampler(SamplingParams(temperature=0.0, grammar=grammar)).is_argmax
    steps = list(model.generate("What colour is the sky?", n_predict=20, temperature=0.0, grammar=grammar))
    text = "".join(s.text for s in steps)
    assert text in ("The sky is green.", "The sky is purple.") and steps[-1].finish_reason == "stop"


def test_gemma_json_schema_option(model):
    """Model.generate/complete/chat take json_schema as llama-server's field: sampled outputs validate; it and
    grammar exclude each other; an inexpressible keyword raises naming it."""
    import jsonschema

    from emberllm.grammar.json_schema import UnsupportedSchemaError

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                               "days": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["city", "days"], "additionalProperties": False}
    for seed in (4, 5):
        done = model.complete("Plan a trip: ", n_predict=60, temperature=0.8, seed=seed, json_schema=schema)
        assert done.finish_reason == "stop", done.text
        jsonschema.validate(json.loads(done.text), schema)
    flag = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    steps = list(model.chat([{"role": "user", "content": "Is it raining?"}], n_predict=40, temperature=0.0,
                            json_schema=flag))
    assert steps[-1].finish_reason == "stop"
    jsonschema.validate(json.loads("".join(s.text for s in steps)), flag)
    with pytest.raises(ValueError, match="grammar, json_schema"):
        model.complete("x", json_schema=schema, grammar='root ::= "a"')
    with pytest.raises(UnsupportedSchemaError, match="uniqueItems"):
        model.complete("x", json_schema={"type": "array", "uniqueItems": True})


def test_pyodide_grammar_generation(pyodide_dir, pyodide_wheel, gemma_path):  # noqa: F811
    """In Pyodide (the C walk in WASM through ctypes): sampled outputs match; ms/token with and without a grammar."""
    script = Path(__file__).parent / "pyodide" / "grammar_check.py"
    out = run_in_pyodide(pyodide_dir, pyodide_wheel, script, model=gemma_path)
    matches = [line for line in out.splitlines() if line.startswith("MATCH")]
    assert len(matches) == 4 and all(line.startswith("MATCH True") for line in matches), out
    print(*[line for line in out.splitlines() if line.startswith("TIMING")], sep="\n")
