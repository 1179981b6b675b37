"""``emberllm info``: what a GGUF file holds (metadata, tensor types, parameters) and the memory it needs.

Only reads the header (and the file size); never loads the kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emberllm.backends.memory import DEFAULT_KV_TYPE, KV_CACHE_TYPES
from emberllm.cli.common import MODEL_HELP, add_cache_type_flags, resolve_model_path
from emberllm.gguf.reader import GGUFError, GGUFFile, GGUFValueType
from emberllm.runtime.context_size import resolve_context

#: Arrays longer than this are shown as ``[N items]``.
MAX_INLINE_ITEMS = 16
#: Strings longer than this are cut in the text output.
MAX_INLINE_CHARS = 96
DEFAULT_CTX = 4096

_TYPE_NAMES = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "str",
    GGUFValueType.ARRAY: "arr", GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``info``."""
    p = sub.add_parser("info", help="show a GGUF file's metadata, tensor types and memory needs")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help=MODEL_HELP)
    p.add_argument("-c", "--ctx-size", type=int, default=DEFAULT_CTX,
                   help=f"context size for the memory estimate (default: {DEFAULT_CTX}; 0 = the model's trained "
                        "context; more is capped at it, as when loading)")
    add_cache_type_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the header and print the summary; one ``error:`` line and exit code 1 on a bad file."""
    try:
        summary = summarize_file(resolve_model_path(args.model), args.ctx_size, args.cache_type_k, args.cache_type_v)
    except GGUFError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {args.model}: {exc.strerror or exc}")
    except ValueError as exc:
        return _fail(str(exc))
    text = json.dumps(summary, indent=2) if args.json else "\n".join(render_text(summary))
    return _write(text)


def _write(text: str) -> int:
    """Print ``text``; a closed pipe (``| head``) is not an error."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------------------------------------
# Summary (a JSON-ready dict)
# --------------------------------------------------------------------------------------------------------


def summarize_file(path: Path, n_ctx: int, type_k: str = DEFAULT_KV_TYPE,
                   type_v: str = DEFAULT_KV_TYPE) -> dict[str, Any]:
    """Open ``path`` and summarize it (see :func:`summarize`)."""
    with GGUFFile.open(path) as gguf:
        return summarize(gguf, n_ctx, str(path), type_k, type_v)


def summarize(gguf: GGUFFile, n_ctx: int, path: str | None = None, type_k: str = DEFAULT_KV_TYPE,
              type_v: str = DEFAULT_KV_TYPE) -> dict[str, Any]:
    """Everything ``info`` prints, as plain data (``n_ctx`` resolved as loading would: 0 = trained, capped; the KV
    cache estimated for K of ``type_k`` and V of ``type_v``)."""
    weights = sum(t.nbytes for t in gguf.tensors.values())
    n_ctx_train = gguf.metadata.get(f"{gguf.architecture}.context_length")
    n_ctx = resolve_context(n_ctx, int(n_ctx_train) if isinstance(n_ctx_train, int) else 0)
    kv = kv_cache_bytes(gguf.metadata, n_ctx, type_k, type_v)
    return {
        "path": path,
        "file_size": gguf.file_size,
        "version": gguf.version,
        "architecture": gguf.architecture,
        "name": gguf.get("general.name"),
        "alignment": gguf.alignment,
        "data_offset": gguf.data_offset,
        "n_tensors": len(gguf.tensors),
        "parameters": sum(t.n_elements for t in gguf.tensors.values()),
        "metadata": {key: abbreviate(value) for key, value in gguf.metadata.items()},
        "metadata_types": {key: type_name(types) for key, types in gguf.value_types.items()},
        "tensor_types": tensor_type_histogram(gguf),
        "memory": {
            "n_ctx": n_ctx,
            "weights_bytes": weights,
            "kv_cache_bytes": kv,
            "cache_type_k": type_k,
            "cache_type_v": type_v,
            "total_bytes": weights + kv if kv is not None else None,
        },
    }


def abbreviate(value: Any) -> Any:
    """The value, with arrays longer than ``MAX_INLINE_ITEMS`` replaced by ``"[N items]"``."""
    if isinstance(value, list):
        if len(value) > MAX_INLINE_ITEMS:
            return f"[{len(value)} items]"
        return [abbreviate(v) for v in value]
    return value


def type_name(types: tuple[int, ...]) -> str:
    """Short name of a value type: ``u32``, ``str``, ``arr[str]``..."""
    names = [_TYPE_NAMES.get(t, str(t)) for t in types]
    if len(names) == 2:
        return f"{names[0]}[{names[1]}]"
    return names[0]


