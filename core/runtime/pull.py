"""Fetch a GGUF file into the model store: http(s) with resume, or a local copy; checked, then renamed into place.

A download goes to ``NAME.gguf.part`` beside its final name; a dropped connection is resumed with a ``Range``
request (within one call, and by the next call from the bytes a failed one left). The file is accepted only when
its size equals what the server announced, its sha256 matches (when given) and its GGUF header parses with every
tensor inside the file; only then is it renamed to ``NAME.gguf`` (atomically: a server reading the store never
sees half a file). A bad file is deleted; an interrupted one is kept for the next pull to resume.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:  # one pull per name at a time; fcntl is POSIX (Pyodide never pulls)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from emberllm.gguf.reader import MAGIC, GGUFError, GGUFFile
from emberllm.runtime.model_store import models_dir

__all__ = ["ProgressFn", "PullError", "model_file_name", "pull_model"]

#: ``progress(done_bytes, total_bytes or None, status)``; status is one of the ``STATUS_*`` texts below.
ProgressFn = Callable[[int, int | None, str], None]

STATUS_DOWNLOADING = "downloading"
STATUS_COPYING = "copying"
STATUS_VERIFY_SHA = "verifying sha256 digest"
STATUS_VERIFY_GGUF = "verifying GGUF header"
STATUS_SUCCESS = "success"

CHUNK = 1 << 20
#: Reconnections after a failed attempt (counted afresh whenever an attempt brought bytes) before a pull gives up.
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT_S = 30.0
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class PullError(Exception):
    """A pull failed: a bad source, an HTTP error, a truncated or corrupt file, a checksum mismatch."""


class _Interrupted(Exception):
    """The connection ended before the announced size: resume from what was received."""


def model_file_name(name: str) -> str:
    """``name`` (a store name, with or without ``.gguf``) as the store's file name; ``PullError`` if unsafe."""
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    if not _NAME_RE.fullmatch(stem) or stem.endswith((".part", ".lock")):
        raise PullError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (no path separators)")
    return f"{stem}.gguf"


def _source_name(source: str) -> str:
    """The store file name a source implies: the last segment of the URL's path or the file's name."""
    if _is_url(source):
        path = urllib.parse.urlsplit(source).path
        base = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    else:
        base = Path(source).name
    if not base:
        raise PullError(f"cannot tell a model name from {source!r}: give one with --name")
    try:
        return model_file_name(base)
    except PullError as exc:
        raise PullError(f"{exc} (taken from {source!r}; give another with --name)") from None


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme.lower() in ("http", "https", "file")


def pull_model(source: str, store_dir: str | os.PathLike[str] | None = None, sha256: str | None = None,
               name: str | None = None, progress: ProgressFn | None = None, *, retries: int = DEFAULT_RETRIES,
               timeout: float = DEFAULT_TIMEOUT_S, retry_delay: float = 1.0) -> Path:
    """Fetch ``source`` (an http(s)/file URL or a local path) into the store as ``NAME.gguf``; its final path.

    ``store_dir`` defaults to :func:`models_dir`; ``name`` to the source's file name. ``sha256`` (hex) is checked
    when given. A file already in the store whose digest equals ``sha256`` is not fetched again. A dropped
    connection is resumed up to ``retries`` times in a row (an attempt that brought bytes starts the count again),
    ``retry_delay`` seconds apart, doubling. Raises :class:`PullError` with a one-line reason.
    """
    store = Path(store_dir) if store_dir is not None else models_dir()
    file_name = model_file_name(name) if name else _source_name(source)
    expected = _normalise_digest(sha256)
    report: ProgressFn = progress or (lambda done, total, status: None)
    store.mkdir(parents=True, exist_ok=True)
    dest = store / file_name
    part = store / f"{file_name}.part"
    with _name_lock(store, file_name):
        if expected and dest.is_file() and _file_sha256(dest) == expected:
            size = dest.stat().st_size
            report(size, size, STATUS_SUCCESS)
            return dest
        url = source if _is_url(source) else None
        if url and urllib.parse.urlsplit(url).scheme.lower() != "file":
            digest = _download(url, part, report, retries=retries, timeout=timeout, retry_delay=retry_delay)
        else:
            digest = _copy(_local_path(source), part, report)
        _verify(part, digest, expected, report, source)
        os.replace(part, dest)
    size = dest.stat().st_size
    report(size, size, STATUS_SUCCESS)
    return dest


def _normalise_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise PullError(f"invalid sha256 {sha256!r}: expected 64 hex digits")
    return digest


def _local_path(source: str) -> Path:
    if _is_url(source):
        source = urllib.request.url2pathname(urllib.parse.urlsplit(source).path)
    path = Path(source).expanduser()
    if not path.is_file():
        raise PullError(f"no such file: {source}" if not path.exists() else f"{source} is not a file")
    return path


class _name_lock:
    """An exclusive, non-blocking lock on ``.NAME.lock`` in the store: two pulls of one name would share a part."""

    def __init__(self, store: Path, file_name: str) -> None:
        self.path = store / f".{file_name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                self.fd = None
                raise PullError(f"{self.path.name[1:-5]} is being pulled already (another pull holds its lock)") \
                    from None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock


# --------------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------------


def _copy(src: Path, part: Path, report: ProgressFn) -> str:
    """Copy a local file to ``part`` (no resume: it is local); its sha256."""
    total = src.stat().st_size
    h = hashlib.sha256()
    done = 0
    report(done, total, STATUS_COPYING)
    with open(src, "rb") as fin, open(part, "wb") as fout:
        while chunk := fin.read(CHUNK):
            if done == 0:
                _check_magic(chunk, str(src), part)
            fout.write(chunk)
            h.update(chunk)
            done += len(chunk)
            report(done, total, STATUS_COPYING)
        _sync(fout)
    return h.hexdigest()


