"""``emberllm serve`` in front of browsers: security headers, CORS, cross-site writes refused, JSON Content-Type
from pages.  The real server over HTTP (one without an API key, one with), plus in-process checks of the policy and
the flags."""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from .server_fixtures import API_KEY, AUTH, free_port, run_server, stop, wait_healthy

APP = "https://app.example"
EVIL = "https://evil.example"
POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
          "connect-src 'self' https: http://localhost:* http://127.0.0.1:*; img-src 'self' data: blob:; "
          "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
BODY = '{"prompt": "The capital of France is", "n_predict": 2, "temperature": 0}'
CHAT = '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}'


@contextlib.contextmanager
def _serve_without_key(model: Path, log_dir: Path, *args: str) -> Iterator[str]:
    """``emberllm serve`` with no ``--api-key`` (``run_server`` always sets one) until healthy; its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "emberllm.cli", "serve", "-m", str(model), "--port", str(port),
           "--log-level", "warning", *args]
    log_path = log_dir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, log_path)
            yield url
        finally:
            stop(proc)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No API key, ``--cors-origins https://app.example``, ``/metrics`` on."""
    with _serve_without_key(gemma_path, tmp_path_factory.mktemp("open"), "-c", "256", "-t", "1", "--metrics",
                            "--cors-origins", APP) as url:
        yield url


@pytest.fixture(scope="module")
def keyed(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """With ``--api-key`` and the default ``--cors-origins`` (none)."""
    with run_server(gemma_path, tmp_path_factory.mktemp("keyed"), "-c", "256", "-t", "1", "--no-webui") as srv:
        yield srv.url


def _counters(url: str) -> dict[str, float]:
    """``llamacpp:*`` counters of ``/metrics`` (asked without Origin, as curl would)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^llamacpp:(\w+) (\S+)$", text, re.M)}


def _directives(policy: str) -> list[str]:
    return [" ".join(d.split()) for d in policy.split(";") if d.strip()]


# -- headers --------------------------------------------------------------------------------------------------


def test_security_headers(server):
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == POLICY
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    for path in ("/app.js", "/style.css", "/no-such-file.js"):  # every static file, its 404 too
        r = httpx.get(f"{server}{path}", timeout=30)
        assert r.headers["content-security-policy"] == POLICY and r.headers["x-content-type-options"] == "nosniff"
    for r in (httpx.get(f"{server}/health", timeout=30), httpx.get(f"{server}/props", timeout=30),
              httpx.post(f"{server}/completion", content="{", timeout=30)):  # JSON: nosniff, no CSP needed
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert "content-security-policy" not in r.headers
    assert not any(k.startswith("access-control-") for k in page.headers)  # no Origin: no CORS answer


def _meta_policy(html: str) -> str | None:
    """The ``content`` of the page's ``<meta http-equiv="Content-Security-Policy">``, if it has one."""
    found: list[str] = []

    class Metas(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {k.lower(): v or "" for k, v in attrs}
            if tag == "meta" and values.get("http-equiv", "").lower() == "content-security-policy":
                found.append(values.get("content", ""))

    Metas().feed(html)
    return found[0] if found else None


def test_page_meta_policy_equals_header(server):
    from emberllm.edge_server.security import CONTENT_SECURITY_POLICY

    assert CONTENT_SECURITY_POLICY == POLICY
    assert _meta_policy('<meta content="a &#39;b&#39;; c" HTTP-EQUIV="content-security-policy">') == "a 'b'; c"
    page = httpx.get(f"{server}/index.html", timeout=30)
    meta = _meta_policy(page.text)
    if meta is None:
        pytest.skip("web/index.html has no <meta http-equiv=\"Content-Security-Policy\"> yet (added separately)")
    header = [d for d in _directives(page.headers["content-security-policy"]) if not d.startswith("frame-ancestors")]
    assert _directives(meta) == header


# -- cross-site writes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://127.0.0.1.evil.example"},
], ids=["origin", "origin+fetch-site", "fetch-site-cross", "fetch-site-same-site", "null", "lookalike"])
def test_cross_site_simple_post_is_refused_before_generating(server, headers):
    before = _counters(server)
    for path, body in (("/completion", BODY), ("/v1/chat/completions", CHAT), ("/tokenize", '{"content": "x"}')):
        r = httpx.post(f"{server}{path}", content=body, headers={"Content-Type": "text/plain", **headers}, timeout=30)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["type"] == "permission_error" and "--cors-origins" in error["message"]
        assert "access-control-allow-origin" not in r.headers and r.headers["x-content-type-options"] == "nosniff"
    after = _counters(server)
    assert after["prompt_tokens_total"] == before["prompt_tokens_total"]
    assert after["requests_total"] == before["requests_total"]


