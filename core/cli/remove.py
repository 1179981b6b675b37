"""``emberllm rm``: delete models (and their partial downloads) from the store."""

from __future__ import annotations

import argparse

from emberllm.cli.common import fail
from emberllm.runtime.model_store import models_dir, remove_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``rm``."""
    p = sub.add_parser("rm", help="delete models from the model store")
    p.add_argument("names", metavar="NAME", nargs="+", help="model name as `emberllm list` shows it")
    p.add_argument("--store", default=None, metavar="DIR", help="model store folder (default: $EMBERLLM_CACHE/models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Remove each name; exit 1 if any was not there."""
    status = 0
    for name in args.names:
        try:
            for path in remove_model(name, args.store or models_dir()):
                print(f"deleted {path}")
        except (FileNotFoundError, ValueError) as exc:
            status = fail(str(exc))
    return status
