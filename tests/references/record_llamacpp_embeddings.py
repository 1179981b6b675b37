"""Record llama.cpp's ``llama-embedding`` outputs on the Gemma model into ``llamacpp_embeddings.json``.

    python tests/references/record_llamacpp_embeddings.py [--model PATH]

For each pooling (``mean``, ``last``) and flash attention setting (``auto``, llama-embedding's default, and ``off``,
to show llama.cpp's own spread) it runs, with the texts one per line in a file::

    llama-embedding -m MODEL -f TEXTS --pooling POOLING -fa FA -t 1 --embd-output-format array

(normalisation: the default ``--embd-normalize 2``, L2).  llama.cpp is build_scripts/build_llamacpp.py's build
(commit 0c1e570 from the llama-cpp-python 0.3.36 sdist); the token ids come from ``llama-tokenize --ids``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "llamacpp_embeddings.json"
#: Varied texts (none holds a newline, llama-embedding's prompt separator).
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "def add(a, b):    return a + b  # a tiny Python function",
    "Ich liebe München im Herbst — 東京の夜景も美しい。",
    "Paris is the capital of France, and Berlin is the capital of Germany; both cities are famous for their "
    "museums, their long histories, their food and the rivers that run through them.",
    "42",
]
POOLINGS = ("mean", "last")
FLASH_ATTN = ("auto", "off")


def _build_module() -> Any:
    spec = importlib.util.spec_from_file_location("build_llamacpp", ROOT / "build_scripts" / "build_llamacpp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command(binary: Path, model: Path, texts_file: Path, pooling: str, fa: str) -> list[str]:
    """The llama-embedding command line for one recording."""
    return [str(binary), "-m", str(model), "-f", str(texts_file), "--pooling", pooling, "-fa", fa, "-t", "1",
            "--embd-output-format", "array"]


def run_embedding(binary: Path, model: Path, texts: list[str], pooling: str, fa: str = "auto") -> list[list[float]]:
    """llama-embedding's L2-normalised embeddings of ``texts`` (one per text)."""
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.txt"
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        res = subprocess.run(command(binary, model, texts_file, pooling, fa), capture_output=True, text=True,
                             timeout=300, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"llama-embedding failed ({res.returncode}): {res.stderr[-1500:]}")
    rows = json.loads(res.stdout)
    if len(rows) != len(texts):
        raise RuntimeError(f"llama-embedding gave {len(rows)} embeddings for {len(texts)} texts")
    return rows


def token_ids(bin_dir: Path, model: Path, text: str) -> list[int]:
    """``llama-tokenize --ids`` of ``text`` (BOS added, special tokens parsed, as llama-embedding tokenizes)."""
    res = subprocess.run([str(bin_dir / "llama-tokenize"), "-m", str(model), "-p", text, "--ids", "--log-disable"],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def dumps(out: dict[str, Any]) -> str:
    """``out`` as JSON with one text and one embedding per line."""
    head = json.dumps({k: v for k, v in out.items() if k not in ("texts", "embeddings")}, indent=1)
    texts = ",\n".join("  " + json.dumps(t, ensure_ascii=False) for t in out["texts"])
    sets = [f'  "{key}": [\n' + ",\n".join("   " + json.dumps(r) for r in rows) + "\n  ]"
            for key, rows in out["embeddings"].items()]
    return (head[:-2] + ',\n "texts": [\n' + texts + '\n ],\n "embeddings": {\n' + ",\n".join(sets)
            + "\n }\n}\n")


def main(argv: list[str] | None = None) -> int:
    """Record the references (llama.cpp must be built)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--model", default=None, help="the Gemma 3 270M Q4_K_M file (default: the cached one)")
    args = p.parse_args(argv)
    build = _build_module()
    bin_dir = build.build()
    if args.model:
        model = Path(args.model)
    else:
        sys.path.insert(0, str(ROOT))
        from emberllm.runtime.model_store import default_model_path

        model = default_model_path()
    binary = bin_dir / "llama-embedding"
    out: dict[str, Any] = {
        "source": "llama.cpp commit 0c1e570 (llama-cpp-python 0.3.36 sdist), llama-embedding",
        "model": model.name,
        "command": " ".join(command(Path("llama-embedding"), Path(model.name), Path("TEXTS"), "POOLING", "FA")),
        "normalize": 2,
        "texts": [{"text": t, "tokens": token_ids(bin_dir, model, t)} for t in TEXTS],
        "embeddings": {},
    }
    for pooling in POOLINGS:
        for fa in FLASH_ATTN:
            rows = run_embedding(binary, model, TEXTS, pooling, fa)
            out["embeddings"][f"{pooling}/fa-{fa}"] = rows
    OUT.write_text(dumps(out), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
