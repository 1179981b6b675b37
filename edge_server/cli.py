"""``emberllm serve``: llama-server's and OpenAI's HTTP APIs for one model (Starlette + uvicorn).

llama-server's command line works too (``llama_flags.py``).  Every flag can also come from an environment variable,
``EMBERLLM_ARG_<LONG_FLAG>`` (upper case, ``-`` as ``_``: ``EMBERLLM_ARG_PORT=9000``, ``EMBERLLM_ARG_NO_WEBUI=1``)
or llama-server's ``LLAMA_ARG_*`` name (``LLAMA_ARG_CTX_SIZE``, ``LLAMA_API_KEY``); ``EMBERLLM_ARG_*`` wins over
``LLAMA_ARG_*``, and a flag on the command line wins over both.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from emberllm.cli.common import MODEL_HELP, USER_ERRORS, fail, resolve_model_path
from emberllm.cli.sampling_flags import add_sampling_flags, params_from_args
from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.embeddings import add_embedding_flags, check_embedding_flags
from emberllm.edge_server.gcp import gcp_settings
from emberllm.edge_server.llama_flags import (
    DEFAULT_CACHE_RAM_MIB,
    LLAMA_ENV,
    add_cors_flags,
    add_llama_server_flags,
    chat_template,
    cors_policy,
    micro_batch,
    notes,
    refused_flags,
    template_kwargs,
)
from emberllm.edge_server.model_flags import AppendAction, add_models_flags, models_config
from emberllm.runtime.model_store import models_dir

ENV_PREFIX = "EMBERLLM_ARG_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enabled"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "disabled", ""})


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve``."""
    p = sub.add_parser("serve", help="serve llama-server's and OpenAI's HTTP APIs",
                       description="HTTP server with llama-server's and OpenAI's APIs and the chat page.")
    p.add_argument("-m", "--model", action=AppendAction,
                   help=MODEL_HELP + "; repeat -m to serve several models by name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("-c", "--ctx-size", type=int, default=4096,
                   help="context size in tokens, shared by the slots (default: 4096; 0 = the model's trained "
                        "context; a slot's share beyond the trained context is capped at it with a warning)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt micro-batch size (default: 512)")
    p.add_argument("-np", "--parallel", type=int, default=1,
                   help="parallel slots: requests generated at the same time, each slot with -c/N tokens of context "
                        "(continuous batching; default: 1)")
    p.add_argument("-t", "--threads", type=int, default=None,
                   help="threads for the kernels (default: the cores, at most 8)")
    p.add_argument("--api-key", default=None,
                   help="require this key on the API (Authorization: Bearer KEY or X-Api-Key: KEY); /health, "
                        "/openapi.json and the chat page stay open; with a key, pages of any origin may call the API "
                        "(CORS preflights are answered for them; the key protects it)")
    p.add_argument("-a", "--alias", action=AppendAction,
                   help="model name reported by the API (default: the file name; with several -m, the name of the "
                        "-m at the same position, default its file name without .gguf)")
    p.add_argument("--tags", default=None, metavar="TAGS",
                   help="comma-separated labels /v1/models reports for the model (llama-server's)")
    p.add_argument("--chat-template", default=None,
                   help="chat template: a built-in's name, one of the model file's named templates, or Jinja text "
                        "(default: the file's own template, else the architecture's built-in)")
    p.add_argument("--no-webui", "--no-ui", action="store_true", help="do not serve the chat page at /")
    p.add_argument("--metrics", action="store_true", help="enable GET /metrics (Prometheus text)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20,
                   help="largest request body accepted, larger ones get 413 (default: 1 MiB)")
    p.add_argument("-to", "--timeout", type=float, default=600.0,
                   help="seconds a request may take, its wait in the queue included, before its generation is "
                        "stopped (default: 600)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot (a new request waits until the engine picks it up); "
                        "more get 503 with Retry-After; 0 refuses every generation (default: 64)")
    p.add_argument("-n", "--n-predict", type=int, default=-1,
                   help="tokens a request that sets no n_predict/max_tokens generates, as llama-server's -n "
                        "(default: -1, until the end of generation or the context)")
    p.add_argument("--truncate-prompts", action="store_true",
                   help="cut prompts that do not fit in a slot's context the way llama-server does instead of "
                        "answering 400 (a request can also send \"truncate\": true|false)")
    p.add_argument("-v", "--verbose", "--log-verbose", action="store_true",
                   help="as llama-server's: non-streamed OpenAI responses carry __verbose (the native result, with "
                        "the prompt as tokenized); a request can also send \"verbose\": true")
    p.add_argument("--context-shift", action=argparse.BooleanOptionalAction, default=False,
                   help="as llama-server's: when a slot's context fills while generating, keep n_keep tokens (and "
                        "BOS), drop half of the rest (or the request's n_discard) and go on; /v1/chat/completions "
                        "also leaves out a conversation's oldest turns when it does not fit (header X-Messages-Dropped)"
                        ". Off (default): generation stops at the context's end (finish_reason \"length\", "
                        "truncated) and a prompt that does not fit is a 400 exceed_context_size_error")
    p.add_argument("--web-dir", default=None,
                   help="directory of the web UI (default: the chat page installed with emberllm)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: info)")
    add_cors_flags(p)
    add_llama_server_flags(p)
    add_sampling_flags(p)
    add_embedding_flags(p)
    add_models_flags(p)
    apply_env_defaults(p)
    p.set_defaults(func=run)
    return p


