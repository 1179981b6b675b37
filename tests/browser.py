"""What the browser tests share: Debian's Chromium and its flags, and build_scripts/build_site.py as a module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent


def build_site_module() -> Any:
    """build_scripts/build_site.py, imported by path (build_scripts is not a package)."""
    spec = importlib.util.spec_from_file_location("_emb_build_site", ROOT / "build_scripts" / "build_site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
