"""Deployment hardening of the built chat site (issue 16), in headless Chromium against a tmp build of ``web/``.

The service worker serves nothing from its cache that fails the sha256 recorded in ``site.json`` (itself checked
against the hash in ``sw.js``), never gives this build's files to another app later served on the same port, and
caches nothing at all in the unbuilt ``web/``; the page boots the in-browser engine (Pyodide + the wheel) and chats
under its Content-Security-Policy.  That policy refuses string eval, which Playwright's ``wait_for_function``
uses for a predicate given as an expression, so these tests poll with ``evaluate`` (DevTools' own evaluations
are exempt from the CSP, so the probes of eval run it from a timer).  Needs ``/usr/bin/chromium``, Python
``playwright``, npm (for Pyodide) and the WASM toolchain; skips with the reason when one is missing.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emberllm.edge_server.security import CONTENT_SECURITY_POLICY

from .browser import CHROMIUM, FLAGS, build_site_module

ROOT = Path(__file__).resolve().parent.parent
# the page's <meta> policy: emberllm serve's header (one constant) less frame-ancestors, which a <meta> cannot carry
CSP = CONTENT_SECURITY_POLICY.replace("; frame-ancestors 'none'", "")
HOST_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}  # as web/README.md and emberllm serve

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")


# eval from a task of the page's own (DevTools' evaluations themselves are exempt from the CSP)
EVAL_PROBE = "() => new Promise((r) => setTimeout(() => { try { r(eval('1')); } catch (e) { r(e.name); } }))"


def _sri(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm",
                      ".webmanifest": "application/manifest+json"}

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        time.sleep(getattr(self.server, "delays", {}).get(self.path, 0))
        super().do_GET()

    def end_headers(self) -> None:
        for name, value in getattr(self.server, "extra_headers", {}).items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.paths.append(self.path)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _serve(directory: Path, port: int = 0, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """A static server of ``directory`` on 127.0.0.1 (``port``; 0: any); ``.url``, ``.paths`` (requests logged)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Handler, directory=str(directory)))
    server.extra_headers = headers or {}  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    server.delays = {}  # type: ignore[attr-defined]  # path -> seconds before answering
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def build() -> Any:
    return build_site_module()