def _download(url: str, part: Path, report: ProgressFn, *, retries: int, timeout: float,
              retry_delay: float) -> str:
    """Download ``url`` into ``part``, resuming from what it holds; its sha256 once complete."""
    state = _PartState(part)
    failures = 0
    validator: str | None = None
    while True:
        before = state.size
        try:
            validator = _fetch_once(url, state, report, timeout, validator)
            return state.hash.hexdigest()
        except _Interrupted as exc:
            reason = str(exc)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, a chunk cut short
            if isinstance(exc, urllib.error.HTTPError):
                raise  # pragma: no cover - _fetch_once turns these into PullError
            reason = _os_reason(exc)
        failures = 1 if state.size > before else failures + 1
        if failures > retries:
            raise PullError(f"download of {url} failed after {state.size:,} bytes: {reason} (the partial file "
                            f"{part.name} is kept: pull again to resume)")
        time.sleep(min(retry_delay * (2 ** max(failures - 1, 0)), 8.0))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


class _PartState:
    """The ``.part`` file's size and the running sha256 of its bytes."""

    def __init__(self, part: Path) -> None:
        self.path = part
        self.hash = hashlib.sha256()
        self.size = 0
        if part.is_file():
            with open(part, "rb") as f:
                while chunk := f.read(CHUNK):
                    if self.size == 0 and chunk[:4] != MAGIC:
                        break  # not the start of a GGUF file: fetch it all again
                    self.hash.update(chunk)
                    self.size += len(chunk)
            if self.size == 0:
                self.restart()

    def restart(self) -> None:
        """Forget the bytes held: the server will send the file from its start."""
        self.hash = hashlib.sha256()
        self.size = 0
        with open(self.path, "wb"):
            pass


def _fetch_once(url: str, state: _PartState, report: ProgressFn, timeout: float, validator: str | None) -> str | None:
    """One request: from ``state.size`` on (``Range``) when the part holds bytes; the response's validator."""
    headers = {"User-Agent": "emberllm-pull", "Accept-Encoding": "identity"}
    if state.size:
        headers["Range"] = f"bytes={state.size}-"
        if validator:
            headers["If-Range"] = validator  # the server sends the whole file (200) if it changed meanwhile
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and state.size:
            return _range_not_satisfiable(exc, state)
        if exc.code == 429 or exc.code >= 500:  # busy or failing for now: try again
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise PullError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with response:
        total = _response_total(response, state)
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified") or validator
        _receive(response, state, total, report, url)
    return validator


def _range_not_satisfiable(exc: urllib.error.HTTPError, state: _PartState) -> str | None:
    """A 416 for ``bytes=N-``: the part is complete when the file is N bytes long, else start again."""
    match = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
    if match and int(match.group(1)) == state.size:
        return None
    state.restart()
    raise _Interrupted("the server refused to resume (HTTP 416): starting again")


def _response_total(response: Any, state: _PartState) -> int | None:
    """The whole file's size the response announces; restarts the part when the server ignored ``Range``."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != state.size:
            state.restart()
            raise _Interrupted(f"the server answered a range other than bytes={state.size}-: starting again")
        return int(match.group(3)) if match.group(3) != "*" else None
    if state.size:
        state.restart()  # 200 to a Range request: the whole file comes again
    return int(length) if length is not None and length.isdigit() else None


def _receive(response: Any, state: _PartState, total: int | None, report: ProgressFn, url: str) -> None:
    """Append the body to the part; ``_Interrupted`` when it ends short of ``total``."""
    if total is not None and state.size > total:
        state.restart()
        raise _Interrupted(f"the partial file is larger than the file ({total:,} bytes): starting again")
    report(state.size, total, STATUS_DOWNLOADING)
    with open(state.path, "ab") as f:
        try:
            while chunk := response.read(CHUNK):
                if state.size == 0:
                    _check_magic(chunk, url, state.path)
                f.write(chunk)
                state.hash.update(chunk)
                state.size += len(chunk)
                report(state.size, total, STATUS_DOWNLOADING)
        finally:
            _sync(f)
    if total is not None and state.size < total:
        raise _Interrupted(f"connection closed at {state.size:,} of {total:,} bytes")
    if total is not None and state.size > total:
        raise PullError(f"{url}: received {state.size:,} bytes, more than the {total:,} announced")


def _check_magic(first: bytes, source: str, part: Path) -> None:
    """The first bytes must be GGUF's magic (an HTML login page is the usual culprit)."""
    if first[:4] != MAGIC[: len(first[:4])]:
        _remove(part)
        raise PullError(f"{source} is not a GGUF file: it starts with {first[:16]!r}, not {MAGIC!r} "
                        "(an error or login page?)")


def _sync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------


def _verify(part: Path, digest: str, expected: str | None, report: ProgressFn, source: str) -> None:
    """sha256 (when given) and a readable GGUF header with every tensor inside the file; a bad part is deleted."""
    size = part.stat().st_size
    if expected:
        report(size, size, STATUS_VERIFY_SHA)
        if digest != expected:
            _remove(part)
            raise PullError(f"sha256 mismatch for {source}: expected {expected}, got {digest} (file deleted)")
    report(size, size, STATUS_VERIFY_GGUF)
    try:
        with GGUFFile.open(part):
            pass
    except GGUFError as exc:
        _remove(part)
        message = str(exc).replace(f"{part}: ", "")
        raise PullError(f"{source} is not a usable GGUF file ({size:,} bytes): {message} (file deleted)") from None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, _HashWriter(h), CHUNK)
    return h.hexdigest()


class _HashWriter:
    """A file-like sink that feeds a hash (for ``shutil.copyfileobj``)."""

    def __init__(self, h: Any) -> None:
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return len(data)
