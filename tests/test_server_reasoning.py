"""Reasoning templates through the real server, as llama-server runs them: ``--reasoning`` and a request's
``chat_template_kwargs`` / ``reasoning_effort`` set the template's ``enable_thinking``; the reply's reasoning comes
back as ``reasoning_content`` (streamed as ``delta.reasoning_content``) per ``reasoning_format``.

The template is QwQ's shape (llama.cpp's models/templates/Qwen-QwQ-32B.jinja): the generation prompt opens the
reasoning with ``<think>`` and, with thinking off, closes it at once.  Gemma 3 270M does not think, so a grammar
makes the reply one that does (reasoning, ``</think>``, an answer); the split is what is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from emberllm.chat.reasoning import ReasoningSplitter, split_reasoning

from .server_fixtures import API_KEY, AUTH, run_server

TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}"
            "{% if not enable_thinking %}{{ '</think>' }}{% endif %}{% endif %}")
# a reply that thinks: the prompt opened <think>, so it reasons, closes it, then answers
GRAMMAR = 'root ::= [a-z]{2,8} " " [a-z]{2,8} "</think>" "\\n\\n" [A-Z] [a-z]{2,10} "."'
MESSAGES = [{"role": "user", "content": "What is two plus two?"}]


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("reasoning")
    (tmp / "qwq.jinja").write_text(TEMPLATE)
    with run_server(gemma_path, tmp, "-c", "1024", "-t", "2", "--chat-template-file", str(tmp / "qwq.jinja"),
                    "--jinja", "--reasoning", "auto") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=300) as c:
        yield c


def test_enable_thinking_reaches_the_template(client: httpx.Client) -> None:
    """--reasoning auto renders enable_thinking true; chat_template_kwargs or reasoning_effort "none" turn it off;
    a non-boolean enable_thinking, an unknown reasoning_format are 400s."""
    def prompt(**extra: object) -> str:
        r = client.post("/apply-template", json={"messages": MESSAGES, **extra})
        assert r.status_code == 200, r.text
        return r.json()["prompt"]

    assert prompt().endswith("<|im_start|>assistant\n<think>\n")
    assert prompt(chat_template_kwargs={"enable_thinking": False}).endswith("<think>\n</think>")
    assert prompt(reasoning_effort="none").endswith("<think>\n</think>")
    for body, word in (({"chat_template_kwargs": {"enable_thinking": "false"}}, "enable_thinking"),
                       ({"reasoning_format": "xml"}, "reasoning_format"),
                       ({"chat_template_kwargs": [1]}, "chat_template_kwargs")):
        r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 2, **body})
        assert r.status_code == 400 and word in r.json()["error"]["message"], r.text


def test_reasoning_content_split_streamed_and_not(server: str, client: httpx.Client) -> None:
    """The reply's reasoning is reasoning_content and the rest content, streamed and not alike; reasoning_format
    none leaves all of it in content, deepseek-legacy fills both; with thinking off nothing is split."""
    oai = OpenAI(base_url=f"{server}/v1", api_key=API_KEY)
    # the same sampling every time: the whole prompt evaluated anew (a cached prefix moves logits slightly)
    body = {"messages": MESSAGES, "max_tokens": 40, "temperature": 0.8, "seed": 3, "grammar": GRAMMAR,
            "cache_prompt": False}
    raw = client.post("/v1/chat/completions", json={**body, "reasoning_format": "none"}).json()
    text = raw["choices"][0]["message"]["content"]
    assert "</think>" in text and "reasoning_content" not in raw["choices"][0]["message"]
    want_reasoning, want_content = split_reasoning(text, ("<think>", "</think>"), opened=True)
    assert want_reasoning and want_content and "</think>" not in want_content

    msg = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert (msg["reasoning_content"], msg["content"]) == (want_reasoning, want_content)
    legacy = client.post("/v1/chat/completions", json={**body, "reasoning_format": "deepseek-legacy"}).json()
    assert legacy["choices"][0]["message"]["reasoning_content"] == want_reasoning
    assert legacy["choices"][0]["message"]["content"] == text

    stream = oai.chat.completions.create(model="gemma", stream=True, **{k: v for k, v in body.items() if k in (
        "messages", "max_tokens", "temperature", "seed")}, extra_body={"grammar": GRAMMAR, "cache_prompt": False})
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == (want_reasoning, want_content)

    off = client.post("/v1/chat/completions", json={**body, "grammar": 'root ::= [A-Z] [a-z]{2,10} "."',
                                                     "chat_template_kwargs": {"enable_thinking": False}}).json()
    assert "reasoning_content" not in off["choices"][0]["message"]


@pytest.mark.parametrize("pieces", [1, 2, 3, 5])
def test_splitter_on_any_cut_of_the_text(pieces: int) -> None:
    """Streamed in any cut, the splitter gives the whole reply's split (tags cut across pieces included)."""
    text = "  <|START_THINKING|>\nweigh a, b\n<|END_THINKING|>\n\nAnswer: b <|START_THINKING|> stays"
    tags = ("<|START_THINKING|>", "<|END_THINKING|>")
    want = split_reasoning(text, tags)
    assert want == ("weigh a, b", "Answer: b <|START_THINKING|> stays")
    for start in range(len(text)):
        cuts = sorted({start, *range(start, len(text), max(1, len(text) // pieces))})
        splitter = ReasoningSplitter(*tags)
        reasoning = content = ""
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            r, c = splitter.feed(text[a:b])
            reasoning, content = reasoning + r, content + c
        r, c = splitter.flush()
        assert ((reasoning + r).strip(), content + c) == want