@pytest.fixture(scope="module")
def site(build: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("npm") is None and not (Path.home() / ".cache/emberllm/npm-pyodide/node_modules/pyodide").is_dir():
        pytest.skip("npm is not installed (needed to fetch pyodide)")
    try:
        return build.build_site(tmp_path_factory.mktemp("web") / "site")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:  # no WASM toolchain, npm failed
        pytest.skip(f"cannot build the site: {exc}")


@pytest.fixture(scope="module")
def site_json(site: Path) -> dict[str, Any]:
    return json.loads((site / "site.json").read_text())


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    with sync_api.sync_playwright() as pw:
        yield pw


def _launch(playwright: Any, profile: Path, *args: str) -> Any:
    """Chromium with a fresh profile (no service worker, no caches)."""
    ctx = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=[*FLAGS, *args], headless=True,
        viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(120_000)
    return ctx


@pytest.fixture
def context(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    ctx = _launch(playwright, tmp_path / "chromium-profile")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    pg = context.pages[0] if context.pages else context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    return pg


# ----------------------------------------------------------------------------------------------- helpers
def _until(page: Any, expression: str, timeout: float = 120.0) -> Any:
    """Poll ``expression`` (evaluated by CDP, which the page's CSP does not govern) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {expression}"
            return value
        time.sleep(0.2)


def _booted(page: Any) -> None:
    """Wait until the page has booted the in-browser engine and asks for a model (a static host: no server)."""
    state = _until(page, "['no-model', 'ready', 'error'].includes(document.body.dataset.state) && "
                         "document.body.dataset.state")
    assert state == "no-model", page.text_content("#error")


def _cache_name(site_json: dict[str, Any]) -> str:
    return f"emberllm-app-{site_json['build']}"


def _filled(page: Any, site_json: dict[str, Any]) -> None:
    """Wait until the service worker controls the page with every file of the build in its cache."""
    _until(page, "!!navigator.serviceWorker.controller")
    n = _until(page, f"caches.open('{_cache_name(site_json)}').then((c) => c.keys()).then((k) => k.length)")
    assert n == len(site_json["integrity"]) + 1  # + site.json


def _cached_text(page: Any, cache: str, name: str) -> str | None:
    return page.evaluate("async ([cache, name]) => { const r = await (await caches.open(cache)).match(name); "
                         "return r ? r.text() : null; }", [cache, name])


# ----------------------------------------------------------------------------------------------- tests
def test_site_json_holds_the_hash_of_every_cached_file(site: Path, site_json: dict[str, Any]) -> None:
    integrity = site_json["integrity"]
    assert {name: _sri((site / name).read_bytes()) for name in integrity} == integrity
    shell = {p.relative_to(ROOT / "web").as_posix() for p in (ROOT / "web").rglob("*")
             if p.is_file() and not p.name.startswith(".")} - {"README.md", "sw.js", "site.json"}
    engine = {"emberllm.mjs", "webgpu.mjs", site_json["engine"]["wheel"]}
    engine |= {f"pyodide/{n}" for n in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                                        "pyodide-lock.json")}
    assert set(integrity) == shell | engine
    sw = (site / "sw.js").read_text()
    assert f'const BUILD = "{site_json["build"]}";' in sw
    assert f'const SITE_HASH = "{_sri((site / "site.json").read_bytes())}";' in sw
    assert "__EMBERLLM" not in sw


def test_shell_is_every_copied_web_file(build: Any, tmp_path: Path) -> None:
    """The shell list comes from web/ itself: a new file there (markdown.css) is cached and hashed too."""
    for name in ("index.html", "markdown.css", "sw.js", "site.json", "README.md", ".hidden", "img/logo.svg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    assert build.shell_files(tmp_path) == ["img/logo.svg", "index.html", "markdown.css"]


def test_bundled_model_is_not_in_the_service_worker_cache(build: Any, site: Path, site_json: dict[str, Any],
                                                          tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    wheel = site / site_json["engine"]["wheel"]
    out = build.build_site(tmp_path / "site", model=model, wheel=wheel)
    built = json.loads((out / "site.json").read_text())
    assert built["model"]["url"] == "models/tiny.gguf" and (out / "models" / "tiny.gguf").is_file()
    assert not [name for name in built["integrity"] if name.startswith("models/")]


def _watch_csp(page: Any) -> list[str]:
    """Record the page's CSP violation events (window.cspViolations); returns the console's messages (the page's
    and its workers'), where the browser reports violations too."""
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.add_init_script("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
                         "(e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));")
    return console


def _load_and_ask(page: Any, model: Path, max_tokens: int) -> dict[str, Any]:
    """Open ``model`` with the file chooser, ask one short question; returns the reply as stored."""
    with page.expect_file_chooser() as chooser:
        page.click("#open-file")
    chooser.value.set_files(str(model))
    _until(page, "document.body.dataset.state === 'ready' || !document.getElementById('error').hidden", timeout=600)
    assert page.is_hidden("#error"), page.text_content("#error")
    page.click("#open-settings")
    page.fill("#set-max-tokens", str(max_tokens))
    page.click("#settings-save")
    page.wait_for_selector("#settings-dialog", state="hidden")
    page.fill("#prompt", "Say hello.")
    page.press("#prompt", "Enter")
    _until(page, "(document.querySelector('.msg.assistant')?.dataset.state ?? 'streaming') !== 'streaming'", 600)
    return page.evaluate("window.ember.current.messages.at(-1)")


def _no_violation(page: Any, console: list[str]) -> None:
    assert page.evaluate("window.cspViolations") == []
    assert not [m for m in console if "Content Security Policy" in m], console


def test_page_boots_and_chats_under_its_csp(page: Any, site: Path, gemma_path: Path) -> None:
    """Served with the CSP as a header too (so it governs the engine's worker, where Pyodide runs): the engine boots
    and a model answers with no CSP violation; the policy is in force (inline script and eval are refused)."""
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">',
                     (site / "index.html").read_text())
    assert meta and meta.group(1) == CSP
    head = (site / "index.html").read_text().split("</head>")[0]
    assert head.index("Content-Security-Policy") < head.index("<script")
    console = _watch_csp(page)
    with _serve(site, headers=HOST_HEADERS) as server:
        page.goto(server.url)
        _booted(page)
        assert page.evaluate("window.ember.timings.bootMs") > 0  # Pyodide started and the wheel was installed
        # the engine's worker (Pyodide) is under the header's policy: string eval is refused there too
        worker = next(w for w in page.workers if w.url.endswith("/worker.js"))
        assert worker.evaluate(EVAL_PROBE) == "EvalError"
        reply = _load_and_ask(page, gemma_path, max_tokens=4)
        assert reply["content"] and reply["meta"]["timings"]["generatedTokens"] == 4
        _no_violation(page, console)
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.INLINE = 1'; "
                      "document.head.append(s); }")
        assert page.evaluate(EVAL_PROBE) == "EvalError"
        assert page.evaluate("window.INLINE") is None
        _until(page, "window.cspViolations.length >= 2")
    assert page.errors == []


def test_webgpu_engine_runs_under_the_csp(playwright: Any, site: Path, gemma_path: Path, tmp_path: Path) -> None:
    """The WebGPU path (JSPI, WGSL pipelines; SwiftShader here, slow: 2 tokens) under the same header policy."""
    ctx = _launch(playwright, tmp_path / "chromium-webgpu", "--enable-unsafe-webgpu")
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        console = _watch_csp(page)
        with _serve(site, headers=HOST_HEADERS) as server:
            page.goto(server.url)
            _booted(page)
            reply = _load_and_ask(page, gemma_path, max_tokens=2)
            assert page.evaluate("window.ember.local.device.device") == "webgpu"
            assert reply["content"] and reply["meta"]["timings"]["generatedTokens"] == 2
            _no_violation(page, console)
    finally:
        ctx.close()


def test_tampered_cache_entry_is_never_served(page: Any, context: Any, site: Path, site_json: dict[str, Any]) -> None:
    """A script of the origin overwrites app.js (and site.json) in the Cache API: the next load gets the verified
    files back (the cache repaired); with no network either, the request fails instead of running the bad bytes."""
    cache = _cache_name(site_json)
    evil = "async ([cache]) => { const c = await caches.open(cache); " \
           "await c.put('app.js', new Response('/*evil*/ window.PWNED = 1;', " \
           "{ headers: { 'content-type': 'text/javascript' } })); " \
           "await c.put('site.json', new Response('{\"engine\": null, \"integrity\": {}}', " \
           "{ headers: { 'content-type': 'application/json' } })); }"
    with _serve(site) as server:
        page.goto(server.url)
        _booted(page)
        _filled(page, site_json)
        page.evaluate(evil, [cache])
        assert _cached_text(page, cache, "app.js").startswith("/*evil*/")
        page.reload()
        _booted(page)
        assert page.evaluate("window.PWNED === undefined")
        assert _cached_text(page, cache, "app.js") == (site / "app.js").read_text()
        assert json.loads(_cached_text(page, cache, "site.json")) == site_json
        page.evaluate(evil, [cache])
        context.route("**/app.js", lambda route: route.abort())
        try:
            status = page.evaluate("fetch('app.js').then((r) => r.status, () => 'network error')")
        finally:
            context.unroute("**/app.js")
        assert status == 502
        assert page.evaluate("window.PWNED === undefined")
    assert page.errors == []


def test_offline_or_slow_network_starts_from_the_cache(page: Any, context: Any, site: Path,
                                                        site_json: dict[str, Any]) -> None:
    """Navigations try the network first: with none (every request aborted) or one slower than 3 s, the page
    starts from the verified cache; the navigation's try and the server probe are all that went out."""
    with _serve(site) as server:
        page.goto(server.url)
        _booted(page)
        _filled(page, site_json)
        aborted: list[str] = []
        context.route("**/*", lambda route: (aborted.append(route.request.url), route.abort()))
        try:
            page.reload()
            _booted(page)
        finally:
            context.unroute("**/*")
        assert sorted(aborted) == [server.url, server.url + "props"], aborted
        server.delays["/"] = 6.0
        page.reload()
        _booted(page)
        # the page came after the worker's 3 s wait, before the server's answer
        assert 2900 < page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd") < 5500
    assert page.errors == []


OTHER_APP = {
    "index.html": "<!doctype html><title>another app</title><script src=\"app.js\"></script>",
    "app.js": "window.OTHER_APP = 1; const w = new Worker('worker.js');"
              "w.onmessage = (e) => { window.OTHER_WORKER = e.data; };",
    # a worker of the other app, by the name of ours, fetching another of our file names
    "worker.js": "fetch('features.js').then((r) => r.text()).then((t) => postMessage(t));",
    "features.js": "// the other app's features.js",
}


def test_another_app_on_the_same_port_gets_its_own_files(page: Any, site: Path, site_json: dict[str, Any],
                                                          tmp_path: Path) -> None:
    other = tmp_path / "other-app"
    other.mkdir()
    for name, text in OTHER_APP.items():
        (other / name).write_text(text)
    with _serve(site) as server:
        port = server.server_address[1]
        page.goto(server.url)
        _booted(page)
        _filled(page, site_json)
    with _serve(other, port=port) as server:
        page.goto(server.url)
        assert page.title() == "another app"
        assert _until(page, "window.OTHER_WORKER") == OTHER_APP["features.js"]
        assert page.evaluate("[window.OTHER_APP, typeof window.ember]") == [1, "undefined"]
        # its files came from its server, and our service worker still holds our build (for when we are back)
        assert {"/", "/app.js", "/worker.js", "/features.js"} <= set(server.paths)
        assert _cached_text(page, _cache_name(site_json), "app.js") == (site / "app.js").read_text()


def test_unbuilt_web_dir_caches_nothing(page: Any) -> None:
    """The bare web/ (as `emberllm serve` serves it: the build id is a placeholder) registers a service worker that
    caches nothing, and removes the caches an earlier build left on this origin."""
    with _serve(ROOT / "web") as server:
        page.goto(server.url + "site.json")  # this origin, before any service worker: an earlier build's caches
        page.evaluate("Promise.all(['emberllm-app-0123456789abcdef', 'emberllm-models'].map((name) => "
                      "caches.open(name).then((c) => c.put('x', new Response('x')))))")
        page.goto(server.url)
        page.evaluate("navigator.serviceWorker.register('sw.js').then(() => navigator.serviceWorker.ready)")
        _until(page, "caches.keys().then((keys) => !keys.includes('emberllm-app-0123456789abcdef'))", timeout=30)
        page.reload()
        _until(page, "!!navigator.serviceWorker.controller", timeout=30)
        page.evaluate("Promise.all(['app.js', 'style.css', 'index.html', 'site.json'].map((f) => fetch(f)))")
        assert page.evaluate("caches.keys()") == ["emberllm-models"]  # the models' cache is never touched
