"""``emberllm convert HF_DIR -o OUT.gguf --outtype f32|f16|bf16|q8_0``: a Hugging Face model directory to GGUF."""

from __future__ import annotations

import argparse
import time

from emberllm.cli.common import fail


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``convert``."""
    p = sub.add_parser("convert", help="convert a Hugging Face model directory (safetensors) to GGUF")
    p.add_argument("hf_dir", help="directory with config.json, *.safetensors and tokenizer files")
    p.add_argument("-o", "--outfile", required=True, help="GGUF file to write")
    p.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"],
                   help="type of the weight matrices (norms and biases stay f32); default f16")
    p.add_argument("--name", default=None, help="general.name (default: the directory name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written."""
    try:
        from emberllm.convert.hf import ConvertError, convert
    except ImportError as exc:
        return fail(f"convert needs the 'convert' extra (pip install 'emberllm[convert]'): {exc}")
    t0 = time.perf_counter()
    try:
        result = convert(args.hf_dir, args.outfile, args.outtype, name=args.name)
    except (ConvertError, OSError, KeyError) as exc:
        return fail(str(exc))
    print(f"wrote {result.path} ({result.arch}, {result.n_tensors} tensors, {args.outtype}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
