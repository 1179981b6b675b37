"""``emberllm quantize IN.gguf OUT.gguf TYPE``: llama-quantize's mixes (no importance matrix)."""

from __future__ import annotations

import argparse
import collections
import time

from emberllm.cli.common import fail

MIXES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S",
         "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``quantize``."""
    p = sub.add_parser("quantize", help="quantize an F32/F16/BF16 GGUF (llama.cpp's per-tensor type choices)")
    p.add_argument("infile", help="input GGUF (F32, F16 or BF16 weights)")
    p.add_argument("outfile", help="output GGUF")
    # not argparse choices: an I-quant mix gets quantize_file's error saying it needs an importance matrix
    p.add_argument("type", type=str.upper, metavar="TYPE", help=", ".join(MIXES))
    p.add_argument("--allow-requantize", action="store_true", help="also accept already quantized tensors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Quantize and print how many tensors got each type."""
    try:
        from emberllm.convert.quantize import QuantizeError, quantize_file
        from emberllm.gguf import types as ggml_types
    except ImportError as exc:
        return fail(f"quantize needs the 'convert' extra (pip install 'emberllm[convert]'): {exc}")
    t0 = time.perf_counter()
    try:
        st = quantize_file(args.infile, args.outfile, args.type, allow_requantize=args.allow_requantize)
    except (QuantizeError, OSError, ValueError) as exc:
        return fail(str(exc))
    counts = collections.Counter(ggml_types.type_by_id(t).name for t in st.choices.values())
    summary = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    print(f"wrote {args.outfile} ({args.type}: {summary}) in {time.perf_counter() - t0:.1f} s")
    return 0
