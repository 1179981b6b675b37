"""``emberllm serve``'s flags for several models (``--models-dir``, several ``-m``, ``--models-max``,
``--models-memory``, ``--keep-alive``) and the choice between one-model and several-model mode."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from emberllm.edge_server.model_catalog import model_name, parse_keep_alive, scan_dir

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class AppendAction(argparse.Action):
    """A repeatable flag whose first use on the command line replaces a default from the environment."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        seen = f"_{self.dest}_from_cli"
        current = getattr(namespace, self.dest, None)
        if not getattr(namespace, seen, False) or not isinstance(current, list):
            current = []
        setattr(namespace, seen, True)
        setattr(namespace, self.dest, [*current, values])


def memory_size(text: str) -> int:
    """argparse type for ``--models-memory``: bytes, or with a K/M/G/T suffix (powers of 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 8G, 512M, 2000000000)")
    return int(float(m.group(1)) * (1024 ** " kmgt".index((m.group(2) or " ").lower())))


def keep_alive(text: str) -> float:
    """argparse type for ``--keep-alive``."""
    try:
        return parse_keep_alive(text, "--keep-alive")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_models_flags(p: argparse.ArgumentParser) -> None:
    """The flags of several-model mode."""
    g = p.add_argument_group("several models by name (Ollama-style)")
    g.add_argument("--models-dir", default=None, metavar="DIR",
                   help="serve every *.gguf in DIR by name (the file name without .gguf; a request's \"model\" picks "
                        "one), loading each on first use (default when no -m is given: the model store "
                        "$EMBERLLM_CACHE/models, if it holds models)")
    g.add_argument("--models-max", type=int, default=None, metavar="N",
                   help="most models loaded at once; the least recently used idle one is unloaded to load another "
                        "(default: as many as fit --models-memory)")
    g.add_argument("--models-memory", type=memory_size, default=None, metavar="SIZE",
                   help="memory budget for loaded models, weights and KV caches (e.g. 8G; default: the memory "
                        "available at start)")
    g.add_argument("--keep-alive", type=keep_alive, default=300.0, metavar="DURATION",
                   help="how long an idle model stays loaded when a request does not say (Ollama's keep_alive: "
                        "\"5m\", \"1h\", seconds; 0: unload after each reply; negative: for good; default: 5m)")


def models_config(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """The ``ServerConfig`` fields of the model flags: ``multi_model`` with ``models`` / ``models_dir``, or one
    model (``model_arg``: its ``-m``, None for the default model).  ``ValueError`` naming the flag."""
    paths = [Path(m).expanduser() for m in _as_list(args.model)]
    aliases = _as_list(args.alias)
    folder = Path(args.models_dir).expanduser() if args.models_dir else None
    if folder is not None and not folder.is_dir():
        raise ValueError(f"--models-dir {args.models_dir}: no such folder")
    if folder is None and not paths and scan_dir(store):
        folder = store
    multi = folder is not None or len(paths) > 1
    if args.models_max is not None and args.models_max < 1:
        raise ValueError("--models-max must be at least 1")
    if not multi:
        if args.models_max is not None or args.models_memory is not None:
            raise ValueError("--models-max and --models-memory apply to several models (--models-dir or several -m)")
        if len(aliases) > 1:
            raise ValueError("-a/--alias is given more times than -m")
        return {"multi_model": False, "alias": aliases[0] if aliases else None,
                "model_arg": str(paths[0]) if paths else None}
    if len(aliases) > len(paths):
        raise ValueError("-a/--alias is given more times than -m (each alias names the -m at the same position)")
    models: dict[str, Path] = {}
    for i, path in enumerate(paths):
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        name = aliases[i] if i < len(aliases) else model_name(path)
        if name in models:
            raise ValueError(f"two -m models are named {name!r}: give each an --alias")
        models[name] = path
    return {"multi_model": True, "models": models, "models_dir": folder, "models_max": args.models_max,
            "models_memory": args.models_memory, "keep_alive_s": args.keep_alive}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
