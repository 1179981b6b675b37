"""llama-server's command line on ``emberllm serve``: the flags guides paste, with their meaning here, and the
``LLAMA_ARG_*`` environment variables.

A flag that has an equivalent does the same thing (``-ub`` is the micro-batch, ``--no-mmap`` reads the file into
memory, ``--chat-template-file`` reads a template); one that has no effect here is accepted with a one-line note at
start (``-fa``: attention already follows llama.cpp's flash-attention numerics).  ``-ngl`` and ``--device`` run
layers on WebGPU (``emberllm.runtime.offload``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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
    "cors_credentials": "LLAMA_ARG_CORS_CREDENTIALS", "context_shift": "LLAMA_ARG_CONTEXT_SHIFT",
    "embedding": "LLAMA_ARG_EMBEDDINGS", "pooling": "LLAMA_ARG_POOLING", "slots": "LLAMA_ARG_ENDPOINT_SLOTS",
    "rerank": "LLAMA_ARG_RERANKING",
    "cache_ram": "LLAMA_ARG_CACHE_RAM", "reasoning": "LLAMA_ARG_REASONING",
    "reasoning_format": "LLAMA_ARG_THINK", "reasoning_budget": "LLAMA_ARG_THINK_BUDGET",
    "chat_template_kwargs": "LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "cache_idle_slots": "LLAMA_ARG_CACHE_IDLE_SLOTS",
    "ui_mcp_proxy": "LLAMA_ARG_UI_MCP_PROXY", "kv_unified": "LLAMA_ARG_KV_UNIFIED",
    "sleep_idle_seconds": "LLAMA_ARG_SLEEP_IDLE_SECONDS",
    "cache_type_k": "LLAMA_ARG_CACHE_TYPE_K",
    "cache_type_v": "LLAMA_ARG_CACHE_TYPE_V",
}


#: llama-server switches accepted with a note: what they would change has no counterpart here.
NOTED_SWITCHES = {
    "--offline": "emberllm never downloads a model by itself",
    "--no-jinja": "chat templates always run as Jinja (the file's, or the built-in by architecture)",
    "--swa-full": "sliding-window layers keep the full context's rows already",
    "--no-mmproj": "no multimodal projector is ever loaded",
    "--backend-sampling": "sampling runs on the CPU after each forward pass",
}
#: llama-server options (with a value) accepted with a note.
NOTED_VALUES = {
    "--slot-save-path": "saving and restoring slots is not supported (/slots?action=save answers 501)",
    "--spec-type": "no speculative decoding", "--spec-draft-n-max": "no speculative decoding",
    "--spec-draft-n-min": "no speculative decoding", "--spec-synth-len": "no speculative decoding",
    "--spec-synth-rates": "no speculative decoding",
    "--tools": "no built-in server tools", "--tools-runtime": "no built-in server tools",
    "--mcp-servers-config": "no MCP servers", "--mcp-servers-json": "no MCP servers",
}
#: llama-server options refused: the feature they ask for is missing, and serving without it would mislead.
REFUSED = {
    "--lora": "LoRA adapters are not supported",
    "--model-draft": "speculative decoding with a draft model is not supported",
    "--mmproj": "multimodal input is not supported", "--mmproj-url": "multimodal input is not supported",
    "--media-path": "multimodal input is not supported",
}


def _dest(flag: str) -> str:
    return "noted_" + flag.lstrip("-").replace("-", "_")


def add_noted_flags(g: argparse._ArgumentGroup) -> None:
    """The switches and options of ``NOTED_SWITCHES``, ``NOTED_VALUES`` and ``REFUSED``."""
    for flag, why in NOTED_SWITCHES.items():
        names = [flag, "--backend_sampling"] if flag == "--backend-sampling" else [flag]
        g.add_argument(*names, dest=_dest(flag), action="store_true", help=f"accepted; {why}")
    for flag, why in NOTED_VALUES.items():
        g.add_argument(flag, dest=_dest(flag), default=None, metavar="VALUE", help=f"accepted; {why}")
    for flag, why in REFUSED.items():
        names = [flag, "-md"] if flag == "--model-draft" else [flag]
        g.add_argument(*names, dest=_dest(flag), action="append", default=None, metavar="VALUE",
                       help=f"refused: {why}")


def refused_flags(args: argparse.Namespace) -> None:
    """``ValueError`` for a ``REFUSED`` option given."""
    for flag, why in REFUSED.items():
        if getattr(args, _dest(flag), None):
            raise ValueError(f"{flag}: {why}")


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
    add_noted_flags(g)
    g.add_argument("-rea", "--reasoning", choices=["on", "off", "auto"], default="auto",
                   help="thinking in reasoning templates (Qwen3, QwQ, DeepSeek-R1, Command-R7B): the template's "
                        "enable_thinking (off: false; on/auto: true); a request's chat_template_kwargs or "
                        "reasoning_effort \"none\" overrides it (default: auto)")
    g.add_argument("--reasoning-format", choices=["none", "auto", "deepseek", "deepseek-legacy"], default="auto",
                   help="replies' reasoning: auto/deepseek put it in reasoning_content, deepseek-legacy also keeps "
                        "it in content, none leaves it in content (default: auto)")
    g.add_argument("--reasoning-budget", type=int, default=-1, metavar="N",
                   help="thinking token budget: only -1 (unrestricted) is supported")
    g.add_argument("--chat-template-kwargs", default=None, metavar="JSON",
                   help="extra variables for the chat template, a JSON object, e.g. '{\"enable_thinking\": false}'")
    g.add_argument("-kvu", "--kv-unified", action=argparse.BooleanOptionalAction, default=False, dest="kv_unified",
                   help="every slot may use the whole -c, all slots together at most -c tokens (past that, the busy "
                        "slots' requests fail with 500, as llama-server); the memory of -np caches of -c each is "
                        "reserved (default: off: each slot has -c/-np)")
    g.add_argument("--sleep-idle-seconds", type=int, default=-1, metavar="SECONDS",
                   help="unload the model after this many seconds without requests; the next request that needs it "
                        "(a generation, /tokenize...) loads it again, /health, /props, /models and /metrics do not "
                        "(default: -1, never)")
    g.add_argument("--slots", action=argparse.BooleanOptionalAction, default=True,
                   help="expose GET /slots (default: on; --no-slots answers 501 there, as llama-server)")
    g.add_argument("-cram", "--cache-ram", type=int, default=DEFAULT_CACHE_RAM_MIB, metavar="MIB",
                   help="host-RAM prompt cache: a slot's KV rows are copied there before a request that shares little "
                        "of them takes the slot, and restored for a later prompt that shares more (several "
                        f"conversations on few slots); -1: no limit, 0: off (default: {DEFAULT_CACHE_RAM_MIB}, as "
                        "llama-server, and at most a quarter of the memory available at start)")
    g.add_argument("--cache-idle-slots", action=argparse.BooleanOptionalAction, default=True,
                   help="with --kv-unified: copy idle slots to the prompt cache whenever a task starts and clear them, "
                        "giving their room back to the pool (without it a slot keeps its rows until a request takes "
                        "it, and they are copied then); needs --cache-ram (default: on)")


#: llama-server's default --cache-ram.
DEFAULT_CACHE_RAM_MIB = 8192


def add_cors_flags(p: argparse.ArgumentParser) -> None:
    """llama-server's ``--cors-*`` flags, with safer defaults (``security.py``, ``guard.py``)."""
    g = p.add_argument_group("browsers (CORS; llama-server's flags, safer defaults)")
    g.add_argument("--cors-origins", default="", metavar="ORIGINS", action=_OriginsAction,
                   help="comma-separated origins (scheme://host[:port]) whose pages may call the API from a browser, "
                        "'localhost' for any page on localhost/127.0.0.1/[::1], '*' for any site (default: none, "
                        "only the server's own origin, i.e. the chat page, or 'localhost' with --ui-mcp-proxy, "
                        "--tools or --mcp-servers-*; llama-server's default is '*'); a POST from another site's page "
                        "is answered 403 unless --api-key is set, which lets any origin reach the key check")
    g.add_argument("--cors-origin", dest="cors_origins", metavar="ORIGIN", action=_OriginsAction,
                   help="one origin for --cors-origins (repeatable; '*' allowed): --cors-origin https://a.example "
                        "--cors-origin http://localhost:5173")
    g.add_argument("--cors-methods", default=DEFAULT_CORS_METHODS, metavar="METHODS",
                   help=f"methods a preflight allows (default: {DEFAULT_CORS_METHODS})")
    g.add_argument("--cors-headers", default=DEFAULT_CORS_HEADERS, metavar="HEADERS",
                   help=f"request headers a preflight allows (default: {DEFAULT_CORS_HEADERS}, as llama-server; "
                        "browsers never let a lone '*' cover Authorization: send the key as X-Api-Key, or add "
                        "'Authorization, *')")
    g.add_argument("--ui-mcp-proxy", "--webui-mcp-proxy", action=argparse.BooleanOptionalAction, default=False,
                   dest="ui_mcp_proxy",
                   help="GET/POST /cors-proxy?url=... forwards a page's request to another server (llama-server's "
                        "MCP proxy; do not enable in untrusted environments; default: off, 403 there)")
    g.add_argument("--cors-credentials", action=argparse.BooleanOptionalAction, default=True,
                   help="send Access-Control-Allow-Credentials: true to allowed origins (default: on, as "
                        "llama-server); the API key needs no credentials")


