"""llama-server's command line on ``emberllm serve``: the flags guides paste, with their meaning here, and the
``LLAMA_ARG_*`` environment variables.

A flag that has an equivalent does the same thing (``-ub`` is the micro-batch, ``--no-mmap`` reads the file into
memory, ``--chat-template-file`` reads a template); one that has no effect here is accepted with a one-line note at
start (``-fa``: attention already follows llama.cpp's flash-attention numerics).  ``-ngl`` and ``--device`` run
layers on WebGPU (``emberllm.runtime.offload``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emberllm.cli.common import add_cache_type_flags, add_gpu_flags
from emberllm.edge_server.security import DEFAULT_CORS_HEADERS, DEFAULT_CORS_METHODS, CorsPolicy

#: llama-server's environment variable for each ``serve`` option (by dest); ``EMBERLLM_ARG_*`` wins over these.
LLAMA_ENV = {
    "model": "LLAMA_ARG_MODEL", "host": "LLAMA_ARG_HOST", "port": "LLAMA_ARG_PORT", "ctx_size": "LLAMA_ARG_CTX_SIZE",
    "batch_size": "LLAMA_ARG_BATCH", "ubatch_size": "LLAMA_ARG_UBATCH", "parallel": "LLAMA_ARG_N_PARALLEL",
    "threads": "LLAMA_ARG_THREADS", "api_key": "LLAMA_API_KEY", "alias": "LLAMA_ARG_ALIAS",
    "chat_template": "LLAMA_ARG_CHAT_TEMPLATE", "chat_template_file": "LLAMA_ARG_CHAT_TEMPLATE_FILE",
    "n_predict": "LLAMA_ARG_N_PREDICT", "timeout": "LLAMA_ARG_TIMEOUT", "metrics": "LLAMA_ARG_ENDPOINT_METRICS",
    "n_gpu_layers": "LLAMA_ARG_N_GPU_LAYERS", "flash_attn": "LLAMA_ARG_FLASH_ATTN", "jinja": "LLAMA_ARG_JINJA",
    "cont_batching": "LLAMA_ARG_CONT_BATCHING", "cors_origins": "LLAMA_ARG_CORS_ORIGINS",
    "cors_methods": "LLAMA_ARG_CORS_METHODS", "cors_headers": "LLAMA_ARG_CORS_HEADERS",
    "cors_credentials": "LLAMA_ARG_CORS_CREDENTIALS", "cache_type_k": "LLAMA_ARG_CACHE_TYPE_K",
    "cache_type_v": "LLAMA_ARG_CACHE_TYPE_V",
}


def add_llama_server_flags(p: argparse.ArgumentParser) -> None:
    """The llama-server flags ``serve`` takes beside its own (see the module doc)."""
    g = p.add_argument_group("llama-server compatibility")
    g.add_argument("-ub", "--ubatch-size", type=int, default=None,
                   help="physical batch as in llama-server: the prompt micro-batch is min(-b, -ub)")
    g.add_argument("--chat-template-file", default=None, help="read the Jinja chat template from this file")
    g.add_argument("--no-mmap", action="store_true", help="read the model into memory instead of mapping the file")
    add_gpu_flags(g)
    add_cache_type_flags(g)
    g.add_argument("-fa", "--flash-attn", nargs="?", const="on", default=None, choices=["on", "off", "auto"],
                   help="accepted; attention follows llama.cpp's flash-attention numerics either way")
    g.add_argument("-tb", "--threads-batch", type=int, default=None,
                   help="accepted; prompts use the -t threads too")
    g.add_argument("--mlock", action="store_true", help="accepted; the model is not locked in RAM")
    g.add_argument("--jinja", action="store_true", help="accepted; chat templates always run as Jinja")
    g.add_argument("-cb", "--cont-batching", action="store_true", help="accepted; continuous batching is always on")


def add_cors_flags(p: argparse.ArgumentParser) -> None:
    """llama-server's ``--cors-*`` flags, with safer defaults (``security.py``, ``guard.py``)."""
    g = p.add_argument_group("browsers (CORS; llama-server's flags, safer defaults)")
    g.add_argument("--cors-origins", default="", metavar="ORIGINS",
                   help="comma-separated origins (scheme://host[:port]) whose pages may call the API from a browser, "
                        "'localhost' for any page on localhost/127.0.0.1/[::1], '*' for any site (default: none, "
                        "only the server's own origin, i.e. the chat page; llama-server's default is '*'); a POST "
                        "from another site's page is answered 403 unless --api-key is set")
    g.add_argument("--cors-methods", default=DEFAULT_CORS_METHODS, metavar="METHODS",
                   help=f"methods a preflight allows (default: {DEFAULT_CORS_METHODS})")
    g.add_argument("--cors-headers", default=DEFAULT_CORS_HEADERS, metavar="HEADERS",
                   help=f"request headers a preflight allows (default: {DEFAULT_CORS_HEADERS}; a lone '*', "
                        "llama-server's default, does not cover Authorization)")
    g.add_argument("--cors-credentials", action=argparse.BooleanOptionalAction, default=False,
                   help="send Access-Control-Allow-Credentials: true to allowed origins (default: off; "
                        "llama-server's default is on); the API key needs no credentials")


def cors_policy(args: argparse.Namespace) -> CorsPolicy:
    """The ``--cors-*`` flags as a ``CorsPolicy`` (``ValueError`` naming the flag)."""
    return CorsPolicy.parse(args.cors_origins, args.cors_methods, args.cors_headers, args.cors_credentials)


def notes(args: argparse.Namespace) -> list[str]:
    """One line for each llama-server flag given that has no effect here."""
    out = []
    if args.flash_attn is not None:
        out.append(f"-fa {args.flash_attn}: attention already follows llama.cpp's flash-attention numerics")
    if args.threads_batch is not None:
        out.append(f"-tb {args.threads_batch}: prompts use the -t threads")
    if args.mlock:
        out.append("--mlock: not supported, the model is not locked in RAM")
    if args.jinja:
        out.append("--jinja: chat templates always run as Jinja")
    if args.cont_batching:
        out.append("--cont-batching: continuous batching is always on")
    return out


def micro_batch(args: argparse.Namespace) -> int:
    """The prompt micro-batch: ``-b``, or ``-ub`` when that is smaller (llama-server's physical batch)."""
    if args.ubatch_size is not None and args.ubatch_size < 1:
        raise ValueError("-ub/--ubatch-size must be at least 1")
    return args.batch_size if args.ubatch_size is None else min(args.batch_size, args.ubatch_size)


def chat_template(args: argparse.Namespace) -> str | None:
    """``--chat-template`` or the text of ``--chat-template-file`` (``ValueError`` when both or unreadable)."""
    if args.chat_template_file is None:
        return args.chat_template
    if args.chat_template:
        raise ValueError("give --chat-template or --chat-template-file, not both")
    try:
        return Path(args.chat_template_file).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--chat-template-file {args.chat_template_file}: {exc}") from exc
