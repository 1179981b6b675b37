"""Whether a KV cache fits in the memory left: the system's available memory, the cgroup limit and ``ulimit -v``.

A KV cache that the machine cannot hold is refused with one ``KVCacheTooLargeError`` line instead of a
``MemoryError`` traceback (or the kernel's out-of-memory killer) later.
"""

from __future__ import annotations

import os
from pathlib import Path


class KVCacheTooLargeError(ValueError):
    """The KV cache for the asked context cannot be allocated on this machine."""


#: KV cache types (llama.cpp's ``-ctk``/``-ctv`` names): GGML type id, values per block, bytes per block.
KV_CACHE_TYPES: dict[str, tuple[int, int, int]] = {
    "f32": (0, 1, 4),
    "f16": (1, 1, 2),
    "q8_0": (8, 32, 34),
    "q4_0": (2, 32, 18),
}
#: The default cache type of K and V (llama.cpp's).
DEFAULT_KV_TYPE = "f16"


def kv_cache_type(name: str, which: str = "KV") -> str:
    """A cache type's canonical name (``ValueError`` naming the valid ones for anything else)."""
    key = str(name).strip().lower()
    if key not in KV_CACHE_TYPES:
        raise ValueError(f"unsupported {which} cache type {name!r}: valid types are {', '.join(KV_CACHE_TYPES)}")
    return key


def kv_row_bytes(cache_type: str, n: int) -> int:
    """Bytes of one cache row of ``n`` values of ``cache_type`` (``n`` a multiple of its block size)."""
    _, block, nbytes = KV_CACHE_TYPES[kv_cache_type(cache_type)]
    if n % block:
        raise ValueError(f"the {cache_type} cache type needs rows of whole {block}-value blocks, not {n} values")
    return n // block * nbytes


def kv_cache_bytes(n_layer: int, n_ctx: int, kv_dim: int, n_seq: int = 1, type_k: str = DEFAULT_KV_TYPE,
                   type_v: str = DEFAULT_KV_TYPE) -> int:
    """Bytes of K rows of ``type_k`` and V rows of ``type_v`` for ``n_seq`` caches of ``n_ctx`` positions."""
    return n_layer * n_ctx * (kv_row_bytes(type_k, kv_dim) + kv_row_bytes(type_v, kv_dim)) * n_seq


def available_memory_bytes() -> int | None:
    """Memory this process may still take: the smallest of the system's available memory, the room left under
    its cgroup limit and under its address-space limit (``ulimit -v``); ``None`` where none can be read (e.g. in a
    browser)."""
    limits = [v for v in (_meminfo_available(), _cgroup_room(), _address_space_room()) if v is not None]
    return min(limits) if limits else None


def ensure_kv_fits(nbytes: int, n_ctx: int, n_seq: int = 1) -> None:
    """``KVCacheTooLargeError`` when a KV cache of ``nbytes`` cannot fit in the memory left."""
    room = available_memory_bytes()
    if room is not None and nbytes > room:
        raise KVCacheTooLargeError(too_large_message(nbytes, n_ctx, n_seq, room))


def too_large_message(nbytes: int, n_ctx: int, n_seq: int = 1, room: int | None = None) -> str:
    """The one-line refusal for a KV cache of ``nbytes`` (``room``: the memory that was left, if known)."""
    seqs = f" x {n_seq} slots" if n_seq > 1 else ""
    left = f", but only {gib(room)} of memory is available" if room is not None else ", which cannot be allocated"
    return f"the KV cache for a context of {n_ctx} tokens{seqs} needs {gib(nbytes)}{left}: give a smaller -c/--ctx-size"


def gib(nbytes: int) -> str:
    """``nbytes`` as GiB (or MiB below 1 GiB) with two decimals."""
    if nbytes >= 1 << 30:
        return f"{nbytes / (1 << 30):.2f} GiB"
    return f"{nbytes / (1 << 20):.2f} MiB"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_room() -> int | None:
    """Room under ``RLIMIT_AS`` (``ulimit -v``): the limit less the process's current virtual size."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """Room under the cgroup v2 (or v1) memory limit of this process, if it has one."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory.limit_in_bytes", "memory.usage_in_bytes")):
        for base in _cgroup_dirs():
            try:
                limit = (base / limit_file).read_text().strip()
                usage = int((base / usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
                return None
            return max(0, int(limit) - usage)
    return None


def _cgroup_dirs() -> list[Path]:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    dirs = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "" or "memory" in parts[1].split(",")):
            root = Path("/sys/fs/cgroup") if parts[1] == "" else Path("/sys/fs/cgroup/memory")
            dirs.append(root / parts[2].lstrip("/"))
    return [d for d in dirs if os.path.isdir(d)]
