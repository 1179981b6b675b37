"""Ollama's model endpoints: ``GET /api/version``, ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``,
``POST /api/pull``, ``DELETE /api/delete``, ``POST /api/copy``.

Names are the server's (``models.py``: a file's stem or ``--alias``; ``NAME:latest`` means ``NAME``).  ``digest`` is
the sha256 of the file.  ``/api/pull`` fetches a local GGUF path or an http(s) URL into the models folder with the
model store's ``runtime.pull.pull_model`` (``emberllm pull``'s: resumed downloads, the GGUF header checked before the
file appears), reported as Ollama's NDJSON progress; ``insecure: true`` is a 400 (certificates are always checked).
``/api/delete`` and ``/api/copy`` work on files of that folder only (a ``-m`` file is not the server's to delete).
Model management needs a server with a models folder (``--models-dir``, or the store by default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from emberllm.chat.template import ChatTemplate
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.model_catalog import ModelInfo, model_name, read_arrays
from emberllm.edge_server.models import ModelEntry
from emberllm.edge_server.ollama_api import check_fields, ndjson
from emberllm.edge_server.requests import get_bool, read_json
from emberllm.edge_server.state import ServerState, server_of
from emberllm.runtime.model_store import remove_model
from emberllm.runtime.pull import STATUS_COPYING, STATUS_DOWNLOADING, PullError, model_file_name, pull_model

#: The Ollama API version this server answers as (``/api/version``; clients probe it).
OLLAMA_VERSION = "0.12.6"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def details(info: ModelInfo) -> dict[str, Any]:
    """Ollama's ``details`` of a model."""
    arch = info.architecture
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
            "parameter_size": info.parameter_size, "quantization_level": info.quantization}


async def _info(server: ServerState, name: str) -> ModelInfo:
    try:
        return await asyncio.to_thread(server.registry.info, name)
    except Exception as exc:  # noqa: BLE001 - a file in the folder that is not a model emberllm reads
        raise ApiError(500, f"model {name!r}: {type(exc).__name__}: {exc}") from exc


async def _entry(server: ServerState, name: str, path: Path) -> dict[str, Any] | None:
    try:
        info = await _info(server, name)
        digest = await asyncio.to_thread(server.registry.infos.digest, path)
    except ApiError:
        return None
    return {"name": name, "model": name, "modified_at": _iso(info.mtime), "size": info.size, "digest": digest,
            "details": details(info)}


async def version(request: Request) -> Response:
    """``GET /api/version``."""
    return JSONResponse({"version": OLLAMA_VERSION})


async def tags(request: Request) -> Response:
    """``GET /api/tags``: every model the server can run (files that are not readable models are left out)."""
    server = server_of(request)
    models = [e for name, path in server.registry.names().items() if (e := await _entry(server, name, path))]
    return JSONResponse({"models": models})


def _resolve(server: ServerState, data: dict[str, Any], field: str = "model") -> str:
    name = data.get(field)
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"{field} is required")
    found = server.registry.catalog.resolve(name) if server.registry.multi else (
        next(iter(server.registry.names())) if name in (*server.registry.names(), f"{server.config.model_name}:latest")
        else None)
    if found is None:
        raise ApiError(404, f"model '{name}' not found")
    return found


def capabilities(server: ServerState) -> list[str]:
    """What every model here can do through the API (``embedding`` only with ``--embedding``)."""
    caps = ["completion", "tools"]
    if server.config.embeddings:
        caps.append("embedding")
    return caps


async def show(request: Request) -> Response:
    """``POST /api/show``: ``details``, ``model_info`` (the GGUF metadata; arrays as null unless ``verbose``),
    ``capabilities``, the chat ``template`` (Jinja), ``parameters`` (its stop strings) and a ``modelfile``."""
    server = server_of(request)
    data = await read_json(request, server.config.max_body_bytes)
    check_fields(data, frozenset({"model", "name", "verbose", "system", "template", "options"}), "/api/show")
    for key in ("system", "template", "options"):
        if data.get(key):
            raise ApiError(400, f"{key}: not supported by /api/show")
    if "model" not in data and "name" in data:
        data["model"] = data["name"]
    name = _resolve(server, data)
    info = await _info(server, name)
    model_info: dict[str, Any] = dict(info.metadata)
    if get_bool(data, "verbose", False):
        model_info.update(await asyncio.to_thread(read_arrays, info.path))
    model_info["general.parameter_count"] = info.n_params
    entry = server.registry.entries.get(name)
    model = entry.worker.model if entry is not None and entry.worker is not None else None
    template = model.chat_template if model is not None else ChatTemplate.from_metadata(info.metadata,
                                                                                       server.config.chat_template)
    stops = [s for s in template.stop_strings if s]
    parameters = "".join(f'stop "{s}"\n' for s in stops)
    modelfile = (f"# Modelfile generated by emberllm\nFROM {info.path}\nTEMPLATE \"\"\"{template.template}\"\"\"\n"
                 + "".join(f"PARAMETER {line}\n" for line in parameters.splitlines()))
    body = {"license": str(info.metadata.get("general.license") or ""), "modelfile": modelfile,
            "parameters": parameters, "template": template.template, "details": details(info),
            "model_info": model_info, "capabilities": capabilities(server), "modified_at": _iso(info.mtime)}
    return JSONResponse(body)


async def ps(request: Request) -> Response:
    """``GET /api/ps``: the models loaded now, most recently used first, with when each will unload."""
    server = server_of(request)
    out = []
    for entry in server.registry.loaded():
        info = await _info(server, entry.name)
        model = entry.worker.model if entry.worker is not None else None
        out.append({"name": entry.name, "model": entry.name, "size": entry.memory or info.size,
                    "digest": await asyncio.to_thread(server.registry.infos.digest, entry.path),
                    "details": details(info), "expires_at": _expires_at(server, entry), "size_vram": 0,
                    "context_length": model.n_ctx if model is not None else 0})
    return JSONResponse({"models": out})


