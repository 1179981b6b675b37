"""The offline chat page (web/) in headless Chromium, against ``dist/site`` built into a tmp dir.

One browser, one site and one static server (127.0.0.1) are shared by the tests of this module, which run in
order on one page: boot, bad files, the Gemma model through the file chooser (greedy reply == the native
engine's), WebGPU chosen where there is no adapter (the CPU, with a banner), Stop, a reload with every network
request aborted (service worker + OPFS), then server mode against a real ``emberllm serve``; last, a second
Chromium with ``--enable-unsafe-webgpu`` (SwiftShader) runs the model on WebGPU by default.  Figures
(ready-to-chat time, first-token latency) and screenshots go to ``tests/artifacts/``.  Needs ``/usr/bin/chromium``,
Python ``playwright``, npm (for Pyodide) and the WASM toolchain; skips with the reason when one is missing.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM, FLAGS, build_site_module
from .server_fixtures import API_KEY, run_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PROMPT = "Say hello."  # every greedy step of the 12 has a top-2 gap >= 0.07 natively (no near-ties)
MIN_GAP = 0.05
N_PREDICT = 12
SAMPLING = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm",
                      ".webmanifest": "application/manifest+json"}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("npm") is None and not (Path.home() / ".cache/emberllm/npm-pyodide/node_modules/pyodide").is_dir():
        pytest.skip("npm is not installed (needed to fetch pyodide)")
    try:
        return build_site_module().build_site(tmp_path_factory.mktemp("web") / "site")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:  # no WASM toolchain, npm failed
        pytest.skip(f"cannot build the site: {exc}")


@pytest.fixture(scope="module")
def static_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    with sync_api.sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def context(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ctx = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), args=FLAGS,
        headless=True, viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(120_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def page(context: Any, static_url: str) -> Any:
    pg = context.pages[0] if context.pages else context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    return pg


@pytest.fixture(scope="module")
def native_reply(gemma_path: Path) -> str:
    from emberllm.runtime.model import Model

    with Model(gemma_path, n_ctx=2048) as model:
        steps = list(model.chat([{"role": "user", "content": PROMPT}], n_predict=N_PREDICT, n_probs=2, **SAMPLING))
    # WASM and native kernels round differently: only steps with a clear winner are comparable token for token.
    gaps = [s.extra["probs"][0][1] - s.extra["probs"][1][1] for s in steps if s.extra.get("probs")]
    assert len(gaps) == N_PREDICT and min(gaps) >= MIN_GAP, f"choose a prompt without near-ties: gaps {gaps}"
    return "".join(s.text for s in steps)


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, Any]]:
    out: dict[str, Any] = {}
    yield out
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "web_figures.json").write_text(json.dumps(out, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------- helpers
def _wait_state(page: Any, *states: str) -> str:
    page.wait_for_function(f"() => {list(states)}.includes(document.body.dataset.state)")
    return page.evaluate("document.body.dataset.state")


def _wait_ready(page: Any) -> None:
    """Wait until the page can chat, failing early (with the banner's text) when an error shows instead."""
    page.wait_for_function("() => document.body.dataset.state === 'ready' || "
                           "!document.getElementById('error').hidden")
    assert page.is_hidden("#error"), page.text_content("#error")
    assert page.evaluate("document.body.dataset.state") == "ready"


def _choose_file(page: Any, path: Path) -> None:
    if not page.is_visible("#open-file"):
        page.click("#open-models")
    with page.expect_file_chooser() as chooser:
        page.click("#open-file" if page.is_visible("#open-file") else "#models-open-file")
    chooser.value.set_files(str(path))


def _set_settings(page: Any, **fields: Any) -> None:
    page.click("#open-settings")
    for field_id, value in fields.items():
        page.fill(f"#{field_id}", str(value))
    page.click("#settings-save")
    page.wait_for_selector("#settings-dialog", state="hidden")


def _greedy_settings(page: Any, max_tokens: int = N_PREDICT) -> None:
    _set_settings(page, **{"set-temperature": 0, "set-top-k": SAMPLING["top_k"], "set-top-p": SAMPLING["top_p"],
                           "set-min-p": SAMPLING["min_p"], "set-repeat-penalty": SAMPLING["repeat_penalty"],
                           "set-max-tokens": max_tokens})


def _ask(page: Any, text: str) -> dict[str, Any]:
    """Send ``text`` with Enter, wait for the reply to finish; returns its stored message and the DOM node."""
    n = page.locator(".msg.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    last = page.locator(".msg.assistant").nth(n)
    last.wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('.msg.assistant')[{n}].dataset.state "
                           "!== 'streaming'")
    msg = page.evaluate("window.ember.current.messages.at(-1)")
    msg["dom_state"] = last.get_attribute("data-state")
    msg["meta_text"] = last.locator(".meta").text_content()
    return msg


def _error(page: Any) -> tuple[str, str]:
    page.wait_for_selector("#error", state="visible")
    return page.get_attribute("#error", "data-kind"), page.text_content("#error")


# ----------------------------------------------------------------------------------------------- tests
def test_page_boots_without_a_model(page: Any, static_url: str) -> None:
    page.goto(static_url)
    assert _wait_state(page, "no-model", "error") == "no-model", page.text_content("#error")
    assert page.is_visible("#open-file")
    assert page.is_disabled("#prompt")
    assert page.is_hidden("#mode-toggle") or page.is_disabled("#mode-toggle")  # a static host has no server
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => !!r.active)")


