"""Hand check (not CI): files made by ``emberllm convert`` / ``emberllm quantize`` load and run in llama.cpp.

For each architecture, a tiny random transformers model (the same builder as tests/test_model_families.py, with a
byte-level BPE tokenizer trained here so the file has a real vocabulary) is converted to F16 and quantized to
Q8_0, Q4_K_M, Q2_K, Q3_K_S/M/L, IQ4_NL and IQ4_XS by emberllm (``--mixes Q8_0,IQ4_XS`` to choose).  Then, per
file:

- llama.cpp's ``llama-tokenize`` and emberllm tokenize a few strings: the ids must be equal;
- llama.cpp's ``llama-completion`` (greedy, 24 tokens, no warm-up chat template) and emberllm generate from the
  same prompt: the report gives how many leading tokens agree (random models have close logits, so a late flip
  is float noise, an early one a bug);
- with ``llama-quantize`` built, llama.cpp quantizes the same F16 file and the two outputs are compared byte for
  byte.

Usage: python bench/llamacpp_roundtrip.py LLAMA_CPP_BIN_DIR [--mixes M1,M2] [case ...]
(cases: llama qwen2 qwen3 phi3 gemma3)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emberllm.convert import hf as convert_hf  # noqa: E402
from emberllm.convert.quantize import quantize_file  # noqa: E402
from emberllm.runtime.model import Model  # noqa: E402
from tests.test_model_families import _train_bpe_tokenizer, build_model  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog"
STRINGS = ["Hello world", " leading space and  double", "numbers 12345 and symbols !?", "ünïcödé ñ"]
N_GEN = 24
MIXES = ["Q8_0", "Q4_K_M", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS"]


def llama_tokenize(bin_dir: Path, model: Path, text: str) -> list[int]:
    """Token ids from ``llama-tokenize`` (BOS as the file says)."""
    out = subprocess.run([str(bin_dir / "llama-tokenize"), "-m", str(model), "-p", text, "--ids", "--log-disable"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llama_greedy_text(bin_dir: Path, model: Path, prompt: str) -> str:
    """The text ``llama-completion`` generates greedily after ``prompt``."""
    res = subprocess.run([str(bin_dir / "llama-completion"), "-m", str(model), "-p", prompt, "-n", str(N_GEN),
                          "--temp", "0", "--top-k", "1", "-no-cnv", "--no-warmup", "-t", "1", "-c", "128",
                          "--no-display-prompt", "--ignore-eos"],
                         capture_output=True, check=True, stdin=subprocess.DEVNULL)
    return res.stdout.decode("utf-8", errors="replace")


def check_file(bin_dir: Path, path: Path) -> dict:
    """Tokenization and greedy generation of one file in both engines."""
    with Model(path, n_ctx=128, n_threads=1) as model:
        tok_ok = all(llama_tokenize(bin_dir, path, s) == model.tokenize(s, parse_special=False) for s in STRINGS)
        ours = "".join(step.text for step in model.generate(PROMPT, n_predict=N_GEN, temperature=0,
                                                             ignore_eos=True))
    theirs = llama_greedy_text(bin_dir, path, PROMPT)
    theirs = theirs.rstrip("\n")  # llama-completion ends its output with a blank line
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    return {"tokenize_equal": tok_ok, "greedy_text_equal": ours == theirs, "common_prefix_chars": same,
            "ours": ours[:80], "llama.cpp": theirs[:80]}


def main(argv: list[str]) -> int:
    bin_dir = Path(argv[0])
    rest = argv[1:]
    mixes = MIXES
    if len(rest) >= 2 and rest[0] == "--mixes":
        mixes, rest = rest[1].upper().split(","), rest[2:]
    cases = rest or ["llama", "qwen2", "qwen3", "phi3", "gemma3"]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            d = Path(tmp) / case
            fast = _train_bpe_tokenizer(d)
            build_model(case, d, hidden=256, ffn=512, layers=2, vocab=len(fast))
            files = {"F16": d / "f16.gguf", **{mix: d / f"{mix.lower()}.gguf" for mix in mixes}}
            # general.name without "phi3": llama.cpp special-cases Phi-3 vocabularies by model name and expects
            # SPM tokens such as "</s>" that this test's BPE vocabulary does not have
            convert_hf.convert(d, files["F16"], "f16", name="roundtrip test model")
            for mix in mixes:
                quantize_file(files["F16"], files[mix], mix)
            for name, path in files.items():
                try:
                    row = check_file(bin_dir, path)
                except subprocess.CalledProcessError as exc:
                    err = (exc.stderr or b"").decode("utf-8", errors="replace") if isinstance(exc.stderr, bytes) \
                        else str(exc.stderr or "")
                    row = {"tokenize_equal": False, "error": f"{Path(exc.cmd[0]).name}: {err.strip()[-600:]}"}
                if name != "F16" and (bin_dir / "llama-quantize").is_file():
                    theirs = path.with_name(f"llamacpp-{path.name}")
                    subprocess.run([str(bin_dir / "llama-quantize"), str(files["F16"]), str(theirs), name],
                                   capture_output=True, check=True)
                    row["bytes_equal_llama_quantize"] = theirs.read_bytes() == path.read_bytes()
                report[f"{case} {name}"] = row
                print(f"{case} {name}: {json.dumps(row, ensure_ascii=False)}", flush=True)
    ok = all(r["tokenize_equal"] and r.get("bytes_equal_llama_quantize", True) for r in report.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