#: ``expires_at`` of a model that stays loaded.
FOREVER = "9999-12-31T23:59:59Z"


def _expires_at(server: ServerState, entry: ModelEntry) -> str:
    """When an idle model unloads (for one in use: its keep-alive counted from now)."""
    if entry.expires is not None:
        return _iso(entry.expires)
    keep = server.config.keep_alive_s if entry.keep_alive is None else entry.keep_alive
    if entry.pinned or keep < 0:
        return FOREVER
    return _iso(time.time() + keep)


def _store(server: ServerState) -> Path:
    folder = server.config.models_dir
    if folder is None:
        raise ApiError(400, "this server has no models folder: start it with --models-dir DIR (or without -m, to "
                            "serve the model store)")
    return folder


async def pull(request: Request) -> Response:
    """``POST /api/pull``: ``model`` is a local GGUF path or an http(s) URL, stored under its file name."""
    server = server_of(request)
    data = await read_json(request, server.config.max_body_bytes)
    check_fields(data, frozenset({"model", "name", "insecure", "stream"}), "/api/pull")
    source = data.get("model", data.get("name"))
    if not isinstance(source, str) or not source:
        raise ApiError(400, "model is required")
    if get_bool(data, "insecure", False):
        raise ApiError(400, "insecure: not supported, TLS certificates are always checked")
    store = _store(server)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int | None, str]] = asyncio.Queue()
    last = [0.0]

    def progress(done: int, total: int | None, status: str) -> None:
        now = time.monotonic()
        fetching = status in (STATUS_DOWNLOADING, STATUS_COPYING)
        if not fetching or now - last[0] >= 0.05 or done == total:
            last[0] = now
            loop.call_soon_threadsafe(queue.put_nowait, (done, total, status))

    task = asyncio.ensure_future(asyncio.to_thread(pull_model, source, store, progress=progress))
    if not get_bool(data, "stream", True):
        try:
            await task
        except PullError as exc:
            raise ApiError(400, str(exc)) from exc
        return JSONResponse({"status": "success"})
    return StreamingResponse(_pull_events(server, source, task, queue), media_type="application/x-ndjson")


async def _pull_events(server: ServerState, source: str, task: asyncio.Future[Path],
                       queue: asyncio.Queue[tuple[int, int | None, str]]) -> AsyncIterator[str]:
    """Ollama's pull progress: ``pulling manifest``, ``pulling SOURCE`` with ``completed`` / ``total``, the checks,
    ``verifying sha256 digest`` with the file's digest, ``writing manifest``, ``success`` (or ``{"error"}``)."""
    yield ndjson({"status": "pulling manifest"})
    while not task.done() or not queue.empty():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            continue
        done, total, status = getter.result()
        if status in (STATUS_DOWNLOADING, STATUS_COPYING):
            item: dict[str, Any] = {"status": f"pulling {source}", "digest": "", "completed": done}
            if total is not None:
                item["total"] = total
            yield ndjson(item)
        elif status != "success":
            yield ndjson({"status": status})
    try:
        path = task.result()
    except PullError as exc:
        yield ndjson({"error": str(exc)})
        return
    digest = await asyncio.to_thread(server.registry.infos.digest, path)
    yield ndjson({"status": "verifying sha256 digest", "digest": f"sha256:{digest}"})
    yield ndjson({"status": "writing manifest"})
    yield ndjson({"status": "success", "model": model_name(path)})


async def delete(request: Request) -> Response:
    """``DELETE /api/delete``: remove a model file of the models folder (unloading it first; 409 while in use)."""
    server = server_of(request)
    data = await read_json(request, server.config.max_body_bytes)
    check_fields(data, frozenset({"model", "name"}), "/api/delete")
    if "model" not in data and "name" in data:
        data["model"] = data["name"]
    store = _store(server)
    name = _resolve(server, data)
    path = server.registry.names()[name]
    if path.parent.resolve() != store.resolve() or name in server.config.models:
        raise ApiError(400, f"model '{name}' was given with -m: only files of the models folder can be deleted")
    entry = server.registry.entries.get(name)
    if entry is not None and entry.status != "unloaded":
        if entry.active:
            raise ApiError(409, f"model '{name}' is in use: try again once its requests have ended")
        await server.registry.unload(entry)
    await asyncio.to_thread(remove_model, path.name, store)  # with a partial download and pull's lock
    return JSONResponse({})


async def copy(request: Request) -> Response:
    """``POST /api/copy``: the model ``source`` also under the name ``destination`` (in the models folder)."""
    server = server_of(request)
    data = await read_json(request, server.config.max_body_bytes)
    check_fields(data, frozenset({"source", "destination"}), "/api/copy")
    store = _store(server)
    name = _resolve(server, data, "source")
    dest = data.get("destination")
    if not isinstance(dest, str) or not dest:
        raise ApiError(400, "destination is required")
    try:
        file_name = model_file_name(dest)
    except PullError as exc:
        raise ApiError(400, f"destination: {exc}") from exc
    if dest in server.registry.names() or (store / file_name).exists():
        raise ApiError(400, f"destination: a model named '{dest}' exists already")
    await asyncio.to_thread(_copy_file, server.registry.names()[name], store / file_name)
    return JSONResponse({})


def _copy_file(src: Path, dst: Path) -> None:
    """A copy of a model file under another name (a hard link where the file system allows)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
