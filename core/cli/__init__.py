"""The ``emberllm`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command name -> module (each module has ``add_parser(subparsers)`` and ``run(args) -> int``).
COMMANDS = {
    "info": "emberllm.cli.info",
    "run": "emberllm.cli.run",
    "perplexity": "emberllm.cli.perplexity",
    "bench": "emberllm.cli.bench",
    "convert": "emberllm.cli.convert",
    "quantize": "emberllm.cli.quantize",
    "serve": "emberllm.edge_server.cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="emberllm", description="Local LLM inference for GGUF models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emberllm`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
