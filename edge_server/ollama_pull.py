"""Pulling a model into the store for Ollama's ``/api/pull``: copy a local GGUF file, or download one over http(s),
into the models folder, checked as a GGUF before it appears under its name.

Minimal on purpose (no resume, no expected checksum): ``emberllm pull`` (the model store's command) is the full one.
The file is written as ``.NAME.gguf.part`` (hidden, so not listed) and renamed once complete and readable.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from emberllm.gguf.reader import GGUFFile

#: ``progress(completed, total or None)`` after each chunk.
Progress = Callable[[int, int | None], None]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
CHUNK = 1 << 20


class PullError(ValueError):
    """The source cannot be pulled (with the reason)."""


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL."""
    return source.startswith(("http://", "https://"))


def target_name(source: str) -> str:
    """The file name a source is stored as: its last path part, ``.gguf`` added when missing."""
    part = urllib.parse.urlparse(source).path if is_url(source) else source
    name = urllib.parse.unquote(part.rstrip("/").rsplit("/", 1)[-1])
    if not name.lower().endswith(".gguf"):
        name += ".gguf"
    if not _NAME.match(name):
        raise PullError(f"cannot name a model after {source!r}")
    return name


def pull_model(source: str, store_dir: Path, progress_cb: Progress, insecure: bool = False) -> tuple[Path, str]:
    """Copy or download ``source`` (a local path or an http(s) URL) into ``store_dir``; returns the file and its
    sha256 (hex).  ``PullError`` when it is not a readable GGUF file or cannot be fetched."""
    if not is_url(source) and not Path(source).expanduser().is_file():
        raise PullError(f"pull model manifest: file does not exist: {source!r} (give an http(s) URL or the path of a "
                        "GGUF file; Ollama's registry is not reachable from here)")
    store_dir.mkdir(parents=True, exist_ok=True)
    final = store_dir / target_name(source)
    part = store_dir / f".{final.name}.part"
    digest = hashlib.sha256()
    try:
        with open(part, "wb") as out:
            if is_url(source):
                _download(source, out, digest, progress_cb, insecure)
            else:
                _copy(Path(source).expanduser(), out, digest, progress_cb)
        try:
            GGUFFile.open(part).close()
        except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is not usable
            raise PullError(f"{source}: not a usable GGUF file: {exc}") from exc
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return final, digest.hexdigest()


def _copy(path: Path, out: object, digest: hashlib._Hash, progress_cb: Progress) -> None:
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            out.write(chunk)  # type: ignore[attr-defined]
            digest.update(chunk)
            done += len(chunk)
            progress_cb(done, total)


def _download(url: str, out: object, digest: hashlib._Hash, progress_cb: Progress, insecure: bool) -> None:
    context = ssl._create_unverified_context() if insecure else None  # noqa: S323 - asked for with "insecure"
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as resp:  # noqa: S310 - http(s) only
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := resp.read(CHUNK):
                out.write(chunk)  # type: ignore[attr-defined]
                digest.update(chunk)
                done += len(chunk)
                progress_cb(done, total)
    except (OSError, http.client.HTTPException) as exc:
        raise PullError(f"{url}: {exc}") from exc
    if total is not None and done != total:
        raise PullError(f"{url}: the download stopped at {done} of {total} bytes")


def copy_model(src: Path, dst: Path) -> None:
    """``/api/copy``: a copy of a model file under another name (a hard link when the file system allows)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def check_name(name: str, field: str) -> str:
    """A model name usable as a file name in the store (400-worthy ``PullError`` otherwise)."""
    if not _NAME.match(name) or name.endswith(".part"):
        raise PullError(f"{field}: invalid model name {name!r} (letters, digits, '.', '_', ':', '+', '-')")
    return name
