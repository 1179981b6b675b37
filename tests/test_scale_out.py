"""Scale-out: three ``emberllm serve`` boxes behind LiteLLM's proxy (``deploy/litellm/config.yaml`` as shipped).

60 streamed chats through the official ``openai`` client at concurrency 6; one box is killed (SIGKILL) mid-run.
What is guaranteed, and checked: every chat ends with a complete reply. A request the dead box had not started
streaming is retried by the proxy on another box (the client never sees it); a stream the box had already begun is
cut, the proxy ends it with an error event (no proxy can splice a half-sent reply) and the client sends it again.
Figures (requests, proxy retries, client retries, p50/p95 latency) go to ``tests/artifacts/scale_out.json``.
Needs PyPI ``litellm[proxy]`` (build_scripts/test.sh installs the ``scale-out`` extra); skips without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .llamacpp import in_ci
from .server_fixtures import API_KEY, AUTH, RunningServer, free_port, run_server, stop

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "litellm" / "config.yaml"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MASTER_KEY = "sk-proxy-test"
N_REQUESTS = 60
CONCURRENCY = 6
KILL_AFTER = 20  # finished chats before one box is killed
MAX_TOKENS = 12
BOX_ARGS = ("-c", "1024", "-np", "2", "-t", "1", "--metrics")


def _litellm() -> str:
    """The ``litellm`` command: ``$EMBERLLM_LITELLM``, the venv build_scripts/test.sh makes, or on the PATH."""
    from emberllm.runtime.model_store import cache_dir

    for candidate in (os.environ.get("EMBERLLM_LITELLM"), cache_dir() / "litellm-venv" / "bin" / "litellm",
                      Path(sys.executable).with_name("litellm"), shutil.which("litellm")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    _unavailable("LiteLLM's proxy is not installed: build_scripts/test.sh puts it in its own venv "
                 f"({cache_dir() / 'litellm-venv'}: pip install 'litellm[proxy]'), or set EMBERLLM_LITELLM")
    raise AssertionError  # unreachable


def _unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail with it under ``CI=true`` (CI installs the proxy: the test must run there)."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true]", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def litellm_proxy(boxes: list[RunningServer], log_dir: Path, spare: RunningServer) -> Iterator[str]:
    """``litellm --config deploy/litellm/config.yaml`` on 127.0.0.1 with the boxes' URLs in its environment."""
    exe = _litellm()
    port = free_port()
    env = {**os.environ, "EMBER_API_KEY": API_KEY, "LITELLM_MASTER_KEY": MASTER_KEY,
           "EMBER_SPARE_API_BASE": f"{spare.url}/v1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
    env.update({f"EMBER_{i + 1}_API_BASE": f"{box.url}/v1" for i, box in enumerate(boxes)})
    log_path = log_dir / "litellm.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([exe, "--config", str(CONFIG), "--host", "127.0.0.1", "--port", str(port),
                                 "--num_workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 150
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"litellm exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"litellm not up after 150 s: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop(proc)


@dataclass
class Attempt:
    box: str | None
    proxy_retries: int
    proxy_fallbacks: int
    ok: bool
    had_content: bool
    started: float
    seconds: float
    error: str = ""


@dataclass
class Chat:
    index: int
    attempts: list[Attempt] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


def _chat_once(client: Any, chat: Chat, t0: float) -> bool:
    """One streamed attempt of ``chat``; False when it failed (recorded)."""
    import openai

    start = time.perf_counter()
    attempt = Attempt(None, 0, 0, False, False, start - t0, 0.0)
    chat.attempts.append(attempt)
    text, finish = "", None
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gemma3", messages=[{"role": "user", "content": f"A short line about the number {chat.index}."}],
            max_tokens=MAX_TOKENS, temperature=0, stream=True)
        attempt.box = raw.headers.get("x-litellm-model-id")
        attempt.proxy_retries = int(raw.headers.get("x-litellm-attempted-retries") or 0)
        attempt.proxy_fallbacks = int(raw.headers.get("x-litellm-attempted-fallbacks") or 0)
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                attempt.had_content = True
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
    except (openai.APIError, httpx.HTTPError) as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:300]
    attempt.seconds = time.perf_counter() - start
    if attempt.error or finish is None:
        attempt.error = attempt.error or "stream ended without a finish_reason"
        return False
    attempt.ok = True
    chat.text, chat.finish_reason = text, finish
    return True


@pytest.fixture(scope="module")
def boxes(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(run_server(gemma_path, tmp_path_factory.mktemp(f"box{i}"), *BOX_ARGS))
               for i in range(3)]