def test_non_gguf_file_shows_error_and_page_stays_usable(page: Any, tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("this is a text file, not a model\n" * 10)
    _choose_file(page, bad)
    kind, text = _error(page)
    assert kind == "not-gguf" and "GGUF" in text
    assert page.evaluate("document.body.dataset.state") == "no-model"
    assert page.is_enabled("#open-file")
    page.click("#error-close")
    assert page.is_hidden("#error")


def test_dropping_a_file_on_the_page_opens_it(page: Any) -> None:
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['PK\\x03\\x04 not a model'], 'weights.zip'));
        for (const type of ['dragenter', 'dragover', 'drop']) {
            window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
        }
    }""")
    kind, text = _error(page)
    assert kind == "not-gguf" and "weights.zip" in text
    assert page.is_hidden("#drop-overlay")
    page.click("#error-close")


def test_truncated_gguf_shows_error_and_is_not_kept(page: Any, gemma_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "gemma-truncated.gguf"
    with open(gemma_path, "rb") as src:
        cut.write_bytes(src.read(32 * 1024 * 1024))
    _choose_file(page, cut)
    kind, text = _error(page)
    assert kind == "corrupt", text
    assert "truncated" in text
    assert _wait_state(page, "no-model") == "no-model"
    stored = page.evaluate("window.ember.models.list().then((l) => l.map((m) => m.name))")
    assert "gemma-truncated.gguf" not in stored
    page.click("#error-close")


def test_model_too_large_for_wasm32_shows_error(page: Any, tmp_path: Path) -> None:
    from emberllm.gguf.reader import GGUFValueType as V

    from .gguf_builder import GGUFBuilder

    huge = tmp_path / "huge-context.gguf"  # tiny file whose KV cache (100k layers) cannot fit in 4 GiB
    b = GGUFBuilder().kv("general.architecture", V.STRING, "gemma3").kv("gemma3.block_count", V.UINT32, 100_000)
    for key, value in (("embedding_length", 640), ("attention.head_count", 4), ("attention.head_count_kv", 1),
                       ("attention.key_length", 256), ("attention.value_length", 256)):
        b.kv(f"gemma3.{key}", V.UINT32, value)
    huge.write_bytes(b.build())
    _choose_file(page, huge)
    kind, text = _error(page)
    assert kind == "too-large", text
    assert "4 GiB" in text and "smaller model" in text
    assert _wait_state(page, "no-model") == "no-model"
    page.click("#error-close")


def test_browser_without_wasm_simd_is_told_what_to_do(context: Any, static_url: str) -> None:
    pg = context.new_page()
    try:
        pg.add_init_script("WebAssembly.validate = () => false;")  # as a browser without SIMD128 answers
        pg.goto(static_url)
        kind, text = _error(pg)
        assert kind == "no-simd"
        assert "SIMD" in text and "server mode" in text
    finally:
        pg.close()


def test_gemma_from_file_chooser_greedy_reply_equals_native(page: Any, gemma_path: Path, native_reply: str,
                                                             figures: dict[str, Any]) -> None:
    _choose_file(page, gemma_path)
    _wait_ready(page)
    status = page.text_content("#status-text")
    assert gemma_path.name in status
    # Chromium runs relaxed SIMD as standardised: the loader picks the site's relaxed-SIMD module when it has one
    has_relaxed = page.evaluate("fetch('site.json').then((r) => r.json()).then((s) => s.engine.relaxedSimd)")
    assert ("relaxed SIMD" if has_relaxed else "SIMD128") in status, status
    # this Chromium has no WebGPU adapter (no --enable-unsafe-webgpu): Auto runs the model on the CPU, silently
    assert "CPU (WASM" in status and page.is_hidden("#error"), status
    _greedy_settings(page)
    msg = _ask(page, PROMPT)
    assert msg["dom_state"] == "done", msg
    assert msg["content"] == native_reply
    assert msg["meta"]["finishReason"] in ("length", "stop")
    assert "t/s" in msg["meta_text"] and "first token" in msg["meta_text"]
    # the native engine generated N_PREDICT tokens (native_reply checks each step), so did the page's
    assert msg["meta"]["timings"]["generatedTokens"] == N_PREDICT
    assert f"generation {N_PREDICT} tok" in msg["meta_text"], msg["meta_text"]
    figures["first_load_ms"] = page.evaluate("window.ember.timings.loadMs")
    assert page.errors == []


def _select_device(page: Any, device: str) -> None:
    """Choose Settings' "Run the model on", save, and wait for the model to load again there."""
    page.click("#open-settings")
    page.select_option("#set-device", device)
    page.click("#settings-save")
    page.wait_for_selector("#settings-dialog", state="hidden")
    _wait_state(page, "loading")
    _wait_state(page, "ready", "no-model", "error")


