"""Ollama's request ``options`` and ``format`` -> emberllm's sampling fields, limits and grammar (400s naming the
option).

- Sampling options take Ollama's names and defaults (``temperature`` 0.8, ``top_k`` 40, ``top_p`` 0.9, ``min_p`` 0,
  ``repeat_penalty`` 1.1, ``repeat_last_n`` 64, ``seed`` -1 = random) and run through llama.cpp's sampler chain; a
  sampling flag given to ``emberllm serve`` (``--temp``, ``--top-p``, ...) replaces Ollama's default, as it replaces
  llama-server's on the other endpoints.
- ``num_predict``: tokens to generate (-1: until a stop; -2, "until the context is full", is the same here).
- ``stop``: stop strings, beside the chat template's.  ``num_keep``: tokens kept when a context shifts.
- ``num_ctx`` is honoured up to the server's context per slot (``-c`` / ``-np``): the prompt and the reply together
  stay within ``num_ctx`` tokens (a longer prompt is a 400, the reply stops with ``done_reason: "length"``); a
  larger ``num_ctx`` is a 400, since a slot cannot grow without reloading the model (start the server with a
  larger ``-c``).
- ``ACCEPTED_NO_EFFECT``: options about how Ollama's runner uses the machine, accepted and not used here.
- Any other option is a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emberllm.edge_server.errors import ApiError
from emberllm.grammar.json_schema import UnsupportedSchemaError, json_object_grammar, requested_schema_gbnf
from emberllm.sampling import SamplingParams

#: Ollama's sampling options that are llama-server's fields of the same name.
SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                    "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta", "seed")

#: Ollama's defaults where they differ from llama-server's.
OLLAMA_DEFAULTS: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                                   "repeat_penalty": 1.1, "repeat_last_n": 64}

#: Options accepted without effect, and why: they tune Ollama's runner, not what is generated.
ACCEPTED_NO_EFFECT = {
    "num_thread": "the server's -t threads are used",
    "num_gpu": "layers on the GPU are the server's -ngl",
    "main_gpu": "the server's --device is used",
    "num_batch": "the prompt micro-batch is the server's -b",
    "use_mmap": "the server's --no-mmap decides",
    "use_mlock": "the model is not locked in RAM",
    "numa": "no NUMA placement",
    "low_vram": "no effect on the CPU",
    "f16_kv": "the KV cache is F16",
    "vocab_only": "the whole model is loaded",
    "penalize_newline": "ignored by Ollama itself since 0.4",
}

#: Options handled outside the sampler.
LIMIT_OPTIONS = ("num_predict", "stop", "num_ctx", "num_keep")


@dataclass
class Options:
    """A request's options, checked."""

    sampling: dict[str, Any] = field(default_factory=dict)  # llama-server sampling fields
    n_predict: int = -1
    stop: list[str] = field(default_factory=list)
    num_ctx: int | None = None
    n_keep: int = 0


def parse_options(value: Any, server: SamplingParams | None = None) -> Options:
    """``options`` (an object or null); a sampling option it leaves out takes the server's sampling flag when one
    was given (``--temp``, ...: ``server`` differs from llama-server's default there), else Ollama's default."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ApiError(400, f"options: expected an object, got {type(value).__name__}")
    out = Options(sampling=dict(OLLAMA_DEFAULTS))
    if server is not None:
        base = SamplingParams()
        out.sampling.update({k: getattr(server, k) for k in OLLAMA_DEFAULTS if getattr(server, k) != getattr(base, k)})
    for name, v in value.items():
        if name in ACCEPTED_NO_EFFECT or v is None:
            continue
        if name in SAMPLING_OPTIONS:
            out.sampling[name] = v
        elif name == "num_predict":
            out.n_predict = _int(name, v, -2)
            if out.n_predict == -2:
                out.n_predict = -1
        elif name == "stop":
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise ApiError(400, "options.stop: expected an array of strings")
            out.stop = [s for s in v if s]
        elif name == "num_ctx":
            out.num_ctx = _int(name, v, 1)
        elif name == "num_keep":
            out.n_keep = _int(name, v, -1)
        else:
            raise ApiError(400, f"options.{name}: not supported by this server (supported: "
                                f"{', '.join(SAMPLING_OPTIONS + LIMIT_OPTIONS)}; accepted without effect: "
                                f"{', '.join(ACCEPTED_NO_EFFECT)})")
    return out


def embedding_options(value: Any) -> None:
    """``options`` of the embedding endpoints: only the accepted-without-effect ones (400 for any other)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ApiError(400, f"options: expected an object, got {type(value).__name__}")
    for name, v in value.items():
        if name not in ACCEPTED_NO_EFFECT and v is not None:
            raise ApiError(400, f"options.{name}: not supported by the embedding endpoints (accepted without "
                                f"effect: {', '.join(ACCEPTED_NO_EFFECT)})")


def _int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ApiError(400, f"options.{name}: expected an integer of at least {lo}, got {v!r}")
    return v


def format_grammar(value: Any) -> str:
    """``format``: ``"json"`` (any JSON value as Ollama: here any JSON object), a JSON schema object, or
    ``""``/null for free text; the GBNF grammar it needs (empty: none)."""
    if value is None or value == "":
        return ""
    if value == "json":
        return json_object_grammar()
    if not isinstance(value, dict):
        raise ApiError(400, f"format: expected \"json\" or a JSON schema object, got {value!r}")
    try:
        return requested_schema_gbnf(value)
    except UnsupportedSchemaError as exc:
        raise ApiError(400, f"format: {exc}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise ApiError(400, f"format: invalid JSON schema: {exc}") from exc
