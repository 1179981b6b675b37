"""The models a server offers by name: GGUF files from ``-m`` (named by ``--alias`` or their stem) and from a models
folder (``--models-dir``: every ``*.gguf`` there, by stem), and what their headers say (read once per file version)."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emberllm.gguf.reader import GGUFFile
from emberllm.models.base import HParams

#: llama.cpp's ``llama_ftype`` (``general.file_type``) -> the quantization name as Ollama spells it (``Q4_K_M``;
#: ``gguf.types.file_type_name`` gives llama.cpp's ``Q4_K - Medium``).
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
              32: "BF16"}


@dataclass
class ModelInfo:
    """What a model file's header says, without loading it."""

    path: Path
    size: int
    mtime: float
    metadata: dict[str, Any]  # scalar values; arrays as None (their lengths in ``array_lengths``)
    array_lengths: dict[str, int]
    hp: HParams
    n_params: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGML type name -> tensor count

    @property
    def architecture(self) -> str:
        """``general.architecture``."""
        return str(self.metadata.get("general.architecture", ""))

    @property
    def quantization(self) -> str:
        """Ollama's ``quantization_level``: the file type's name (else the commonest tensor type)."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int) and ftype in FILE_TYPES:
            return FILE_TYPES[ftype]
        return max(self.tensor_types, key=lambda k: self.tensor_types[k]) if self.tensor_types else "unknown"

    @property
    def parameter_size(self) -> str:
        """Ollama's ``parameter_size``: ``268.10M``, ``1.24B``."""
        n = self.n_params
        return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def read_info(path: Path) -> ModelInfo:
    """The header facts of ``path`` (``OSError`` / ``GGUFError`` / ``UnsupportedModelError`` when it is not a
    model emberllm can read)."""
    st = path.stat()
    with GGUFFile.open(path) as gguf:
        hp = HParams.from_gguf(gguf)
        scalars = {k: (None if isinstance(v, list | tuple) else v) for k, v in gguf.metadata.items()}
        lengths = {k: len(v) for k, v in gguf.metadata.items() if isinstance(v, list | tuple)}
        types: dict[str, int] = {}
        for t in gguf.tensors.values():
            types[t.type_name] = types.get(t.type_name, 0) + 1
        n_params = sum(t.n_elements for t in gguf.tensors.values())
    return ModelInfo(path, st.st_size, st.st_mtime, scalars, lengths, hp, n_params, types)


def read_arrays(path: Path) -> dict[str, Any]:
    """The array values of a file's metadata (``/api/show`` with ``verbose``)."""
    with GGUFFile.open(path) as gguf:
        return {k: list(v) for k, v in gguf.metadata.items() if isinstance(v, list | tuple)}


class InfoCache:
    """``read_info`` and file digests, computed once per (path, size, mtime); thread-safe."""

    def __init__(self) -> None:
        self._infos: dict[tuple[Path, int, float], ModelInfo] = {}
        self._digests: dict[tuple[Path, int, float], str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: Path) -> tuple[Path, int, float]:
        st = path.stat()
        return path, st.st_size, st.st_mtime

    def info(self, path: Path) -> ModelInfo:
        """The header facts of ``path``."""
        key = self._key(path)
        with self._lock:
            if key in self._infos:
                return self._infos[key]
        info = read_info(path)
        with self._lock:
            self._infos[key] = info
        return info

    def digest(self, path: Path) -> str:
        """The sha256 of the file's bytes (hex), as Ollama's ``digest``."""
        key = self._key(path)
        with self._lock:
            if key in self._digests:
                return self._digests[key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        with self._lock:
            self._digests[key] = h.hexdigest()
        return self._digests[key]


def model_name(path: Path) -> str:
    """A file's model name: its stem (``gemma-3-270m-q4_k_m.gguf`` -> ``gemma-3-270m-q4_k_m``)."""
    return path.name[:-5] if path.name.lower().endswith(".gguf") else path.name


def scan_dir(folder: Path) -> dict[str, Path]:
    """Every ``*.gguf`` file in ``folder`` (not its sub-folders) by name; partial downloads are not listed."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return {}
    return {model_name(Path(e.path)): Path(e.path) for e in entries
            if e.name.lower().endswith(".gguf") and not e.name.startswith(".") and e.is_file()}


@dataclass
class Catalog:
    """The names a server answers to: the ``-m`` files (``fixed``, in order) and the models folder's files (looked
    up again on every call, so that pulled and deleted files come and go)."""

    fixed: dict[str, Path] = field(default_factory=dict)
    folder: Path | None = None

    def names(self) -> dict[str, Path]:
        """Name -> file, ``-m`` files first; a ``-m`` name hides a folder file of the same name."""
        out = dict(self.fixed)
        if self.folder is not None:
            for name, path in scan_dir(self.folder).items():
                out.setdefault(name, path)
        return out

    def resolve(self, name: str) -> str | None:
        """The catalogue name ``name`` means (Ollama's ``NAME:latest`` is ``NAME``), or None."""
        names = self.names()
        if name in names:
            return name
        if name.endswith(":latest") and name[: -len(":latest")] in names:
            return name[: -len(":latest")]
        return None


def parse_keep_alive(value: Any, name: str = "keep_alive") -> float:
    """Ollama's ``keep_alive`` in seconds: a number of seconds or a Go duration (``"5m"``, ``"1h30m"``, ``"10s"``,
    ``"0"``); negative means forever (``-1.0`` is returned for every negative).  ``ValueError`` naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a duration such as \"5m\" or a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _go_duration(value.strip(), name)
    else:
        raise ValueError(f"{name}: expected a duration such as \"5m\" or a number of seconds, got {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return -1.0
    return -1.0 if seconds < 0 else seconds


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str, name: str) -> float:
    """Go's ``time.ParseDuration`` (and a bare number: seconds, as Ollama takes ``"300"``)."""
    bad = ValueError(f"{name}: invalid duration {text!r} (e.g. \"5m\", \"30s\", \"1h\", \"0\", \"-1\")")
    if not text:
        raise bad
    try:
        return float(text)
    except ValueError:
        pass
    sign, rest = (-1.0, text[1:]) if text[0] == "-" else (1.0, text.lstrip("+"))
    total, i = 0.0, 0
    if not rest:
        raise bad
    while i < len(rest):
        j = i
        while j < len(rest) and (rest[j].isdigit() or rest[j] == "."):
            j += 1
        if j == i:
            raise bad
        k = j
        while k < len(rest) and not (rest[k].isdigit() or rest[k] == "."):
            k += 1
        unit = rest[j:k]
        if unit not in _UNITS:
            raise bad
        try:
            total += float(rest[i:j]) * _UNITS[unit]
        except ValueError as exc:
            raise bad from exc
        i = k
    return sign * total
