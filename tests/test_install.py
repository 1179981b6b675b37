"""A plain (non-editable) install serves the chat page at ``/``.

How: the packaging inputs (pyproject.toml, setup.py, README.md, build_scripts/, core/, edge_server/, web/) are
copied to a temporary directory, so the build neither writes into the checkout nor sees its build/ folder; a
fresh venv is made with ``--system-site-packages --without-pip`` and the outer interpreter's pip (run by the
venv's python, so it installs into the venv) builds and installs that copy with ``--no-deps --no-build-isolation
--ignore-installed``.  The dependencies (starlette, uvicorn, cffi, jinja2) and the build tools (setuptools,
cffi) come from the system site-packages, so nothing is downloaded: the test works offline and takes about
30-60 s (compiling the C kernels dominates), where a clean venv installing from PyPI would take minutes and
need the network.  Without pip in the venv, the venv's own (old, bundled) setuptools cannot shadow the one the
build requires.  The venv's site-packages come before the system ones, so its ``emberllm`` is the installed
copy and not the checkout's editable one; the test checks that, then starts the venv's ``emberllm serve`` and
fetches ``/`` and ``/app.js``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server_fixtures import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
#: What a wheel is built from (see pyproject.toml and setup.py).
SOURCES = ["pyproject.toml", "setup.py", "README.md", "build_scripts", "core", "edge_server", "web"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.o", "node_modules")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding a regular (non-editable) install of this checkout; returns the venv's directory."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
                   check=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--ignore-installed", "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"pip install failed:\n{r.stdout}\n{r.stderr}"
    return env_dir


def test_installed_package_is_not_the_checkout(venv: Path) -> None:
    """The venv imports its own installed copy, and the chat page is inside it."""
    code = ("import emberllm.edge_server.app as a; print(a.__file__); print(a.DEFAULT_WEB_DIR)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True,
                         cwd=venv).stdout.split("\n")
    app_file, web_dir = Path(out[0]), Path(out[1])
    assert venv in app_file.parents, f"the venv imported {app_file}, not its installed copy"
    assert venv in web_dir.parents and (web_dir / "index.html").is_file()
    for page in (ROOT / "web").iterdir():
        assert (web_dir / page.name).read_bytes() == page.read_bytes(), f"{page.name} is not installed as is"


def test_installed_server_serves_the_chat_page(venv: Path, gemma_path: Path, tmp_path: Path) -> None:
    """``emberllm serve`` from the venv answers ``/`` with index.html and ``/app.js`` with the script."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(venv / "bin" / "emberllm"), "serve", "--port", str(port), "-m", str(gemma_path),
                                 "-t", "1", "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path)
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.text == (ROOT / "web" / "index.html").read_text()
        script = httpx.get(f"{url}/app.js", timeout=10)
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.content == (ROOT / "web" / "app.js").read_bytes()
    finally:
        stop(proc)
    assert "Traceback" not in log_path.read_text()