def test_same_origin_browser_requests(server):
    same = {"Origin": server, "Sec-Fetch-Site": "same-origin"}
    r = httpx.post(f"{server}/completion", content=BODY, timeout=60,
                   headers={**same, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 2
    r = httpx.post(f"{server}/tokenize", content='{"content": "Hi"}', timeout=30,
                   headers={"Origin": server, "Content-Type": "application/vnd.example+json; charset=utf-8"})
    assert r.status_code == 200 and r.json()["tokens"]
    r = httpx.post(f"{server}/tokenize", content='{"content": "Hi"}', timeout=30,
                   headers={"Sec-Fetch-Site": "same-origin"})  # behind a proxy that rewrites Host: the browser says so
    assert r.status_code == 415  # ... but a browser must still say JSON
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        before = _counters(server)
        r = httpx.post(f"{server}/completion", content=BODY, timeout=30,
                       headers={**same, "Content-Type": content_type})
        assert r.status_code == 415, r.text
        assert "application/json" in r.json()["error"]["message"]
        assert _counters(server)["requests_total"] == before["requests_total"]


def test_non_browser_clients_need_no_content_type(server):
    plain = httpx.post(f"{server}/completion", content=BODY, timeout=60)  # no Content-Type at all
    assert "content-type" not in plain.request.headers
    assert plain.status_code == 200 and plain.json()["tokens_predicted"] == 2
    curl = httpx.post(f"{server}/completion", content=BODY, timeout=60,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # what curl -d sends
    assert curl.status_code == 200 and curl.json()["content"] == plain.json()["content"]


# -- CORS -----------------------------------------------------------------------------------------------------


def _preflight(url: str, origin: str, path: str = "/completion") -> httpx.Response:
    return httpx.options(f"{url}{path}", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_origins_allows_a_listed_origin_only(server):
    ok = _preflight(server, APP)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert ok.headers["access-control-allow-headers"] == "*"  # llama-server's default
    assert int(ok.headers["access-control-max-age"]) > 0 and "Origin" in ok.headers["vary"]
    assert ok.headers["access-control-allow-credentials"] == "true"  # on by default, as llama-server
    # names spelled as llama-server's (its own tests compare them case-sensitively)
    raw = {name for name, _ in ok.headers.raw}
    assert {b"Access-Control-Allow-Origin", b"Access-Control-Allow-Methods", b"Access-Control-Allow-Headers"} <= raw
    r = httpx.post(f"{server}/completion", content=BODY, timeout=60,
                   headers={"Origin": APP, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 2
    assert r.headers["access-control-allow-origin"] == APP and "Origin" in r.headers["vary"]
    r = httpx.post(f"{server}/completion", content=BODY, timeout=30, headers={"Origin": APP})
    assert r.status_code == 415  # allowed, but still a browser: JSON only

    for origin in (EVIL, "https://app.example.evil.example", "http://app.example", "https://app.example:8443"):
        no = _preflight(server, origin)
        assert no.status_code == 200 and not any(k.startswith("access-control-") for k in no.headers), origin
        r = httpx.post(f"{server}/completion", content=BODY, timeout=30,
                       headers={"Origin": origin, "Content-Type": "application/json"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, origin


def test_reads_from_a_foreign_origin_get_no_cors_header(server):
    r = httpx.get(f"{server}/health", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert "access-control-allow-origin" not in r.headers and "Origin" in r.headers["vary"]
    r = httpx.get(f"{server}/health", headers={"Origin": APP}, timeout=30)
    assert r.headers["access-control-allow-origin"] == APP


def test_api_key_lets_any_origin_reach_the_key_check(keyed):
    # llama.cpp's tools/server/tests/unit/test_security.py::test_cors_options: the Origin is echoed to a preflight
    for origin in ("localhost", "web.mydomain.fr", EVIL):
        r = _preflight(keyed, origin, "/completions")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-headers"] == "*"
    no_key = httpx.post(f"{keyed}/completion", content=BODY, timeout=30,
                        headers={"Origin": EVIL, "Content-Type": "text/plain"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert no_key.headers["access-control-allow-origin"] == EVIL  # the page may read why
    r = httpx.post(f"{keyed}/completion", content=BODY, timeout=30,
                   headers={**AUTH, "Origin": EVIL, "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(f"{keyed}/completion", content=BODY, timeout=60,
                   headers={"X-Api-Key": API_KEY, "Origin": EVIL, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 2
    assert r.headers["access-control-allow-origin"] == EVIL


# -- the policy, the flags, the app in-process -----------------------------------------------------------------


def test_cors_origins_values():
    from emberllm.edge_server.security import CorsPolicy

    assert not CorsPolicy().allows(APP) and not CorsPolicy.parse("").allows("http://localhost:8080")
    listed = CorsPolicy.parse(" HTTPS://App.Example:443/ , http://localhost:5173")
    assert listed.allows(APP) and listed.allows("http://localhost:5173")
    assert not listed.allows("http://localhost:5174") and not listed.allows("http://app.example")
    local = CorsPolicy.parse("localhost")  # llama-server's special value
    for origin in ("http://localhost", "http://localhost:8080", "http://127.0.0.1:3000", "http://[::1]:3000"):
        assert local.allows(origin), origin
    for origin in ("http://web.mydomain.fr", "http://notlocalhost", "http://localhost.evil.com", "null"):
        assert not local.allows(origin), origin
    assert CorsPolicy.parse("*").allows("null")
    for bad in ("app.example", "https://app.example/path", "ftp://x", "https://u@app.example"):
        with pytest.raises(ValueError, match="--cors-origins"):
            CorsPolicy.parse(bad)
    with pytest.raises(ValueError, match="--cors-headers"):
        CorsPolicy.parse(APP, headers=" ")


def _parse(*argv: str) -> argparse.Namespace:
    from emberllm.edge_server.cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_cors_flags_and_environment(monkeypatch, tmp_path):
    from emberllm.edge_server.cli import config_from_args

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    cfg = config_from_args(_parse("-m", str(model)))
    assert cfg.cors.origins == frozenset() and not cfg.cors.any_origin and not cfg.cors.localhost
    assert cfg.cors.credentials and cfg.cors.headers == "*"  # llama-server's defaults
    cfg = config_from_args(_parse("-m", str(model), "--cors-origins", f"{APP},localhost", "--no-cors-credentials",
                                  "--cors-methods", "POST", "--cors-headers", "Authorization, *"))
    assert cfg.cors.allows(APP) and cfg.cors.localhost and not cfg.cors.credentials
    assert (cfg.cors.methods, cfg.cors.headers) == ("POST", "Authorization, *")
    for opening in (["--ui-mcp-proxy"], ["--tools", "all"], ["--mcp-servers-json", "{}"]):
        cfg = config_from_args(_parse("-m", str(model), *opening))  # llama-server: default origins become localhost
        assert cfg.cors.localhost and not cfg.cors.any_origin, opening
    cfg = config_from_args(_parse("-m", str(model), "--ui-mcp-proxy", "--cors-origins", APP))
    assert cfg.ui_mcp_proxy and not cfg.cors.localhost and cfg.cors.allows(APP)
    with pytest.raises(ValueError, match="--cors-origins"):
        config_from_args(_parse("-m", str(model), "--cors-origins", "evil.example"))
    monkeypatch.setenv("LLAMA_ARG_CORS_ORIGINS", "*")
    monkeypatch.setenv("LLAMA_ARG_CORS_CREDENTIALS", "0")
    cfg = config_from_args(_parse("-m", str(model)))
    assert cfg.cors.any_origin and not cfg.cors.credentials
    monkeypatch.setenv("EMBERLLM_ARG_CORS_CREDENTIALS", "1")  # EMBERLLM_ARG_* wins
    assert config_from_args(_parse("-m", str(model))).cors.credentials
    monkeypatch.setenv("EMBERLLM_ARG_CORS_CREDENTIALS", "0")
    assert not config_from_args(_parse("-m", str(model))).cors.credentials
    assert not config_from_args(_parse("-m", str(model), "--no-cors-credentials")).cors.credentials
    monkeypatch.setenv("LLAMA_ARG_CORS_CREDENTIALS", "maybe")
    with pytest.raises(SystemExit):
        _parse("-m", str(model))


def test_cors_origin_flag_repeats_and_adds_up(monkeypatch, tmp_path):
    from emberllm.edge_server.cli import config_from_args

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    local = "http://127.0.0.1:5173"
    cfg = config_from_args(_parse("-m", str(model), "--cors-origin", APP, "--cors-origin", local))
    assert cfg.cors.origins == {("https", "app.example", 443), ("http", "127.0.0.1", 5173)} and not cfg.cors.any_origin
    cfg = config_from_args(_parse("-m", str(model), "--cors-origins", APP, "--cors-origin", local))
    assert cfg.cors.allows(APP) and cfg.cors.allows(local) and not cfg.cors.allows(EVIL)
    assert config_from_args(_parse("-m", str(model), "--cors-origin", "*")).cors.any_origin
    with pytest.raises(ValueError, match="'evil.example' is not an origin"):
        config_from_args(_parse("-m", str(model), "--cors-origin", APP, "--cors-origin", "evil.example"))
    monkeypatch.setenv("EMBERLLM_ARG_CORS_ORIGIN", EVIL)
    assert config_from_args(_parse("-m", str(model))).cors.allows(EVIL)
    cfg = config_from_args(_parse("-m", str(model), "--cors-origin", APP))  # the command line replaces the variable
    assert cfg.cors.allows(APP) and not cfg.cors.allows(EVIL)


def test_any_origin_without_key_warns_at_start(monkeypatch, capsys, gemma_path):
    import uvicorn

    from emberllm.edge_server import cli

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    monkeypatch.setattr(cli, "check_port_free", lambda host, port: None)
    assert cli.run(_parse("-m", str(gemma_path), "--cors-origins", "*")) == 0
    assert "warning: security: --cors-origins '*' without --api-key" in capsys.readouterr().err
    assert cli.run(_parse("-m", str(gemma_path), "--cors-origins", "*", "--api-key", "k")) == 0
    assert "warning" not in capsys.readouterr().err


def test_any_origin_and_credentials_in_process(gemma_path):
    from starlette.testclient import TestClient

    from emberllm.edge_server import ServerConfig, build_app
    from emberllm.edge_server.security import CorsPolicy

    def client(cors: CorsPolicy) -> TestClient:  # no lifespan: the model is not loaded, the guard answers alone
        return TestClient(build_app(ServerConfig(model_path=gemma_path, webui=False, cors=cors)))

    star = client(CorsPolicy.parse("*", credentials=False))
    r = star.options("/completion", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert r.headers["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in r.headers
    r = star.post("/tokenize", content="{}", headers={"Origin": EVIL, "Content-Type": "text/plain"})
    assert r.status_code == 503 and r.headers["access-control-allow-origin"] == "*"  # not refused: on to the route
    creds = client(CorsPolicy.parse("*", credentials=True))
    r = creds.options("/completion", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Private-Network": "true"})
    assert r.headers["access-control-allow-origin"] == EVIL and r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-private-network"] == "true" and "Origin" in r.headers["vary"]
    default = client(CorsPolicy())
    r = default.put("/completion", content=BODY, headers={"Origin": EVIL, "Content-Type": "application/json"})
    assert r.status_code == 403  # every method but GET, HEAD and OPTIONS
    r = default.post("/completion", content=BODY, headers={"Origin": "http://testserver",
                                                           "Content-Type": "application/json"})
    assert r.status_code == 503  # same origin (scheme + Host): let through, to the loading model


# -- /cors-proxy (llama-server's --ui-mcp-proxy) ----------------------------------------------------------------


@contextlib.contextmanager
def _capturing_target() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A plain HTTP server that records each request's headers; GET answers text, POST 204, /redirect a 302."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.end_headers()
                return
            body = b"from the target " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    target = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{target.server_port}", seen
    finally:
        target.shutdown()
        target.server_close()


def test_cors_proxy_off_by_default(server):
    r = httpx.get(f"{server}/cors-proxy", params={"url": "http://127.0.0.1:1/"}, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["type"] == "feature_disabled"


def test_cors_proxy_forwards_only_named_headers(gemma_path, tmp_path):
    with _capturing_target() as (target, seen), \
            _serve_without_key(gemma_path, tmp_path, "-c", "256", "-t", "1", "--ui-mcp-proxy") as url:
        r = httpx.get(f"{url}/cors-proxy", params={"url": f"{target}/page?q=1"}, timeout=30, headers={
            "Authorization": "Bearer mine", "Cookie": "session=secret", "X-Api-Key": "k",
            "X-Llama-Server-Proxy-Header-Authorization": "Bearer explicit",
            "x-llama-server-proxy-header-accept": "application/json"})
        assert r.status_code == 200 and r.text == "from the target /page?q=1"
        assert r.headers["content-type"] == "text/plain"
        assert seen[-1]["authorization"] == "Bearer explicit" and seen[-1]["accept"] == "application/json"
        assert not {"cookie", "x-api-key", "proxy-authorization"} & set(seen[-1])
        r = httpx.post(f"{url}/cors-proxy", params={"url": target}, json={}, timeout=30)
        assert r.status_code == 204 and r.content == b""
        r = httpx.get(f"{url}/cors-proxy", params={"url": f"{target}/redirect"}, timeout=30)
        assert r.status_code == 302 and r.headers["location"].endswith("/elsewhere")  # answered, not followed
        r = httpx.get(f"{url}/cors-proxy", params={"url": f"{url}/health"}, timeout=30)  # the server itself
        assert r.status_code == 200 and r.json()["status"] == "ok"
        for bad, why in (("file:///etc/passwd", "unsupported URL scheme"), ("http://u:p@127.0.0.1/", "authentication"),
                         ("", "'url' query parameter")):
            r = httpx.get(f"{url}/cors-proxy", params={"url": bad}, timeout=30)
            assert r.status_code == 400 and why in r.json()["error"]["message"], bad
        r = httpx.get(f"{url}/cors-proxy", params={"url": "http://127.0.0.1:1/"}, timeout=30)
        assert r.status_code == 502 and "cannot reach" in r.json()["error"]["message"]
        r = httpx.get(f"{url}/health", timeout=30)
        assert r.status_code == 200  # still serving
        pre = _preflight(url, "http://localhost:5173")  # the proxy limits the default origins to localhost
        assert pre.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "access-control-allow-origin" not in _preflight(url, EVIL).headers