def test_webgpu_setting_without_an_adapter_runs_on_the_cpu(page: Any) -> None:
    """WebGPU chosen in Settings where the browser has no adapter: the model reloads on the CPU, a banner says why,
    the choice is kept; Auto goes back without a banner."""
    _select_device(page, "webgpu")
    kind, text = _error(page)
    assert kind == "webgpu", text
    assert "WebGPU is not available" in text and "no adapter" in text and "CPU" in text, text
    assert page.evaluate("document.body.dataset.state") == "ready"
    assert "CPU (WASM" in page.text_content("#status-text")
    assert page.evaluate("window.ember.store.settings().then((s) => s.device)") == "webgpu"
    assert page.evaluate("window.ember.local.device.device") == "cpu"
    _select_device(page, "auto")
    assert page.is_hidden("#error")
    assert page.evaluate("document.body.dataset.state") == "ready"
    assert "CPU (WASM" in page.text_content("#status-text")
    assert page.evaluate("window.ember.store.settings().then((s) => s.device)") == "auto"
    assert page.errors == []


def test_kv_cache_setting_reloads_with_that_cache(page: Any) -> None:
    """Settings' KV cache: q8_0 reloads the model with a q8_0 K and V cache on the CPU and it still answers; f16
    back."""
    for kv in ("q8_0", "f16"):
        page.click("#open-settings")
        page.select_option("#set-kv-cache", kv)
        page.click("#settings-save")
        page.wait_for_selector("#settings-dialog", state="hidden")
        _wait_state(page, "loading")
        _wait_state(page, "ready", "no-model", "error")
        assert page.evaluate("document.body.dataset.state") == "ready"
        assert page.evaluate("window.ember.store.settings().then((s) => s.kvCache)") == kv
        assert page.evaluate("window.ember.local.device.kvCache") == [kv, kv]
        if kv == "q8_0":
            _greedy_settings(page, max_tokens=4)
            msg = _ask(page, PROMPT)
            assert msg["dom_state"] == "done" and msg["content"], msg
    assert page.errors == []


def test_stop_ends_a_reply_early(page: Any) -> None:
    _greedy_settings(page, max_tokens=400)
    n = page.locator(".msg.assistant").count()
    page.fill("#prompt", "Tell me a long story about a dragon.")
    page.press("#prompt", "Enter")
    page.wait_for_function(f"() => (window.ember.current.messages.at(-1).content || '').length > 10 && "
                           f"document.querySelectorAll('.msg.assistant').length > {n}")
    page.click("#stop")
    page.wait_for_function(f"() => document.querySelectorAll('.msg.assistant')[{n}].dataset.state === 'done'")
    meta = page.evaluate("window.ember.current.messages.at(-1).meta")
    assert meta["finishReason"] == "cancelled"
    assert meta["timings"]["evalTokens"] < 100
    meta_text = page.locator(".msg.assistant").nth(n).locator(".meta").text_content()
    assert "stopped" in meta_text and "while reading" not in meta_text
    # Stop takes effect before a sample, so the engine evaluated every token it generated: its evalTokens is the
    # reply's token count (an off-by-one showed one more)
    n_tokens = meta["timings"]["evalTokens"]
    assert meta["timings"]["generatedTokens"] == n_tokens > 0
    assert f"generation {n_tokens} tok" in meta_text, meta_text
    assert page.evaluate("document.body.dataset.state") == "ready"


def _set_json_output(page: Any, on: bool) -> None:
    page.click("#open-settings")
    (page.check if on else page.uncheck)("#set-json-output")
    page.click("#settings-save")
    page.wait_for_selector("#settings-dialog", state="hidden")
    # Settings apply in the dialog's close handler, after the dialog is gone
    page.wait_for_function(f"() => window.ember.settings.jsonOutput === {str(on).lower()}")


def test_json_output_setting_constrains_replies(page: Any) -> None:
    """Settings' "JSON output": the reply is a JSON object (complete when it stopped, a viable prefix when cut at
    Max tokens), and the choice persists; off again, the same question gets free text."""
    from emberllm.grammar import Matcher
    from emberllm.grammar.json_schema import json_object_grammar

    _greedy_settings(page, max_tokens=48)
    _set_json_output(page, True)
    try:
        page.wait_for_function("async () => (await window.ember.store.settings()).jsonOutput === true")  # persisted
        msg = _ask(page, "Describe a cat.")
        assert msg["dom_state"] == "done", msg
        matcher = Matcher(json_object_grammar())
        if msg["meta"]["finishReason"] == "stop":
            assert matcher.accepts(msg["content"]) and isinstance(json.loads(msg["content"]), dict), msg["content"]
        else:
            assert msg["meta"]["finishReason"] == "length" and matcher.accept_bytes(msg["content"].encode()), msg
    finally:
        _set_json_output(page, False)
    free = _ask(page, "Describe a cat.")
    assert not Matcher(json_object_grammar()).accept_bytes(free["content"].encode()), free["content"]
    assert page.errors == []


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web_{name}.png"))


def _wait_reply_done(page: Any) -> dict[str, Any]:
    """Wait until the page is idle and its last reply is finished; returns that stored reply."""
    page.wait_for_function("() => !window.ember.busy && window.ember.current.messages.at(-1)?.meta != null")
    return page.evaluate("window.ember.current.messages.at(-1)")


