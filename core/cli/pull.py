"""``emberllm pull``: fetch a GGUF file (URL or path) into the model store, with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from emberllm.cli.common import fail
from emberllm.runtime.model_store import models_dir
from emberllm.runtime.pull import STATUS_COPYING, STATUS_DOWNLOADING, PullError, pull_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``pull``."""
    p = sub.add_parser("pull", help="fetch a GGUF model (http(s) URL or local path) into the model store")
    p.add_argument("source", metavar="URL|PATH", help="http(s):// or file:// URL, or a local GGUF file")
    p.add_argument("--sha256", default=None, metavar="HEX", help="expected sha256 of the file (checked; a "
                   "mismatch deletes the download)")
    p.add_argument("--name", default=None, help="store name (default: the source's file name without .gguf)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="model store folder (default: $EMBERLLM_CACHE/models, i.e. ~/.cache/emberllm/models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Pull, drawing progress on stderr; the stored path on stdout."""
    bar = ProgressBar(sys.stderr)
    try:
        path = pull_model(args.source, args.store or models_dir(), sha256=args.sha256, name=args.name,
                          progress=bar)
    except PullError as exc:
        bar.finish()
        return fail(str(exc))
    except OSError as exc:
        bar.finish()
        return fail(f"cannot write to the store: {exc}")
    bar.finish()
    print(path)
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class ProgressBar:
    """A one-line bar redrawn in place on a terminal; status lines and every tenth of the way elsewhere."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.first_done: int | None = None
        self.last_draw = 0.0
        self.last_status = ""
        self.last_tenth = -1
        self.open_line = False

    def __call__(self, done: int, total: int | None, status: str) -> None:
        """The ``progress`` callback of :func:`pull_model`."""
        transfer = status in (STATUS_DOWNLOADING, STATUS_COPYING)
        if self.first_done is None and transfer:
            self.first_done, self.start = done, time.monotonic()
        if status != self.last_status:
            self._line(f"{status}" + (f" (resuming at {_mb(done)})" if transfer and done else ""))
            self.last_status = status
        if not transfer:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw >= 0.1 or done == total:
                self.last_draw = now
                self.stream.write("\r" + self.render(done, total, now - self.start))
                self.stream.flush()
                self.open_line = True
        elif total:
            tenth = done * 10 // total
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                self._line(self.render(done, total, time.monotonic() - self.start))

    def render(self, done: int, total: int | None, elapsed: float) -> str:
        """``[#####     ]  50% 126.6/253.1 MB  80.2 MB/s  ETA 2s``."""
        rate = (done - (self.first_done or 0)) / elapsed if elapsed > 0 else 0.0
        speed = f"{rate / 1e6:6.1f} MB/s"
        if not total:
            return f"{_mb(done)}  {speed}"
        filled = self.WIDTH * done // total
        eta = f"ETA {int((total - done) / rate)}s" if rate > 0 and done < total else "       "
        return (f"[{'#' * filled}{' ' * (self.WIDTH - filled)}] {100 * done // total:3d}% "
                f"{done / 1e6:,.1f}/{_mb(total)}  {speed}  {eta}")

    def _line(self, text: str) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End an open bar line."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False