def test_health_reports_free_slots(boxes: list[RunningServer]) -> None:
    """``/health`` says how many slots are idle (llama-server's older fields); ``?fail_on_no_slot=1`` is a 503
    while none is, for a router's health check."""
    url = boxes[0].url
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "slots_idle": 2, "slots_processing": 0}
    body = {"prompt": "Once upon a time", "n_predict": 200, "temperature": 0, "stream": True}
    seen: list[dict[str, Any]] = []
    with httpx.Client(timeout=120, headers=AUTH) as client, \
            client.stream("POST", f"{url}/completion", json=body) as a, \
            client.stream("POST", f"{url}/completion", json=body) as b:
        lines = [a.iter_lines(), b.iter_lines()]  # kept: a dropped iterator closes its response
        assert all(next(it).startswith("data: ") for it in lines)  # both slots are generating
        r = httpx.get(f"{url}/health", params={"fail_on_no_slot": "1"})
        seen.append(r.json())
        assert r.status_code == 503 and r.json()["status"] == "no slot available", r.text
        assert httpx.get(f"{url}/health").json() == {"status": "ok", "slots_idle": 0, "slots_processing": 2}
        slots = httpx.get(f"{url}/slots", headers=AUTH).json()
        assert [s["is_processing"] for s in slots] == [True, True]
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health").json()["slots_idle"] != 2:  # the cancelled streams free their slots
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert httpx.get(f"{url}/health", params={"fail_on_no_slot": "1"}).status_code == 200
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert "llamacpp:requests_processing 0" in metrics and "llamacpp:requests_total" in metrics


def test_failover_behind_litellm(boxes: list[RunningServer], tmp_path: Path) -> None:
    import openai

    victim = boxes[1]
    with litellm_proxy(boxes, tmp_path, spare=boxes[2]) as proxy:
        client = openai.OpenAI(base_url=f"{proxy}/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
        chats = [Chat(i) for i in range(N_REQUESTS)]
        done = threading.Semaphore(0)
        killed: dict[str, Any] = {}
        t0 = time.perf_counter()

        def run(chat: Chat) -> None:
            for _ in range(3):  # the client's own retries: only for a stream cut after it began
                if _chat_once(client, chat, t0):
                    break
            done.release()

        def killer() -> None:
            for _ in range(KILL_AFTER):
                done.acquire()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # kill it while it generates: the kill must cut work in flight
                killed["busy_slots"] = httpx.get(f"{victim.url}/health", timeout=5).json()["slots_processing"]
                if killed["busy_slots"]:
                    break
                time.sleep(0.02)
            killed["at"] = time.perf_counter() - t0
            victim.proc.send_signal(signal.SIGKILL)

        watcher = threading.Thread(target=killer)
        watcher.start()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(run, chats))
        watcher.join()
        wall = time.perf_counter() - t0
        # the proxy's health checks run in the background (every 15 s): wait for one to have seen the dead box
        deadline = time.monotonic() + 90
        while True:
            health = httpx.get(f"{proxy}/health", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                               timeout=120).json()
            dead = [e["api_base"] for e in health.get("unhealthy_endpoints", [])]
            if f"{victim.url}/v1" in dead or time.monotonic() > deadline:
                break
            time.sleep(2)

    attempts = [a for c in chats for a in c.attempts]
    client_retries = [a for a in attempts if not a.ok]
    boxes_used = {a.box for a in attempts if a.ok}
    latencies = sorted(c.attempts[-1].seconds for c in chats if c.finish_reason)
    figures = {
        "requests": N_REQUESTS, "completed": sum(1 for c in chats if c.finish_reason), "concurrency": CONCURRENCY,
        "killed_after_s": round(killed["at"], 2), "busy_slots_on_killed_box": killed["busy_slots"],
        "proxy_retries": sum(a.proxy_retries for a in attempts if a.ok),
        "proxy_fallbacks": sum(a.proxy_fallbacks for a in attempts if a.ok),
        "client_retries": len(client_retries),
        "replies_per_box": {b: sum(1 for a in attempts if a.ok and a.box == b) for b in sorted(boxes_used)},
        "p50_s": round(latencies[len(latencies) // 2], 3), "p95_s": round(latencies[int(len(latencies) * 0.95)], 3),
        "wall_s": round(wall, 1), "client_errors": sorted({a.error[:120] for a in client_retries}),
        "proxy_health": {"healthy": health.get("healthy_count"), "unhealthy": health.get("unhealthy_count")},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "scale_out.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))

    failed = [asdict(c) for c in chats if not c.finish_reason or not c.text.strip()]
    assert not failed, failed[:3]  # no request lost
    assert killed["busy_slots"] >= 1, killed  # the kill cut work in flight
    assert {"ember-1", "ember-2", "ember-3"} <= boxes_used, boxes_used
    after_kill = [a for a in attempts if a.ok and a.started > killed["at"] + 1.0]
    assert after_kill and not any(a.box == "ember-2" for a in after_kill), "a reply came from the dead box"
    # a failure the client saw is a stream the dead box had begun: at most one per slot busy when it died
    for a in client_retries:
        assert a.box == "ember-2" and a.started < killed["at"], asdict(a)
    assert len(client_retries) <= killed["busy_slots"], [asdict(a) for a in client_retries]
    assert figures["proxy_retries"] + len(client_retries) >= 1, figures  # the kill was noticed and worked around
    # the proxy's health check (a 1-token chat per box) finds the dead box, and only it
    assert [e["api_base"] for e in health["unhealthy_endpoints"]] == [f"{victim.url}/v1"], health
    assert health["healthy_count"] == 3, health  # ember-1, ember-3 and the spare group's box