def test_base_model_notice_and_recommended_models(page: Any, context: Any) -> None:
    """Gemma 3 270M is a base model (its GGUF has no chat template): a new chat says so and points to the catalogue
    of instruction-tuned GGUFs, whose Download fetches the listed URL (here answered 503: no network in CI)."""
    page.click("#new-chat")
    page.wait_for_selector("#base-note", state="visible")
    _shot(page, "base_model_note")
    page.click("#base-note-models")
    page.wait_for_selector("#models-dialog", state="visible")
    catalogue = page.evaluate("import('./catalogue.js').then((m) => m.CATALOGUE.map((e) => e.url))")
    rows = page.locator("#catalogue li")
    assert rows.count() == len(catalogue) >= 3
    text = page.text_content("#catalogue")
    assert "Apache-2.0" in text and "MB" in text and "Instruct" in text
    _shot(page, "catalogue")
    requested: list[str] = []

    def refuse(route: Any) -> None:
        requested.append(route.request.url)
        route.fulfill(status=503, body="offline")

    context.route("https://huggingface.co/**", refuse)
    try:
        rows.first.get_by_role("button").click()
        kind, text = _error(page)
    finally:
        context.unroute("https://huggingface.co/**")
    assert requested[:1] == catalogue[:1]
    assert kind == "network" and catalogue[0] in text
    _wait_state(page, "ready")  # the loaded model stays usable
    page.click("#error-close")


def test_message_controls_copy_edit_regenerate(page: Any, context: Any, static_url: str, native_reply: str) -> None:
    """Edit a sent message (the chat restarts from it: the greedy reply is the native one), regenerate the last
    reply (a new message object with the same greedy text), copy a reply to the clipboard."""
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=static_url.rstrip("/"))
    page.click("#new-chat")
    _greedy_settings(page)
    _ask(page, "Hi there, how are you?")
    user = page.locator(".msg.user").last
    user.hover()
    user.locator(".edit-message").click()
    page.wait_for_selector(".edit-box")
    _shot(page, "edit_message")
    page.fill(".edit-box", PROMPT)
    page.click(".edit-send")
    reply = _wait_reply_done(page)
    messages = page.evaluate("window.ember.current.messages.map((m) => [m.role, m.content])")
    assert messages == [["user", PROMPT], ["assistant", native_reply]], messages
    assert reply["meta"]["finishReason"] in ("length", "stop")
    page.evaluate("window.ember.current.messages.at(-1).marker = 1")
    last = page.locator(".msg.assistant").last
    last.hover()
    _shot(page, "message_actions")
    last.locator(".regenerate").click()
    reply = _wait_reply_done(page)
    assert "marker" not in reply and reply["content"] == native_reply
    assert page.evaluate("window.ember.current.messages.length") == 2
    assert page.locator(".msg.user .edit-message").count() == 1 and page.locator(".regenerate").count() == 1
    page.locator(".msg.assistant").last.locator(".copy-message").click()
    page.wait_for_function("() => document.querySelector('.msg.assistant .copy-message').textContent "
                           "=== 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == native_reply
    stored = page.evaluate("window.ember.store.conversations().then((cs) => cs[0].messages.length)")
    assert stored == 2
    assert page.errors == []


def _wait_growth(page: Any, n_chars: int) -> None:
    """Wait until the streaming reply has grown by ``n_chars`` (or has ended)."""
    size = page.evaluate("window.ember.current.messages.at(-1).content.length")
    page.wait_for_function(f"() => window.ember.current.messages.at(-1).content.length > {size + n_chars} || "
                           "!window.ember.busy")


def test_streaming_follows_only_at_the_bottom(page: Any) -> None:
    """While a reply streams, scrolling up stops the view from following (a button brings it back)."""
    page.set_viewport_size({"width": 1100, "height": 420})
    try:
        page.click("#new-chat")
        _greedy_settings(page, max_tokens=400)
        page.fill("#prompt", "Tell me a long story about a dragon and a lighthouse keeper.")
        page.press("#prompt", "Enter")
        page.wait_for_function("() => { const c = document.getElementById('chat'); "
                               "return c.scrollHeight > c.clientHeight + 150; }", timeout=180_000)
        page.evaluate("document.getElementById('chat').scrollTop = 0")
        page.wait_for_selector("#to-bottom", state="visible")
        _wait_growth(page, 80)
        assert page.evaluate("document.getElementById('chat').scrollTop") < 5  # not pulled down
        _shot(page, "scrolled_up_while_streaming")
        page.click("#to-bottom")
        _wait_growth(page, 40)
        page.wait_for_timeout(100)
        at_bottom = page.evaluate("() => { const c = document.getElementById('chat'); "
                                  "return c.scrollHeight - c.scrollTop - c.clientHeight; }")
        assert at_bottom < 48, at_bottom
        if page.evaluate("window.ember.busy"):
            page.click("#stop")
        _wait_reply_done(page)
    finally:
        page.set_viewport_size({"width": 1100, "height": 760})


def _long_history(n_turns: int = 16) -> list[dict[str, str]]:
    """About 1,500 tokens of varied conversation (no two messages alike)."""
    subjects = ["the harbour", "a violin", "winter bread", "the old mill", "river stones", "a paper kite",
                "the night train", "copper kettles", "orchard bees", "a lost glove", "salt marshes", "the clock tower",
                "wild garlic", "a chess club", "tidal pools", "the north road"]
    verbs = ["remembered", "painted", "argued about", "measured", "listened to", "repaired", "followed", "counted"]
    messages = []
    for i in range(n_turns):
        s, v = subjects[i % len(subjects)], verbs[i % len(verbs)]
        user = (f"Question {i + 1}: my neighbour {v} {s} for {i + 3} days. Why would someone spend so long on "
                f"{s}, and what would you have done in the {['morning', 'evening', 'rain'][i % 3]}?")
        reply = (f"Answer {i + 1}: people who {v} {s} often do it slowly on purpose. In the first days they notice "
                 f"small details about {s}; later the work becomes a habit, and by day {i + 3} it is a story they "
                 f"tell. I would have {v} {subjects[(i + 5) % len(subjects)]} instead, then compared notes.")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply,
                                                          "meta": {"finishReason": "stop", "mode": "local"}}]
    return messages


