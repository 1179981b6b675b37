"""llama-server's ``--context-shift`` in the real server (``-c 512 -np 2``: 256 positions a slot), over HTTP; and
sampling flags on its command line (``--top-k 1``) as the defaults of requests.

With it, a slot whose context fills while generating keeps ``n_keep`` tokens (and BOS), drops half of the rest (or
``n_discard``) and goes on, exactly as ``Model.generate`` does alone; a conversation longer than the context loses
its oldest turns.  Without it (the default, tests/test_server_parallel.py), generation stops at the context's end
and a prompt that does not fit is llama-server's ``exceed_context_size_error``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from .server_fixtures import API_KEY, AUTH, run_server

N_CTX = 512
N_SLOTS = 2
SLOT_CTX = N_CTX // N_SLOTS
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
         "ex ea commodo consequat.")


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(gemma_path, tmp_path_factory.mktemp("server_shift"), "-c", str(N_CTX), "-np", str(N_SLOTS),
                    "-t", "2", "--context-shift", "--top-k", "1", "--no-slots", "-a", "zeta,alpha",
                    "--tags", "t2,t1") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=300) as c:
        yield c


def test_generation_past_the_context_shifts_like_the_engine(client: httpx.Client, gemma_path: Path) -> None:
    """A prompt of most of a slot plus 96 tokens: the slot shifts (truncated) and the greedy text is the engine's
    own context shift's, for the default and for n_keep / n_discard."""
    from emberllm.runtime.model import Model

    with Model(gemma_path, n_ctx=SLOT_CTX, n_threads=2) as engine:
        prompt = " ".join([LOREM] * 5)
        n_prompt = len(engine.tokenize(prompt))
        assert SLOT_CTX - 96 < n_prompt < SLOT_CTX - 8, n_prompt
        for extra in ({}, {"n_keep": 16}, {"n_keep": -1, "n_discard": 8}, {"n_discard": 40}):
            r = client.post("/completion", json={"prompt": prompt, "n_predict": 96, "temperature": 0,
                                                 "ignore_eos": True, **extra})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["timings"]["prompt_n"] + body["tokens_cached"] == n_prompt
            assert body["tokens_predicted"] == 96 and body["truncated"] is True, extra
            engine.sequence.clear()
            steps = list(engine.generate(prompt, n_predict=96, temperature=0, ignore_eos=True,
                                         n_keep=extra.get("n_keep", 0), **{k: v for k, v in extra.items()
                                                                           if k == "n_discard"}))
            assert body["content"] == "".join(s.text for s in steps), extra


def test_reply_three_times_the_context_completes(server: str) -> None:
    """max_tokens of three slots' worth through the official client: all of it, finish_reason "length"."""
    oai = OpenAI(base_url=f"{server}/v1", api_key=API_KEY, timeout=600)
    out = oai.chat.completions.create(model="gemma", messages=[{"role": "user", "content": "Tell me a story."}],
                                      max_tokens=3 * SLOT_CTX, temperature=0.8, seed=3,
                                      extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 3 * SLOT_CTX
    assert out.choices[0].finish_reason == "length"


def test_chat_three_times_the_context_completes(server: str) -> None:
    """A conversation that grows to over three slots' context: every turn answers, streamed and not; once the
    history no longer fits, its oldest turns are left out (X-Messages-Dropped) and the system prompt stays."""
    oai = OpenAI(base_url=f"{server}/v1", api_key=API_KEY, timeout=600)
    system = {"role": "system", "content": "You are a terse assistant."}
    history: list[dict[str, str]] = []
    total_words, dropped, turn = 0, [], 0
    while total_words < 3 * SLOT_CTX:
        history.append({"role": "user", "content": f"Turn {turn}: {LOREM}"})
        if turn % 2:
            raw = oai.chat.completions.with_raw_response.create(model="gemma", messages=[system, *history],
                                                                 max_tokens=24, temperature=0.7, seed=turn)
            reply = raw.parse().choices[0].message.content or ""
            prompt_tokens = raw.parse().usage.prompt_tokens
        else:
            with oai.chat.completions.with_streaming_response.create(
                    model="gemma", messages=[system, *history], max_tokens=24, temperature=0.7, seed=turn,
                    stream=True, stream_options={"include_usage": True}) as raw:
                chunks = list(raw.parse())
            reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            prompt_tokens = chunks[-1].usage.prompt_tokens
        assert prompt_tokens < SLOT_CTX
        dropped.append(int(raw.headers.get("x-messages-dropped", "0")))
        history.append({"role": "assistant", "content": reply})
        total_words += len(LOREM.split()) + len(reply.split())
        turn += 1
    assert dropped[0] == 0 and dropped[-1] > 0, dropped
    # the number left out grows with the conversation, by whole turns (user + assistant)
    assert all(b >= a for a, b in zip(dropped, dropped[1:], strict=False)), dropped
    assert all(d % 2 == 0 for d in dropped), dropped


def test_a_last_message_longer_than_the_context_is_still_refused(client: httpx.Client) -> None:
    words = " ".join(f"word{i}" for i in range(SLOT_CTX))
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": words}],
                                                  "max_tokens": 4})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "exceed_context_size_error" and err["n_ctx"] == SLOT_CTX and err["n_prompt_tokens"] > 0
    assert "exceeds the available context size" in err["message"]
    assert client.get("/health").status_code == 200


def test_command_line_sampling_flags_are_request_defaults(client: httpx.Client) -> None:
    """--top-k 1 on the command line: requests that do not set top_k are greedy whatever their seed; /props says so;
    a request's own top_k still wins."""
    assert client.get("/props").json()["default_generation_settings"]["params"]["top_k"] == 1
    no_slots = client.get("/slots")  # --no-slots, as llama-server
    assert no_slots.status_code == 501 and "--slots" in no_slots.json()["error"]["message"]
    body = {"prompt": "Once upon a time", "n_predict": 12, "temperature": 1.5}
    texts = {client.post("/completion", json={**body, "seed": seed}).json()["content"] for seed in (1, 2, 3)}
    greedy = client.post("/completion", json={**body, "temperature": 0}).json()["content"]
    assert texts == {greedy}
    free = {client.post("/completion", json={**body, "seed": seed, "top_k": 0}).json()["content"] for seed in (1, 2, 3)}
    assert len(free) > 1


def test_aliases_and_tags_in_models(client: httpx.Client) -> None:
    """llama-server's comma-separated --alias and --tags: /v1/models lists them, the id is the first alias in order."""
    model = client.get("/v1/models").json()["data"][0]
    assert (model["id"], model["aliases"], model["tags"]) == ("alpha", ["alpha", "zeta"], ["t1", "t2"])