def tensor_type_histogram(gguf: GGUFFile) -> dict[str, dict[str, int]]:
    """GGML type name -> ``{"count", "bytes", "parameters"}``, most bytes first."""
    hist: dict[str, dict[str, int]] = {}
    for info in gguf.tensors.values():
        entry = hist.setdefault(info.type_name, {"count": 0, "bytes": 0, "parameters": 0})
        entry["count"] += 1
        entry["bytes"] += info.nbytes
        entry["parameters"] += info.n_elements
    return dict(sorted(hist.items(), key=lambda kv: -kv[1]["bytes"]))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _per_layer(value: Any, n_layer: int) -> list[int] | None:
    """A per-layer integer (a scalar, or a list with one entry per layer) as a list of ``n_layer`` ints."""
    if isinstance(value, list):
        values = [_int(v) for v in value]
        if len(values) != n_layer or any(v is None or v < 0 for v in values):
            return None
        return values  # type: ignore[return-value]
    v = _int(value)
    return None if v is None or v < 0 else [v] * n_layer


def kv_cache_bytes(md: dict[str, Any], n_ctx: int, type_k: str = DEFAULT_KV_TYPE,
                   type_v: str = DEFAULT_KV_TYPE) -> int | None:
    """K and V cache bytes for ``n_ctx`` tokens: n_layer x n_ctx x n_head_kv x (key + value dims) at the bytes per
    value of the cache types (f16: 2, f32: 4, q8_0: 34/32, q4_0: 18/32).

    Head sizes come from ``{arch}.attention.key_length`` / ``value_length`` or embedding_length / head_count.
    ``None`` when the metadata lacks what is needed (or a quantized type's blocks do not divide a head).
    """
    _, bk, sk = KV_CACHE_TYPES[type_k]
    _, bv, sv = KV_CACHE_TYPES[type_v]
    arch = md.get("general.architecture")
    n_layer = _int(md.get(f"{arch}.block_count"))
    if not isinstance(arch, str) or n_layer is None or n_layer <= 0:
        return None
    n_head = _per_layer(md.get(f"{arch}.attention.head_count"), n_layer)
    n_head_kv = _per_layer(md.get(f"{arch}.attention.head_count_kv", md.get(f"{arch}.attention.head_count")),
                           n_layer)
    n_embd = _int(md.get(f"{arch}.embedding_length"))
    if n_head is None or n_head_kv is None:
        return None
    total = 0
    for il in range(n_layer):
        default = n_embd // n_head[il] if n_embd is not None and n_head[il] > 0 else None
        k_len = _int(md.get(f"{arch}.attention.key_length", default))
        v_len = _int(md.get(f"{arch}.attention.value_length", default))
        if k_len is None or v_len is None or k_len % bk or v_len % bv:
            return None
        total += n_ctx * n_head_kv[il] * (k_len // bk * sk + v_len // bv * sv)
    return total


# --------------------------------------------------------------------------------------------------------
# Text rendering
# --------------------------------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.2f} {unit})"
    return f"{n:,} bytes"


def _count(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit} ({n:,})"
    return str(n)


def format_value(value: Any) -> str:
    """One-line display of an (abbreviated) metadata value."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if len(text) > MAX_INLINE_CHARS:
            text = f"{text[:MAX_INLINE_CHARS]}... ({len(value)} chars)"
        return text
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def render_text(s: dict[str, Any]) -> Iterable[str]:
    """The human-readable report, line by line."""
    yield f"file:          {s['path']}"
    yield f"file size:     {_size(s['file_size'])}"
    yield f"GGUF version:  {s['version']}"
    yield f"architecture:  {s['architecture'] or '-'}"
    yield f"name:          {s['name'] or '-'}"
    yield f"parameters:    {_count(s['parameters'])}"
    yield f"tensors:       {s['n_tensors']} (data at offset {s['data_offset']:,}, alignment {s['alignment']})"
    yield ""
    yield f"metadata ({len(s['metadata'])} keys):"
    width = max((len(k) for k in s["metadata"]), default=0)
    for key, value in s["metadata"].items():
        vtype = s["metadata_types"][key]
        shown = value if vtype.startswith("arr") and isinstance(value, str) else format_value(value)
        yield f"  {key:<{width}}  {vtype:<8}  {shown}"
    yield ""
    yield from _render_types(s["tensor_types"])
    yield ""
    yield from _render_memory(s["memory"])


def _render_types(hist: dict[str, dict[str, int]]) -> Iterable[str]:
    yield "tensor types:"
    yield f"  {'type':<8} {'tensors':>8} {'parameters':>14} {'bytes':>16}"
    for name, e in hist.items():
        yield f"  {name:<8} {e['count']:>8} {e['parameters']:>14,} {e['bytes']:>16,}"
    total = {k: sum(e[k] for e in hist.values()) for k in ("count", "parameters", "bytes")}
    yield f"  {'total':<8} {total['count']:>8} {total['parameters']:>14,} {total['bytes']:>16,}"


def _render_memory(m: dict[str, Any]) -> Iterable[str]:
    yield f"memory estimate (n_ctx = {m['n_ctx']}):"
    yield f"  weights         {_size(m['weights_bytes'])}"
    tk, tv = m["cache_type_k"], m["cache_type_v"]
    kv_type = tk if tk == tv else f"{tk}/{tv}"
    yield f"  {'KV cache (' + kv_type + ')':<16}{_size(m['kv_cache_bytes'])}"
    yield f"  total           {_size(m['total_bytes'])}"