def test_long_conversation_progress_stop_fit_and_reload(page: Any, figures: dict[str, Any]) -> None:
    """A ~1,500-token conversation re-opened after a reload: the scroll shows its end, the prompt read shows
    progress and Stop ends it within one chunk; with Context 1000 the oldest turns are left out (no error); after
    another reload the chat goes on without a raw Python error."""
    history = _long_history()
    page.evaluate("""(messages) => window.ember.store.putConversation({ id: 'clong', title: 'Long chat',
        created: Date.now(), updated: Date.now() + 1e9, messages })""", history)
    page.reload()
    _wait_ready(page)
    assert page.evaluate("window.ember.current.id") == "clong"
    gap = page.evaluate("() => { const c = document.getElementById('chat'); "
                        "return c.scrollHeight - c.scrollTop - c.clientHeight; }")
    assert gap < 48, gap  # a re-opened conversation shows its latest messages
    _greedy_settings(page, max_tokens=8)
    page.fill("#prompt", "Which of these stories did you like best?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant:last-child .reading", state="visible")
    assert "Reading the conversation" in page.text_content(".msg.assistant:last-child .reading")
    _shot(page, "reading_progress")
    page.click("#stop")
    stopped = _wait_reply_done(page)
    meta = stopped["meta"]
    assert meta["finishReason"] == "cancelled", meta
    assert meta["promptTotal"] >= 1400, meta
    # Stop acts between pieces of the read (each sized to ~0.5 s), not after the whole prompt (19.5 s before)
    assert meta["promptDone"] < meta["promptTotal"], meta
    assert meta["stopMs"] < 3000, meta
    figures["stop_during_prompt_read_ms"] = meta["stopMs"]
    assert "stopped while reading the conversation" in page.locator(".msg.assistant").last.text_content()
    # the part read before Stop stays in the cache: the next request re-reads only the rest
    msg = _ask(page, "Which of these stories did you like best?")
    assert msg["dom_state"] == "done", msg
    assert msg["meta"]["timings"]["cachedTokens"] >= meta["promptDone"], (msg["meta"], meta)
    timings = msg["meta"]["timings"]
    figures["long_chat_prompt_read"] = {"tokens": timings["promptTokens"], "cached": timings["cachedTokens"],
                                        "ms": timings["promptMs"], "first_token_ms": msg["meta"]["firstTokenMs"]}
    # a context too small for the conversation: old turns are left out, the system prompt and the question kept
    page.click("#open-settings")
    page.fill("#set-n-ctx", "1000")
    page.fill("#set-temperature", "0.72")
    assert page.evaluate("document.getElementById('settings-form').checkValidity()")
    page.fill("#set-temperature", "0")
    page.fill("#set-system", "You are a patient storyteller.")
    page.click("#settings-save")
    _wait_state(page, "loading")  # Context applies at once: the model reloads
    _wait_ready(page)
    msg = _ask(page, "Tell me about the harbour again.")
    assert msg["dom_state"] == "done" and page.is_hidden("#error"), page.text_content("#error")
    assert msg["meta"]["droppedMessages"] > 0, msg["meta"]
    assert "left out to fit the context" in msg["meta_text"]
    _shot(page, "context_fit")
    page.reload()
    _wait_ready(page)
    msg = _ask(page, "And the violin?")
    assert msg["dom_state"] == "done" and page.is_hidden("#error"), page.text_content("#error")
    assert "Error" not in page.text_content("#messages")
    page.click("#open-settings")
    page.fill("#set-n-ctx", "2048")
    page.fill("#set-system", "")
    page.click("#settings-save")
    _wait_state(page, "loading")
    _wait_ready(page)
    assert page.errors == []


def test_markdown_rendering_is_safe(page: Any) -> None:
    result = page.evaluate("""async () => {
        const { renderMarkdown } = await import('./markdown.js');
        const div = document.createElement('div');
        renderMarkdown('# Title\\n<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>\\n' +
            '**bold** [x](javascript:alert(1)) [ok](https://example.com)\\n\\n' +
            '```python\\nprint("<b>hi</b>")\\n```', div);
        return { tags: [...div.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
                 links: [...div.querySelectorAll('a')].map((a) => a.href), text: div.textContent,
                 code: div.querySelector('pre code').textContent, copy: !!div.querySelector('button.copy') };
    }""")
    assert not {"img", "script", "iframe"} & set(result["tags"])
    assert {"h3", "strong", "pre", "code"} <= set(result["tags"])
    assert result["links"] == ["https://example.com/"]
    assert '<img src=x onerror="window.pwned=1">' in result["text"]
    assert result["code"] == 'print("<b>hi</b>")' and result["copy"]
    assert page.evaluate("window.pwned === undefined")