class _OriginsAction(argparse.Action):
    """``--cors-origins``/``--cors-origin``: the values given on the command line add up (replacing the default
    an environment variable set)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        given = getattr(namespace, "_cors_origins_given", False)
        prior = getattr(namespace, self.dest, "") if given else ""
        setattr(namespace, self.dest, ",".join(v for v in (prior, str(values).strip()) if v))
        namespace._cors_origins_given = True


#: Flags after which llama-server limits the default ``--cors-origins`` to ``localhost`` (they open the server to
#: more than generation).
LOCALHOST_CORS_FLAGS = ("ui_mcp_proxy", "noted_tools", "noted_mcp_servers_config", "noted_mcp_servers_json")


def cors_policy(args: argparse.Namespace) -> CorsPolicy:
    """The ``--cors-*`` flags as a ``CorsPolicy`` (``ValueError`` naming the flag)."""
    origins = args.cors_origins
    if not getattr(args, "_cors_origins_given", False) and not origins \
            and any(getattr(args, dest, None) for dest in LOCALHOST_CORS_FLAGS):
        origins = "localhost"
    return CorsPolicy.parse(origins, args.cors_methods, args.cors_headers, args.cors_credentials)


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
    for flag, why in NOTED_SWITCHES.items():
        if getattr(args, _dest(flag), False):
            out.append(f"{flag}: {why}")
    for flag, why in NOTED_VALUES.items():
        if getattr(args, _dest(flag), None) is not None:
            out.append(f"{flag}: {why}")
    return out


def template_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--chat-template-kwargs`` as a dict (``ValueError`` naming the flag); ``--reasoning-budget`` checked."""
    if args.reasoning_budget != -1:
        raise ValueError("--reasoning-budget: only -1 (unrestricted) is supported")
    if args.chat_template_kwargs is None:
        return {}
    try:
        value = json.loads(args.chat_template_kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--chat-template-kwargs: not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("--chat-template-kwargs: expected a JSON object")
    return value


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
