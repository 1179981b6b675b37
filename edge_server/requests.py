"""Request bodies: size-limited JSON reading and field checks that raise 400s naming the field."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.security import is_browser_request, is_json_content_type


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 415 when a browser sends it as another type, 413 past ``limit`` bytes, 400 for
    malformed JSON or a non-object."""
    check_json_content_type(request)
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(length) > limit:
            raise ApiError(413, f"request body of {length} bytes is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "request body is empty: expected a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON in request body: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}")
    return data


def check_json_content_type(request: Request) -> None:
    """415 for a body a browser sends as anything but JSON (``text/plain`` and form types need no CORS preflight,
    so a page must not be able to use them); other clients may send JSON under any type, as ``curl -d`` does."""
    content_type = request.headers.get("content-type")
    if is_browser_request(request.headers) and not is_json_content_type(content_type):
        got = repr(content_type) if content_type else "none"
        raise ApiError(415, f"unsupported Content-Type {got}: a request from a browser must send its JSON body "
                            "as application/json")


#: Generation fields of llama-server's and OpenAI's APIs that this server does not honour: a request that uses one is
#: answered 400 naming it rather than served as if the field were absent.  (``grammar``, ``json_schema`` and
#: ``response_format`` are honoured: ``structured.grammar_from``; ``tools``, ``tool_choice`` and
#: ``parallel_tool_calls`` too: ``tools.tool_request``.)  The deprecated ``functions`` / ``function_call`` are not:
#: send ``tools`` / ``tool_choice``.
NOT_SUPPORTED = {
    "functions": "the deprecated function calling is not supported; send \"tools\" instead",
    "function_call": "the deprecated function calling is not supported; send \"tool_choice\" instead "
                     "(only \"none\" is accepted here)",
}


#: Fields only ``/v1/chat/completions`` honours: elsewhere they are 400s too.
CHAT_ONLY = {
    "tools": "tool calling is only supported on /v1/chat/completions",
    "tool_choice": "tool calling is only supported on /v1/chat/completions; only \"none\" is accepted here",
}


def refuse_unsupported(data: dict[str, Any], chat: bool = False) -> None:
    """400 naming the first generation field the request really uses that this server cannot honour (empty or
    neutral values such as ``"functions": []`` and ``"function_call": "none"`` are accepted: they ask for
    nothing)."""
    refused = NOT_SUPPORTED if chat else {**NOT_SUPPORTED, **CHAT_ONLY}
    for name, why in refused.items():
        if _uses(name, data.get(name), data):
            raise ApiError(400, f"{name}: {why}")


#: The field whose value "none" forbids using what the key field offers.
_CHOICE_OF = {"tools": "tool_choice", "functions": "function_call"}


def _uses(name: str, value: Any, data: dict[str, Any]) -> bool:
    if value is None or value == "" or value == [] or value == {}:
        return False
    if name in _CHOICE_OF.values():
        return value != "none"
    if name in _CHOICE_OF:
        return data.get(_CHOICE_OF[name]) != "none"
    return True


def get_bool(data: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean field."""
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{name}: expected a boolean, got {value!r}")
    return value


def get_int(data: dict[str, Any], name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    """An integer field within ``[lo, hi]``."""
    value = data.get(name, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name}: expected an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def get_str(data: dict[str, Any], name: str) -> str:
    """A required string field."""
    if name not in data:
        raise ApiError(400, f"{name}: required field is missing")
    value = data[name]
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: expected a string, got {type(value).__name__}")
    return value


def get_stop(data: dict[str, Any], name: str = "stop") -> list[str]:
    """``stop``: a string or an array of strings (null or absent: none)."""
    value = data.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, f"{name}: expected a string or an array of strings")
    return [s for s in value if s]


def get_token_ids(data: dict[str, Any], name: str, n_vocab: int, required: bool = True) -> list[int]:
    """An array of token ids inside the vocabulary."""
    value = data.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"{name}: expected an array of token ids")
    for tok in value:
        if isinstance(tok, bool) or not isinstance(tok, int):
            raise ApiError(400, f"{name}: expected integer token ids, got {tok!r}")
        if not 0 <= tok < n_vocab:
            raise ApiError(400, f"{name}: token id {tok} is out of range (vocabulary of {n_vocab})")
    return value


#: A prompt as llama-server takes it: text, or one sequence mixing token ids and text (``prepare_prompt``
#: tokenizes the text pieces, BOS only before a leading one).
Prompt = str | list[int | str]


def get_prompts(data: dict[str, Any], n_vocab: int, name: str = "prompt") -> list[Prompt]:
    """llama-server's prompt forms: a string, ``{"prompt_string": ...}``, an array holding a number (one sequence
    of token ids and strings), or else an array of such prompts (a batch, one result each)."""
    if name not in data:
        raise ApiError(400, f"{name}: required field is missing")
    value = data[name]
    if isinstance(value, list) and not any(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if not value:
            raise ApiError(400, f"{name}: must not be empty")
        return [_one_prompt(v, n_vocab, f"{name}[{i}]") for i, v in enumerate(value)]
    return [_one_prompt(value, n_vocab, name)]


def get_prompt(data: dict[str, Any], n_vocab: int, name: str = "prompt") -> Prompt:
    """One prompt (``get_prompts``' forms; a batch of several is a 400 here)."""
    prompts = get_prompts(data, n_vocab, name)
    if len(prompts) != 1:
        raise ApiError(400, f"{name}: a batch of {len(prompts)} prompts is not supported here; send one")
    return prompts[0]


def _one_prompt(value: Any, n_vocab: int, name: str) -> Prompt:
    if isinstance(value, dict):
        if "multimodal_data" in value:
            raise ApiError(400, f"{name}.multimodal_data: this model has no multimodal projector")
        unknown = sorted(set(value) - {"prompt_string"})
        if unknown:
            raise ApiError(400, f"{name}.{unknown[0]}: not supported (a prompt object takes prompt_string)")
        value = value.get("prompt_string")
        if not isinstance(value, str):
            raise ApiError(400, f"{name}.prompt_string: expected a string")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            raise ApiError(400, f"{name}: expected a string, token ids or a mix of both, not an array of strings")
        ids = get_token_ids({name: [v for v in value if not isinstance(v, str)]}, name, n_vocab)
        it = iter(ids)
        return [v if isinstance(v, str) else next(it) for v in value]
    raise ApiError(400, f"{name}: expected a string, an array of token ids (strings may be mixed in) or "
                        "{\"prompt_string\": ...}")


def get_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``messages``: a non-empty array of objects with a string ``role`` and string / parts ``content``."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: expected a non-empty array of message objects")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ApiError(400, f"messages[{i}]: expected an object")
        if not isinstance(msg.get("role"), str):
            raise ApiError(400, f"messages[{i}].role: expected a string")
        content = msg.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ApiError(400, f"messages[{i}].content: expected a string or an array of content parts")
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{i}].content[{j}]: only text parts are supported")
    return messages