def test_offline_reload_chats_from_cached_model(page: Any, context: Any, static_url: str, native_reply: str,
                                                figures: dict[str, Any]) -> None:
    assert page.evaluate("navigator.serviceWorker.ready.then(() => !!navigator.serviceWorker.controller)")
    aborted: list[str] = []

    def block(route: Any) -> None:
        aborted.append(route.request.url)
        route.abort()

    context.route("**/*", block)
    try:
        page.reload()
        _wait_ready(page)
        # settings and the conversation survived the reload (IndexedDB)
        assert page.evaluate("window.ember.settings.temperature") == 0
        assert PROMPT in page.text_content("#conversations")
        figures["ready_ms_cached_offline"] = page.evaluate("window.ember.timings.readyMs")
        figures["engine_boot_ms_offline"] = page.evaluate("window.ember.timings.bootMs")
        figures["pyodide_boot_ms_offline"] = page.evaluate("window.ember.timings.pyodideMs")
        figures["wheel_install_ms_offline"] = page.evaluate("window.ember.timings.wheelMs")
        figures["model_load_ms_offline"] = page.evaluate("window.ember.timings.loadMs")
        page.click("#new-chat")
        _greedy_settings(page)
        msg = _ask(page, PROMPT)
        assert msg["content"] == native_reply
        figures["first_token_ms_offline"] = msg["meta"]["firstTokenMs"]
        figures["prompt_tokens"] = msg["meta"]["timings"]["promptTokens"]
        short = _ask(page, "Hi!")
        figures["first_token_ms_short_prompt"] = short["meta"]["firstTokenMs"]
        figures["aborted_requests"] = aborted
        # Nothing the page needs went to the network: only the server probe (there is no server here) and the
        # service worker's network-first try of the page itself (then served from its verified cache) may have.
        assert all(url.endswith("/props") or url == static_url for url in aborted), aborted
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_chat.png"))
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(ARTIFACTS / "web_chat_dark.png"))
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 390, "height": 780})
        page.wait_for_timeout(400)  # the sidebar slides out of view
        assert not page.locator("#sidebar").is_visible() or page.evaluate(
            "document.getElementById('sidebar').getBoundingClientRect().right <= 0")
        page.screenshot(path=str(ARTIFACTS / "web_chat_phone.png"))
        page.set_viewport_size({"width": 1100, "height": 760})
    finally:
        context.unroute("**/*")
    assert page.errors == []


def test_conversations_rename_and_delete_persist(page: Any) -> None:
    first = page.locator("#conversations li").first
    first.hover()
    first.get_by_role("button", name="Rename").click()
    page.fill("#conversations input", "Sea greetings")
    page.press("#conversations input", "Enter")
    titles = page.evaluate("window.ember.store.conversations().then((cs) => cs.map((c) => c.title))")
    assert "Sea greetings" in titles
    n = len(titles)
    first = page.locator("#conversations li").first
    first.hover()
    first.get_by_role("button", name="Delete").click()
    page.wait_for_function(f"() => window.ember.store.conversations().then((cs) => cs.length === {n - 1})")
    assert "Sea greetings" not in page.text_content("#conversations")


def test_delete_with_undo(page: Any) -> None:
    titles = page.evaluate("window.ember.store.conversations().then((cs) => cs.map((c) => c.title))")
    row = page.locator("#conversations li", has_text=PROMPT).first  # a conversation with messages
    title = row.locator(".conv-title").text_content()
    row.hover()
    row.get_by_role("button", name="Delete").click()
    page.wait_for_function("(title) => !document.getElementById('toast').hidden && "
                           "document.getElementById('toast-text').textContent === `Deleted “${title}”`", arg=title)
    page.wait_for_function("() => window.ember.store.conversations()"
                           f".then((cs) => cs.length === {len(titles) - 1})")
    _shot(page, "undo_delete")
    page.click("#toast-action")
    page.wait_for_function("() => window.ember.store.conversations()"
                           f".then((cs) => cs.length === {len(titles)})")
    assert page.is_hidden("#toast")
    assert title in page.text_content("#conversations")


def test_removing_the_loaded_model_unloads_it(page: Any, gemma_path: Path) -> None:
    page.click("#open-models")
    row = page.locator("#model-list li", has_text=gemma_path.name)
    row.get_by_role("button", name="Remove").click()
    page.wait_for_function("() => window.ember.models.list()"
                           f".then((l) => !l.some((m) => m.name === '{gemma_path.name}'))")
    page.click("#models-dialog .dialog-actions button")
    kind, text = _error(page)
    assert kind == "no-model" and gemma_path.name in text
    assert page.evaluate("document.body.dataset.state") == "no-model"
    assert page.is_disabled("#prompt") and gemma_path.name not in page.text_content("#status-text")
    assert page.text_content("#error-action") == "Open a model…"
    _shot(page, "model_removed")
    page.click("#error-action")
    page.wait_for_selector("#models-dialog", state="visible")
    assert page.is_visible("#models-open-file")
    page.click("#models-dialog .dialog-actions button")


