"""The ``emberllm`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib import metadata

#: sub-command name -> module (each module has ``add_parser(subparsers)`` and ``run(args) -> int``).
COMMANDS = {
    "info": "emberllm.cli.info",
    "run": "emberllm.cli.run",
    "perplexity": "emberllm.cli.perplexity",
    "embed": "emberllm.cli.embed",
    "bench": "emberllm.cli.bench",
    "convert": "emberllm.cli.convert",
    "quantize": "emberllm.cli.quantize",
    "pull": "emberllm.cli.pull",
    "list": "emberllm.cli.listing",
    "rm": "emberllm.cli.remove",
    "serve": "emberllm.edge_server.cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="emberllm", description="Local LLM inference for GGUF models.")
    parser.add_argument("--version", action="version", version=f"emberllm {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name)
        module.add_parser(sub)
    return parser


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("emberllm")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is reported with the usage of the sub-command it was given to."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def log_to_stderr() -> None:
    """Show the engine's warnings (``emberllm`` logger) on stderr as ``warning: ...`` lines."""
    logger = logging.getLogger("emberllm")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LevelFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emberllm`` console script."""
    args = parse_args(build_parser(), argv)
    log_to_stderr()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