def apply_env_defaults(p: argparse.ArgumentParser, environ: dict[str, str] | None = None) -> None:
    """Take each option's default from its environment variable: llama-server's ``LLAMA_ARG_*`` name, then
    ``EMBERLLM_ARG_<LONG_FLAG>`` (which wins)."""
    env = os.environ if environ is None else environ
    for action in p._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest == "help":
            continue
        for name in (LLAMA_ENV.get(action.dest), ENV_PREFIX + longs[0][2:].upper().replace("-", "_")):
            if name is not None and name in env:
                _env_default(p, action, name, env[name])


def _env_default(p: argparse.ArgumentParser, action: argparse.Action, name: str, raw: str) -> None:
    if isinstance(action, argparse._StoreTrueAction | argparse.BooleanOptionalAction):
        word = raw.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            p.error(f"{name}: expected a boolean, got {raw!r}")
        p.set_defaults(**{action.dest: word in TRUE_WORDS})
        return
    try:
        value = action.type(raw) if callable(action.type) else raw
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        p.error(f"{name}: invalid value {raw!r}")
    if action.choices is not None and value not in action.choices:
        p.error(f"{name}: must be one of {', '.join(map(str, action.choices))}")
    p.set_defaults(**{action.dest: value})


def prompt_cache_bytes(mib: int) -> int:
    """``--cache-ram`` in bytes: 0 off, -1 no limit (a quarter of the available memory bounds the default)."""
    from emberllm.backends.memory import available_memory_bytes

    if mib == 0:
        return 0
    if mib < 0:
        return 1 << 62
    want = mib << 20
    if mib == DEFAULT_CACHE_RAM_MIB and (free := available_memory_bytes()):
        return min(want, free // 4)
    return want


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Check the flags and turn them into a ``ServerConfig`` (``ValueError`` names the bad flag)."""
    checks = [
        (args.port is not None and not 0 <= args.port <= 65535, "--port must be between 0 and 65535"),
        (args.ctx_size < 0, "-c/--ctx-size must be 0 (the model's trained context) or a positive size"),
        (args.batch_size < 1, "-b/--batch-size must be at least 1"),
        (args.parallel < 1, "-np/--parallel must be at least 1"),
        (args.parallel > 64, "-np/--parallel must be at most 64"),
        (args.threads is not None and args.threads < 1, "-t/--threads must be at least 1"),
        (args.max_body_bytes < 1, "--max-body-bytes must be at least 1"),
        (not args.timeout > 0, "-to/--timeout must be positive"),
        (args.max_queue < 0, "--max-queue must be at least 0"),
        (args.n_predict < -1, "-n/--n-predict must be -1 (no limit) or at least 0"),
        (args.cache_ram < -1, "--cache-ram must be -1 (no limit), 0 (off) or a size in MiB"),
        (args.sleep_idle_seconds == 0 or args.sleep_idle_seconds < -1,
         "--sleep-idle-seconds must be -1 (never) or at least 1"),
        (args.flash_attn == "off" and args.cache_type_v in ("q8_0", "q4_0"),
         f"quantized V cache (-ctv {args.cache_type_v}) requires flash attention: -fa on or auto (as llama-server)"),
    ]
    for bad, message in checks:
        if bad:
            raise ValueError(message)
    check_embedding_flags(args)
    refused_flags(args)
    several = models_config(args, models_dir())
    if not several["multi_model"]:
        several = {"model_path": resolve_model_path(several["model_arg"]), "alias": several["alias"]}
    elif args.sleep_idle_seconds > 0:
        raise ValueError("--sleep-idle-seconds applies to one model; with several, --keep-alive (or a request's "
                         "keep_alive) unloads an idle model")
    return ServerConfig(n_ctx=args.ctx_size, n_threads=args.threads, n_batch=micro_batch(args),
                        n_parallel=args.parallel, kv_unified=args.kv_unified,
                        sleep_idle_s=args.sleep_idle_seconds if args.sleep_idle_seconds > 0 else None,
                        prompt_cache_bytes=prompt_cache_bytes(args.cache_ram),
                        cache_idle_slots=args.cache_idle_slots and args.cache_ram != 0 and args.kv_unified,
                        api_key=args.api_key or None, **several,
                        chat_template=chat_template(args), webui=not args.no_webui, metrics=args.metrics,
                        use_mmap=not args.no_mmap, n_gpu_layers=args.n_gpu_layers, device=args.device,
                        cache_type_k=args.cache_type_k, cache_type_v=args.cache_type_v,
                        max_body_bytes=args.max_body_bytes, timeout_s=args.timeout, max_queue=args.max_queue,
                        n_predict_max=args.n_predict, truncate_prompts=args.truncate_prompts,
                        context_shift=args.context_shift, verbose=args.verbose, sampling=params_from_args(args),
                        slots_endpoint=args.slots, reasoning=args.reasoning,
                        reasoning_format=args.reasoning_format, chat_template_kwargs=template_kwargs(args),
                        web_dir=Path(args.web_dir) if args.web_dir else None, cors=cors_policy(args),
                        embeddings=args.embedding, pooling=args.pooling, embd_normalize=args.embd_normalize,
                        rerank=args.rerank, tags=sorted({t.strip() for t in (args.tags or "").split(",") if t.strip()}),
                        ui_mcp_proxy=args.ui_mcp_proxy)


def run(args: argparse.Namespace) -> int:
    """Check the flags, the model's header and the port, then serve until stopped; exit code 1 with one
    ``error:`` line when any of them is wrong or the model then fails to load (as llama-server exits)."""
    from emberllm.runtime.model import check_model_file

    try:
        config = config_from_args(args)
        if config.model_path is not None:
            n_ctx_slot = check_model_file(config.model_path, config.model_n_ctx, config.n_parallel,
                                          config.cache_type_k, config.cache_type_v)
            config = replace(config, n_ctx=n_ctx_slot * (1 if config.kv_unified else config.n_parallel))
        for path in config.models.values():
            check_model_file(path, config.model_n_ctx, config.n_parallel, config.cache_type_k, config.cache_type_v)
        hosts = [h.strip() for h in args.host.split(",") if h.strip()] or ["127.0.0.1"]
        vertex = gcp_settings()
        if vertex.enabled and vertex.port is not None and vertex.port != args.port:
            print(f"note: AIP_MODE=PREDICTION: AIP_HTTP_PORT {vertex.port} replaces --port {args.port}",
                  file=sys.stderr)
            args.port = vertex.port
        for host in hosts:
            check_port_free(host, args.port)
    except USER_ERRORS as exc:
        return fail(" ".join(str(exc).split()))
    for line in notes(args):
        print(f"note: {line}", file=sys.stderr)
    if config.verbose and config.cache_idle_slots:
        what = "saved to the prompt cache and cleared" if config.kv_unified else "saved to the prompt cache"
        print(f"emberllm: idle slots are {what} when a task starts __TEST_TAG_CACHE_IDLE_SLOTS_ENABLED__",
              file=sys.stderr, flush=True)
    if config.cors.any_origin and config.api_key is None:
        print("warning: security: --cors-origins '*' without --api-key lets any web site you visit use this server",
              file=sys.stderr)
    import uvicorn

    from emberllm.edge_server.app import build_app

    app = build_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=hosts[0], port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=5))
    app.state.server.on_load_failure = lambda _error: setattr(server, "should_exit", True)
    where = ", ".join(f"http://{f'[{h}]' if ':' in h else h}:{args.port}" for h in hosts)
    print(f"emberllm serve: {_serving(config)} on {where}", flush=True)
    # several --host addresses (llama-server's comma list): one listening socket each, one server
    server.run(sockets=[listen_socket(h, args.port) for h in hosts] if len(hosts) > 1 else None)
    load_error = app.state.server.registry.load_error
    if load_error:
        return fail(f"model failed to load: {' '.join(load_error.split())}")
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _serving(config: ServerConfig) -> str:
    """What the start-up line says is served."""
    if config.model_path is not None:
        return str(config.model_path)
    parts = [*config.models] + ([f"the models in {config.models_dir}"] if config.models_dir is not None else [])
    return "models " + ", ".join(parts)


def check_port_free(host: str, port: int) -> None:
    """``OSError`` with a clear message when ``host:port`` cannot be listened on (another server has it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(f"port {port} on {host} is already in use (another server?): stop it or pick "
                              "another --port") from exc
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
