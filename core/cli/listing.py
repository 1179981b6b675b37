"""``emberllm list``: the models in the store (name, size, quant type, architecture, modified)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from emberllm.runtime.model_store import StoredModel, list_models, models_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``list``."""
    p = sub.add_parser("list", aliases=["ls"], help="list the models in the model store")
    p.add_argument("--store", default=None, metavar="DIR", help="model store folder (default: $EMBERLLM_CACHE/models)")
    p.add_argument("--json", action="store_true", help="one JSON array instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON) of the store's models."""
    store = args.store or models_dir()
    models = list_models(store)
    if args.json:
        print(json.dumps([as_json(m) for m in models], indent=2))
        return 0
    if not models:
        print(f"no models in {store} (add one with `emberllm pull URL|PATH`)")
        return 0
    rows = [("NAME", "SIZE", "QUANT", "ARCH", "MODIFIED")] + [row(m) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def row(m: StoredModel) -> tuple[str, str, str, str, str]:
    """One table row; an unreadable file shows ``unreadable`` in the quant column."""
    modified = datetime.fromtimestamp(m.modified).strftime("%Y-%m-%d %H:%M")
    quant = m.file_type or ("unreadable" if m.error else "-")
    return m.name, f"{m.size / 1e6:,.1f} MB", quant, m.architecture or "-", modified


def as_json(m: StoredModel) -> dict[str, object]:
    """A store entry as plain data."""
    return {"name": m.name, "path": str(m.path), "size": m.size, "modified": m.modified,
            "architecture": m.architecture, "file_type": m.file_type, "parameters": m.parameters, "error": m.error}