def test_server_mode_against_emberllm_serve(context: Any, site: Path, gemma_path: Path, native_reply: str,
                                            tmp_path: Path) -> None:
    with run_server(gemma_path, tmp_path, "--web-dir", str(site), "-c", "2048") as server:
        pg = context.new_page()
        try:
            pg.goto(server.url + "/")
            kind, _ = _error(pg)
            assert kind == "auth"  # the server wants its API key before the page may use it
            assert pg.is_checked("#mode-toggle")
            assert pg.text_content("#empty-title") == "This server needs an API key"
            assert pg.is_visible("#auth-settings") and pg.text_content("#error-action") == "Open Settings"
            _shot(pg, "api_key_needed")
            pg.click("#error-action")
            pg.wait_for_selector("#settings-dialog", state="visible")
            assert pg.evaluate("document.activeElement.id") == "set-api-key"
            pg.fill("#set-api-key", API_KEY)
            pg.click("#settings-save")
            pg.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=30_000)
            assert pg.is_hidden("#error")
            assert "Server" in pg.text_content("#status-text")
            _greedy_settings(pg)
            msg = _ask(pg, PROMPT)
            assert msg["dom_state"] == "done", msg
            assert msg["content"] == native_reply
            assert msg["meta"]["mode"] == "server"
            assert "server" in msg["meta_text"] and "t/s" in msg["meta_text"]
            assert f"generation {N_PREDICT} tok" in msg["meta_text"], msg["meta_text"]
        finally:
            pg.close()


def _sse_events(body: str) -> list[dict[str, Any]]:
    datas = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    return [json.loads(d) for d in datas if d and d != "[DONE]"]


def test_server_mode_without_a_built_site(context: Any, gemma_path: Path, native_reply: str, tmp_path: Path) -> None:
    """``emberllm serve`` with its default web/ (no Pyodide, no wheel: site.json names no engine): no failed
    request and no console error on load, no in-browser engine options, the token count the server reports."""
    bad: list[str] = []

    def on_response(response: Any) -> None:  # the page's requests and its service worker's
        if response.status >= 400:
            bad.append(f"{response.status} {response.url}")

    def on_failed(request: Any) -> None:
        bad.append(f"failed {request.url}: {request.failure}")

    # `--api-key ""` after run_server's own key: an open server, as a plain `emberllm serve` starts
    with run_server(gemma_path, tmp_path, "--api-key", "", "-c", "2048") as server:
        context.on("response", on_response)
        context.on("requestfailed", on_failed)
        pg = context.new_page()
        console: list[str] = []
        pg.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        try:
            pg.goto(server.url + "/")
            _wait_ready(pg)
            # the service worker installs (its pre-cache fetched site.json too; a 404 there made the install fail)
            pg.wait_for_function("() => navigator.serviceWorker.getRegistration().then((r) => !!r?.active)",
                                 timeout=30_000)
            assert pg.text_content("#status-text") == f"Server · {gemma_path.name}"
            assert pg.text_content("#empty-title") == "Ready when you are"
            # only the server's engine here: no switch, nothing that opens or downloads a model into the browser
            assert pg.is_hidden("#mode-toggle") and pg.is_disabled("#mode-toggle")
            assert pg.is_hidden("#open-file") and pg.is_hidden("#open-url")
            pg.click("#open-models")
            pg.wait_for_selector("#models-server-model", state="visible")  # the dialog opens once filled in
            assert pg.text_content("#models-server-name") == gemma_path.name
            assert pg.is_hidden("#models-open-file") and pg.is_hidden("#model-url") and pg.is_hidden("#model-list")
            pg.click("#models-dialog .dialog-actions button")
            pg.wait_for_selector("#models-dialog", state="hidden")
            pg.evaluate("""() => {
                const dt = new DataTransfer();
                dt.items.add(new File(['GGUF'], 'model.gguf'));
                window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true }));
            }""")
            assert pg.is_hidden("#drop-overlay")  # a dropped file could not be opened: none is asked for
            _greedy_settings(pg)
            with pg.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as reply:
                msg = _ask(pg, PROMPT)
            assert msg["dom_state"] == "done", msg
            assert msg["content"] == native_reply
            usage = [e["usage"] for e in _sse_events(reply.value.text()) if e.get("usage")]
            assert len(usage) == 1, usage
            n_tokens = usage[0]["completion_tokens"]
            assert n_tokens == N_PREDICT  # the reply equals the native one, which has N_PREDICT tokens
            assert msg["meta"]["timings"]["generatedTokens"] == n_tokens
            assert f"generation {n_tokens} tok" in msg["meta_text"], msg["meta_text"]
            # a proxy answering with a login page instead of the event stream: said so, and the page stays usable
            pg.route("**/v1/chat/completions", lambda route: route.fulfill(
                status=200, content_type="text/html", body="<html><body>Please log in</body></html>"))
            pg.fill("#prompt", "Hello?")
            pg.press("#prompt", "Enter")
            kind, text = _error(pg)
            assert kind == "server-stream" and "not an event stream" in text and "another model" not in text, text
            pg.unroute("**/v1/chat/completions")
            pg.wait_for_function("() => document.body.dataset.state === 'ready'")
            # a choice of the in-browser engine saved in this browser does not apply where there is none
            pg.evaluate("window.ember.store.saveSettings({ ...window.ember.settings, mode: 'local' })")
            pg.reload()
            _wait_ready(pg)
            assert pg.text_content("#status-text") == f"Server · {gemma_path.name}"
        finally:
            context.remove_listener("response", on_response)
            context.remove_listener("requestfailed", on_failed)
            pg.close()
    assert bad == [], bad
    assert console == [], console


