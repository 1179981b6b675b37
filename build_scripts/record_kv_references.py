"""Record llama.cpp's greedy outputs with quantized KV caches into ``tests/references/llamacpp_kv_types.json``.

How they are made (the settings of ``../shared/reference/llamacpp_reference.json`` plus the cache types):
``llama-server -m gemma-3-270m-q4_k_m.gguf -t 2 -np 1 -c 4096 --no-webui -fit off --ctx-checkpoints 0 -fa on
-ctk TYPE -ctv TYPE`` (llama.cpp built by build_scripts/build_llamacpp.py, the commit the reference file names),
then for each reference prompt ``POST /completion`` with ``{"prompt": ..., "n_predict": 32, "temperature": 0,
"top_k": 1, "seed": 42, "cache_prompt": false, "n_probs": 5, "return_tokens": true}``.  Top-5 probabilities are
the softmax of the raw logits (``post_sampling_probs`` false), as in the reference file.

Per cache type also llama-perplexity's running PPL over ``../shared/reference/ppl_text.txt`` (``llama-perplexity
-m MODEL -f ppl_text.txt -c 256 -t 2 -fa on -ctk TYPE -ctv TYPE``, the reference file's method): with a q4_0 cache
the greedy tokens of this model depend on every float rounding upstream (emberllm's own SIMD levels disagree with
each other), so the per-chunk perplexity is the comparison that holds there.

Usage: ``python build_scripts/record_kv_references.py [--types q8_0,q4_0] [--model PATH]`` (about three minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "references" / "llamacpp_kv_types.json"
SHARED_REFERENCE = ROOT.parent / "shared" / "reference" / "llamacpp_reference.json"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_llamacpp", ROOT / "build_scripts" / "build_llamacpp.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("llama-server did not become ready")


def record_type(server: Path, model: Path, cache_type: str, prompts: dict) -> dict:
    """One llama-server run with ``-ctk/-ctv cache_type`` (``K:V`` for two types): steps of every prompt."""
    type_k, _, type_v = cache_type.partition(":")
    type_v = type_v or type_k
    port = _free_port()
    cmd = [str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-np", "1",
           "-c", "4096", "--no-webui", "-fit", "off", "--ctx-checkpoints", "0", "-fa", "on",
           "-ctk", type_k, "-ctv", type_v]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, proc)
        out = {}
        for prompt in prompts:
            res = _post(port, "/completion", {"prompt": prompt, "n_predict": 32, "temperature": 0, "top_k": 1,
                                              "seed": 42, "cache_prompt": False, "n_probs": 5,
                                              "return_tokens": True})
            steps = []
            for p in res["completion_probabilities"]:
                top5 = [{"id": t["id"], "token": t["token"], "logprob": t["logprob"], "prob": math.exp(t["logprob"])}
                        for t in p["top_logprobs"]]
                steps.append({"token_id": p["id"], "top5": top5})
            out[prompt] = {"generated_token_ids": res["tokens"], "generated_text": res["content"], "steps": steps}
        return {"server_cmd": ["llama-server", *cmd[1:2], Path(model).name, *cmd[3:]], "prompts": out}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def record_perplexity(binary: Path, model: Path, cache_type: str) -> dict:
    """llama-perplexity's running PPL per 256-token chunk with ``-ctk/-ctv cache_type`` (``K:V`` for two)."""
    type_k, _, type_v = cache_type.partition(":")
    cmd = [str(binary), "-m", str(model), "-f", str(SHARED_REFERENCE.parent / "ppl_text.txt"), "-c", "256", "-t", "2",
           "-fa", "on", "-ctk", type_k, "-ctv", type_v or type_k]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    running = [float(v) for v in re.findall(r"\[\d+\]([\d.]+),", text)]
    return {"command": ["llama-perplexity", "-m", Path(model).name, "-f", "ppl_text.txt", *cmd[5:]],
            "chunk_running_ppl": running, "ppl": running[-1]}


def main() -> int:
    """Record the cache types asked for into ``OUT``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="q8_0,q4_0", help="cache types, comma-separated (K:V for two types)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--model", default=None, help="the Gemma 3 270M Q4_K_M file (default: emberllm's cached one)")
    args = ap.parse_args()
    build = _build_module()
    build.build()
    if args.model:
        model = Path(args.model)
    else:
        sys.path.insert(0, str(ROOT))
        from emberllm.runtime.model_store import default_model_path

        model = default_model_path()
    reference = json.loads(SHARED_REFERENCE.read_text())
    prompts = {p: r["prompt_token_ids"] for p, r in reference["prompts"].items()}
    out = args.out
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["meta"] = {
        "how": __doc__.split("\n\n")[1].replace("\n", " "),
        "llama_cpp_commit": reference["meta"]["llama_cpp_commit"],
        "model_sha256": reference["meta"]["model_sha256"],
        "notes": ["with a quantized K (V) cache of a model whose head size is a multiple of 64, this llama.cpp "
                  "rotates Q and K (V and the attention output) by a Walsh-Hadamard transform "
                  "(llama_kv_cache attn_rot_k/attn_rot_v; LLAMA_ATTN_ROT_DISABLE unset)",
                  "prompt_token_ids are the reference file's (same tokenizer)"],
    }
    data.setdefault("types", {})
    for cache_type in args.types.split(","):
        rec = record_type(build.binary("llama-server"), model, cache_type, prompts)
        for prompt, ids in prompts.items():
            rec["prompts"][prompt]["prompt_token_ids"] = ids
        rec["perplexity"] = record_perplexity(build.binary("llama-perplexity"), model, cache_type)
        data["types"][cache_type] = rec
        print(f"{cache_type}: recorded {len(rec['prompts'])} prompts")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
