"""Pieces shared by the sub-commands: model loading with one-line errors, common flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emberllm.backends.binding import KernelError
from emberllm.gguf.reader import GGUFError
from emberllm.models import UnsupportedModelError

#: Errors that mean "bad input or set-up": printed as one line, exit code 1, no traceback.
USER_ERRORS = (GGUFError, UnsupportedModelError, KernelError, OSError, ValueError)


#: ``-m``'s help, shared by every command that loads a model.
MODEL_HELP = ("GGUF model file (default: the Gemma 3 270M base model, assembled from its PyPI package into "
              "~/.cache/emberllm on first use)")
#: ``-c``'s help: llama.cpp's meaning of 0 and its cap.
CTX_HELP = ("context size in tokens (default: 4096; 0 = the model's trained context; more than that is capped at it "
            "with a warning)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """``-m``, ``-t``, ``-c``, ``-b``: the flags every command that loads a model takes."""
    p.add_argument("-m", "--model", help=MODEL_HELP)
    p.add_argument("-t", "--threads", type=int, default=None,
                   help="threads for the kernels (default: the cores, at most 8)")
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help=CTX_HELP)
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt micro-batch size (default: 512)")
    add_cache_type_flags(p)
    add_gpu_flags(p)


def add_cache_type_flags(p: argparse.ArgumentParser | Any) -> None:
    """``-ctk``/``-ctv``: the KV cache types (llama.cpp's flags and names)."""
    from emberllm.backends.memory import DEFAULT_KV_TYPE, KV_CACHE_TYPES

    names = ", ".join(KV_CACHE_TYPES)
    p.add_argument("-ctk", "--cache-type-k", type=cache_type_arg("K"), default=DEFAULT_KV_TYPE, metavar="TYPE",
                   help=f"KV cache data type for K: {names} (default: {DEFAULT_KV_TYPE})")
    p.add_argument("-ctv", "--cache-type-v", type=cache_type_arg("V"), default=DEFAULT_KV_TYPE, metavar="TYPE",
                   help=f"KV cache data type for V: {names} (default: {DEFAULT_KV_TYPE}; quantized types run "
                   "llama.cpp's flash-attention numerics)")


def cache_type_arg(which: str) -> Any:
    """argparse type for ``-ctk``/``-ctv``: the canonical name, or an error naming the valid types."""
    from emberllm.backends.memory import kv_cache_type

    def parse(value: str) -> str:
        try:
            return kv_cache_type(value, which)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_gpu_flags(p: argparse.ArgumentParser | Any) -> None:
    """``-ngl`` and ``--device``: how many layers run on WebGPU (llama.cpp's flags)."""
    p.add_argument("-ngl", "--gpu-layers", "--n-gpu-layers", dest="n_gpu_layers", type=gpu_layers, default=None,
                   metavar="N", help="layers to run on WebGPU, the last ones (N >= the layer count or 'all': every "
                   "layer and the output; 0: none; default: all with --device webgpu, else none)")
    p.add_argument("--device", choices=["auto", "webgpu", "cpu"], default=None,
                   help="where offloaded layers run (default: auto = webgpu when -ngl > 0; env EMBERLLM_DEVICE)")


def gpu_layers(value: str) -> int:
    """argparse type for ``-ngl``."""
    from emberllm.runtime.offload import parse_gpu_layers

    try:
        return parse_gpu_layers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_model_path(arg: str | None) -> Path:
    """The ``-m`` path (``~`` expanded; ``ValueError`` if no such file), or the default model assembled from its
    PyPI package."""
    from emberllm.runtime.model_store import DEFAULT_MODEL_FILE, cache_dir, default_model_path

    if arg:
        path = Path(arg).expanduser()
        if not path.exists():
            hint = ""
            if path.name == DEFAULT_MODEL_FILE:
                hint = f" (the default model lives at {cache_dir() / DEFAULT_MODEL_FILE}: leave out -m to use it)"
            raise ValueError(f"model file not found: {arg}{hint}")
        if path.is_dir():
            raise ValueError(f"{arg} is a directory, not a GGUF file")
        return path

    try:
        return default_model_path()
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc


def load_model(args: argparse.Namespace) -> Any:
    """Load the model the flags name (``emberllm.runtime.model.Model``)."""
    from emberllm.runtime.model import Model

    if args.threads is not None and args.threads < 1:
        raise ValueError("-t/--threads must be at least 1")
    if args.batch_size < 1:
        raise ValueError("-b/--batch-size must be at least 1")
    return Model(resolve_model_path(args.model), n_ctx=args.ctx_size, n_threads=args.threads,
                 n_batch=args.batch_size, n_gpu_layers=args.n_gpu_layers, device=args.device,
                 cache_type_k=args.cache_type_k, cache_type_v=args.cache_type_v)


def fail(message: str) -> int:
    """Print ``error: message`` on one line to stderr and return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1