def test_server_mode_cross_origin(playwright: Any, static_url: str, gemma_path: Path, native_reply: str,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """The statically hosted page (one origin) in server mode against ``emberllm serve`` on another: the browser
    blocks it (CORS, not the CSP) and the page says which flag to add; with ``--cors-origin`` a reply streams."""
    origin = static_url.rstrip("/")
    ctx = playwright.chromium.launch_persistent_context(  # a fresh profile: no model stored for this origin
        str(tmp_path_factory.mktemp("chromium-cors")), executable_path=str(CHROMIUM), args=FLAGS, headless=True,
        viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(120_000)
    logs = tmp_path_factory.mktemp("cors-servers")
    console: list[str] = []
    try:
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        pg.goto(static_url)
        _wait_state(pg, "no-model", "ready")
        with run_server(gemma_path, logs, "--api-key", "", "-c", "2048", "-t", "1") as closed:
            _set_settings(pg, **{"set-server-url": closed.url})
            kind, text = _error(pg)
            assert kind == "unreachable", text
            assert f"cannot reach the server at {closed.url}/" in text and f"--cors-origin {origin}" in text, text
            assert pg.text_content("#status-text") == "Server unreachable" and pg.text_content("#error-action")
            assert any("blocked by CORS policy" in c and closed.url in c for c in console), console
            assert not any("Content Security Policy" in c for c in console), console
            _shot(pg, "cross_origin_blocked")
        with run_server(gemma_path, logs, "--api-key", "", "-c", "2048", "-t", "1", "--cors-origin", origin) as srv:
            _set_settings(pg, **{"set-server-url": srv.url})
            # the closed server's error stays up until the new server answers: wait for the page to be ready
            pg.wait_for_function("() => document.body.dataset.state === 'ready'")
            assert pg.is_hidden("#error"), pg.text_content("#error")
            assert pg.text_content("#status-text") == f"Server · {gemma_path.name}"
            _greedy_settings(pg)
            with pg.expect_response(lambda r: r.url == f"{srv.url}/v1/chat/completions") as reply:
                msg = _ask(pg, PROMPT)
            assert msg["dom_state"] == "done" and msg["meta"]["mode"] == "server", msg
            assert msg["content"] == native_reply
            headers = reply.value.headers
            assert headers["access-control-allow-origin"] == origin
            assert headers["content-type"].startswith("text/event-stream")
            chunks = [e for e in _sse_events(reply.value.text()) if e.get("choices") and e["choices"][0]["delta"]]
            assert len(chunks) >= N_PREDICT - 1, chunks  # streamed token by token, not one block
        assert not any("Content Security Policy" in c for c in console), console
    finally:
        ctx.close()


def test_page_runs_the_model_on_webgpu(playwright: Any, static_url: str, gemma_path: Path, native_reply: str,
                                       tmp_path_factory: pytest.TempPathFactory, figures: dict[str, Any]) -> None:
    """A Chromium with WebGPU (``--enable-unsafe-webgpu``: SwiftShader, slow): by default the page loads the model
    on WebGPU, says so in its status line, and its greedy reply starts as the native engine's (3 tokens: SwiftShader
    takes seconds per token on 2 cores)."""
    ctx = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-webgpu")), executable_path=str(CHROMIUM),
        args=[*FLAGS, "--enable-unsafe-webgpu"], headless=True, viewport={"width": 1100, "height": 760})
    ctx.set_default_timeout(180_000)
    try:
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda err: errors.append(str(err)))
        pg.goto(static_url)
        assert _wait_state(pg, "no-model", "error") == "no-model", pg.text_content("#error")
        _choose_file(pg, gemma_path)
        _wait_ready(pg)
        status = pg.text_content("#status-text")
        device = pg.evaluate("window.ember.local.device")
        assert device["device"] == "webgpu" and device["nGpuLayers"] == device["nLayers"], device
        assert f"WebGPU · {device['adapter']}" in status and gemma_path.name in status, status
        figures["webgpu_adapter"] = device["adapter"]
        figures["webgpu_load_ms"] = pg.evaluate("window.ember.timings.loadMs")
        _greedy_settings(pg, max_tokens=3)
        msg = _ask(pg, PROMPT)
        assert msg["dom_state"] == "done", msg
        assert msg["content"] and native_reply.startswith(msg["content"]), (msg["content"], native_reply)
        assert msg["meta"]["timings"]["generatedTokens"] == 3
        figures["webgpu_first_token_ms"] = msg["meta"]["firstTokenMs"]
        assert errors == []
    finally:
        ctx.close()
