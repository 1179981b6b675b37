"""Every shell and Python example in README.md, run as a newcomer pastes it, so the README cannot drift.

The fenced ``bash`` and ``python`` blocks run in document order, in a temporary copy of the repository (so relative
paths resolve as in a clone and nothing is written into this checkout), against the README's main job: the set-up
block's ``bash build_scripts/run.sh``, started from this checkout as a user starts it.  Port 8080 (the main job)
and 8081 (the README's second server) are replaced by free ports.  A shell block runs with ``set -euo pipefail``
and ``curl`` failing on HTTP errors, so every command in it must succeed.

A comment ``<!-- example: KIND (reason) -->`` just above a fence says how to treat it: ``setup`` (the block with the
two set-up commands: ``run.sh`` is the server the examples talk to, ``test.sh`` is what runs this test) or ``skip``
(with the reason, e.g. code for a browser).  Lines ``pip install ...`` are not re-run (``test.sh`` installed the
``test`` extra, which holds every package of the extras they name); the extras they name must exist.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server_fixtures import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAIN_PORT, SECOND_PORT = 8080, 8081
MARKER = re.compile(r"<!--\s*example:\s*(\w+)\s*(?:\((.*)\))?\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
#: Prepended to every shell block: fail on any error, curl fails on HTTP errors, background servers are stopped.
SHELL_PRELUDE = """set -euo pipefail
curl() {
    local a
    for a in "$@"; do
        if [[ $a =~ ^-[a-zA-Z]*f[a-zA-Z]*$ || $a == --fail* ]]; then command curl "$@"; return; fi
    done
    command curl -sS --fail-with-body "$@"
}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
"""
#: Seconds one example may run.
EXAMPLE_TIMEOUT_S = 300


@dataclass
class Example:
    """One fenced block of the README."""

    lang: str
    code: str
    line: int
    kind: str = "run"
    reason: str = ""

    @property
    def id(self) -> str:
        """``README.md:LINE-lang``, for test ids."""
        return f"README.md:{self.line}-{self.lang or 'text'}"


def readme_examples(text: str) -> list[Example]:
    """The fenced blocks of ``text`` with the kind their marker comment gives (``run`` when none)."""
    examples: list[Example] = []
    lines = text.splitlines()
    i = 0
    marker: re.Match[str] | None = None
    while i < len(lines):
        if m := MARKER.fullmatch(lines[i].strip()):
            marker = m
        elif m := FENCE.match(lines[i]):
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            ex = Example(m.group(1), "\n".join(body) + "\n", start + 1)
            if marker is not None:
                ex.kind, ex.reason = marker.group(1), (marker.group(2) or "").strip()
            examples.append(ex)
            marker = None
        elif lines[i].strip():
            marker = None  # a marker applies only to the fence right after it
        i += 1
    return examples


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))
RUNNABLE = [e for e in EXAMPLES if e.kind == "run" and e.lang in ("bash", "sh", "python")]


def test_every_block_is_run_or_says_why_not():
    assert len(RUNNABLE) >= 8
    for ex in EXAMPLES:
        assert ex.kind in ("run", "setup", "skip"), f"{ex.id}: unknown kind {ex.kind!r}"
        if ex.kind == "skip":
            assert ex.reason, f"{ex.id}: a skipped example must say why"
        elif ex.kind == "run":
            assert ex.lang in ("bash", "sh", "python"), f"{ex.id}: ```{ex.lang} blocks need a skip marker with a reason"
    setup = [e for e in EXAMPLES if e.kind == "setup"]
    assert len(setup) == 1 and setup[0].code.splitlines() == [
        line for line in setup[0].code.splitlines() if line.startswith(("bash build_scripts/run.sh",
                                                                         "bash build_scripts/test.sh"))]


def test_pip_install_lines_name_existing_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = [e for ex in RUNNABLE for e in pip_extras(ex.code)]
    assert named, "the README shows no pip install line"
    for extra in named:
        assert extra in extras, f"README installs .[{extra}], which pyproject.toml does not define"
        missing = {_req_name(r) for r in extras[extra]} - {_req_name(r) for r in extras["test"]}
        assert not missing, f"the test extra lacks {missing} of .[{extra}], so the README test would not cover it"


def pip_extras(code: str) -> list[str]:
    """The extras named by ``pip install -e ".[a,b]"`` lines (an empty string for a plain ``.``)."""
    found = []
    for line in code.splitlines():
        if line.strip().startswith("pip install"):
            m = re.search(r"\.\[([\w,-]+)\]", line)
            found += m.group(1).split(",") if m else []
    return found


def _req_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


# -- running the examples --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ports() -> dict[int, int]:
    return {MAIN_PORT: free_port(), SECOND_PORT: free_port()}


@pytest.fixture(scope="module")
def main_job(ports: dict[int, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The set-up block's ``run.sh``, started from this checkout with its port moved (``EMBERLLM_ARG_PORT``)."""
    setup = next(e for e in EXAMPLES if e.kind == "setup")
    command = next(line for line in setup.code.splitlines() if "run.sh" in line).split("#")[0].strip()
    log = tmp_path_factory.mktemp("main-job") / "run.log"
    env = dict(os.environ, EMBERLLM_ARG_PORT=str(ports[MAIN_PORT]), PYTHON=sys.executable)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, shell=True, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{ports[MAIN_PORT]}"
    try:
        wait_healthy(url, proc, log, timeout_s=300)
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()  # the chat page
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's files (tracked and untracked-not-ignored), plus a stand-in for the README's
    Hugging Face download: a tiny random Llama with a trained BPE tokenizer in ``./SmolLM2-135M``."""
    dest = tmp_path_factory.mktemp("readme") / "emberllm"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    from tests.test_model_families import _train_bpe_tokenizer, build_model

    hf_dir = dest / "SmolLM2-135M"
    fast = _train_bpe_tokenizer(hf_dir)
    build_model("llama", hf_dir, vocab=len(fast))
    return dest


def localize(code: str, ports: dict[int, int]) -> str:
    """The example with its ports moved and its ``pip install`` lines (checked above) left out."""
    for readme_port, port in ports.items():
        code = re.sub(rf"\b{readme_port}\b", str(port), code)
    return "\n".join(": pip install done by test.sh" if line.strip().startswith("pip install") else line
                     for line in code.splitlines()) + "\n"


def run_in_own_session(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new session and, however it ends, stop whatever it left running there (a server started
    with ``&``)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=EXAMPLE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        err += f"\n[timed out after {EXAMPLE_TIMEOUT_S} s]"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.id)
def test_readme_example(example: Example, main_job: str, workdir: Path, ports: dict[int, int]) -> None:
    code = localize(example.code, ports)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("EMBERLLM_ARG_PORT", None)
    if example.lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-c", SHELL_PRELUDE + code]
    proc = run_in_own_session(cmd, workdir, env)
    report = (f"{example.id} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
              f"--- stderr\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stderr, report
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")], report
