"""JSON-schema-constrained decoding overhead for three schema sizes at 1 thread on the Gemma model (not in CI).

    python bench/grammar_schema_sizes.py                         # native (the cffi kernels)
    python bench/grammar_schema_sizes.py --pyodide DIR WHEEL     # the same script in Pyodide under Node

(``DIR``: npm ``pyodide``'s directory, e.g. ``$EMBERLLM_CACHE/npm-pyodide/node_modules/pyodide``; ``WHEEL``: the
emberllm wheel of ``pyodide_pkg/build_wheel.py``.)

For no grammar and the grammars of a small (2 properties), a medium (6, with bounds, an enum and an array) and a
large schema (10 properties, refs, formats, a pattern, nested arrays of objects) it generates 48 tokens at
temperature 0.8 for 3 seeds and prints the median ms per token (forward pass + sampling) and the sampling part
alone: the grammar's cost is the difference in the sampling part.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from emberllm.grammar.json_schema import schema_to_gbnf
from emberllm.runtime.model import Model
from emberllm.runtime.model_store import default_model_path

SMALL = {"type": "object", "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}},
         "required": ["name", "ok"]}
MEDIUM = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "email": {"type": "string"}, "role": {"enum": ["admin", "user", "guest"]},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5}, "active": {"type": "boolean"}},
    "required": ["name", "age", "email", "role", "tags", "active"]}
LARGE = {"$defs": {"addr": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"},
    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}, "country": {"enum": ["DE", "FR", "US", "JP"]}},
    "required": ["street", "city", "zip", "country"]}},
    "type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
    "born": {"type": "string", "format": "date"},
    "home": {"$ref": "#/$defs/addr"}, "work": {"$ref": "#/$defs/addr"},
    "phones": {"type": "array", "items": {"type": "object", "properties": {"kind": {"enum": ["home", "work", "mobile"]},
        "number": {"type": "string"}}, "required": ["kind", "number"]}, "maxItems": 3},
    "score": {"type": "number"}, "level": {"type": "integer", "minimum": 1, "maximum": 10},
    "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "verified": {"type": "boolean"}},
    "required": ["id", "name", "born", "home", "work", "phones", "score", "level", "notes", "verified"]}

PROMPT = "Write a JSON record for a person:\n"
SCHEMAS: dict[str, dict[str, Any]] = {"small": SMALL, "medium": MEDIUM, "large": LARGE}


def measure(model_source: Any) -> None:
    """Print ms/token and sampling ms/token per schema size (``model_source``: a path, or the bytes in Pyodide)."""
    model = Model(model_source, n_ctx=512, n_threads=1)
    cases = [("none", "")] + [(name, schema_to_gbnf(schema)) for name, schema in SCHEMAS.items()]
    for name, grammar in cases:
        list(model.generate(PROMPT, n_predict=8, temperature=0.8, seed=99, grammar=grammar))  # warm-up
        per_token, sampling = [], []
        for seed in (1, 2, 3):
            steps = list(model.generate(PROMPT, n_predict=48, temperature=0.8, seed=seed, grammar=grammar))
            tm, n = model.timings, max(len(steps), 1)
            per_token.append((tm.eval_ms + tm.sample_ms) / n)
            sampling.append(tm.sample_ms / n)
        print(f"{name:7s} rules={grammar.count('::='):3d} ms/token {statistics.median(per_token):6.2f}  "
              f"sampling ms/token {statistics.median(sampling):5.3f}")


def main() -> None:
    """Measure natively, or in Pyodide with ``--pyodide DIR WHEEL`` (tests/pyodide/run_in_pyodide.mjs)."""
    if sys.argv[1:2] == ["--pyodide"]:
        root = Path(__file__).resolve().parent.parent
        harness = root / "tests" / "pyodide" / "run_in_pyodide.mjs"
        subprocess.run(["node", str(harness), sys.argv[2], str(root / "core"), sys.argv[3], __file__,
                        str(default_model_path())], check=True)
    else:
        measure(default_model_path())


if "MODEL" in globals():  # inside Pyodide: run_in_pyodide.mjs put the model's bytes there
    measure(MODEL)  # noqa: F821
elif __name__ == "__main__":
    main()
