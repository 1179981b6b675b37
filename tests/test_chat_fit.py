"""Fitting a conversation into the context (emberllm.chat.fit): which turns go, the error, the number of counts,
and on the Gemma model's own tokenizer and template."""

from __future__ import annotations

import math
import random

import pytest

from emberllm.chat.fit import fit_messages, reply_reserve
from emberllm.chat.plain import plain_prompt
from emberllm.runtime.model import Model


def counter(calls: list[int] | None = None):
    """A synthetic prompt length: 4 tokens per message plus one per character of content."""

    def count(messages: list[dict]) -> int:
        if calls is not None:
            calls.append(len(messages))
        return sum(4 + len(m["content"]) for m in messages)

    return count


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def conversation(n_turns: int, size: int = 10) -> list[dict]:
    out = [msg("system", "s" * size)]
    for i in range(n_turns):
        out += [msg("user", f"u{i}".ljust(size, ".")), msg("assistant", f"a{i}".ljust(size, "."))]
    return out + [msg("user", "last".ljust(size, "."))]


def test_a_conversation_that_fits_is_left_alone_after_one_count():
    calls: list[int] = []
    msgs = conversation(3)
    fit = fit_messages(counter(calls), msgs, n_ctx=1000, n_reserve=100)
    assert fit.messages == msgs and fit.dropped == 0
    assert len(calls) == 1


def test_the_oldest_whole_turns_go_first_and_no_more_than_needed():
    msgs = conversation(5)  # 12 messages of 14 tokens: 168
    count = counter()
    fit = fit_messages(count, msgs, n_ctx=130, n_reserve=20)  # room for 110: 7 messages (98)
    assert fit.dropped == 6
    assert fit.messages == [msgs[0], *msgs[7:]]
    assert count(fit.messages) + 20 <= 130
    assert count([msgs[0], *msgs[5:]]) + 20 > 130  # one turn fewer dropped would not fit


def test_system_messages_anywhere_and_what_follows_the_last_user_message_stay():
    msgs = [msg("assistant", "hello, how can I help?"), msg("user", "u0" * 10), msg("system", "mid-chat system"),
            msg("assistant", "a0" * 10), msg("user", "u1" * 10), msg("assistant", "a1" * 10),
            msg("user", "question"), msg("assistant", "prefill")]
    count = counter()
    budget = count([msgs[2], *msgs[4:]])
    fit = fit_messages(count, msgs, n_ctx=budget, n_reserve=0)
    # the greeting is a turn of its own, the user/assistant pair around the system message is one turn
    assert fit.messages == [msgs[2], *msgs[4:]] and fit.dropped == 3
    fit = fit_messages(count, msgs, n_ctx=count(msgs) - 1, n_reserve=0)
    assert fit.messages == msgs[1:] and fit.dropped == 1


def test_too_long_a_last_message_is_a_clear_error():
    msgs = [msg("system", "be brief"), msg("user", "x" * 50), msg("assistant", "ok"), msg("user", "y" * 500)]
    with pytest.raises(ValueError) as err:
        fit_messages(counter(), msgs, n_ctx=400, n_reserve=64)
    text = str(err.value)
    assert text == ("the last message and system prompt take 516 tokens (+64 kept for the reply); the context "
                    "holds 400: shorten it or raise Context")
    with pytest.raises(ValueError, match="take 504 tokens; the context holds 400"):
        fit_messages(counter(), [msg("user", "y" * 500)], n_ctx=400, n_reserve=0)
    with pytest.raises(ValueError, match="no messages"):
        fit_messages(counter(), [], n_ctx=400, n_reserve=0)


def test_the_search_counts_a_logarithmic_number_of_times():
    calls: list[int] = []
    msgs = conversation(1000)
    fit = fit_messages(counter(calls), msgs, n_ctx=2000, n_reserve=100)
    assert 0 < fit.dropped < len(msgs)
    assert len(calls) <= 2 + math.ceil(math.log2(1000))


def test_the_binary_search_finds_what_a_linear_search_finds():
    rng = random.Random(5)
    count = counter()
    for _ in range(300):
        msgs = [msg("system", "s" * rng.randint(0, 30))] if rng.random() < 0.7 else []
        for _ in range(rng.randint(0, 12)):
            msgs.append(msg(rng.choice(["user", "assistant", "assistant", "system"]), "x" * rng.randint(0, 60)))
        msgs.append(msg("user", "q" * rng.randint(1, 40)))
        n_ctx, reserve = rng.randint(20, 500), rng.randint(0, 50)
        # the linear reference: keep everything from the earliest cut that fits (and the system messages)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        cuts = [0, *(i for i in range(last) if msgs[i]["role"] == "user"), last]
        candidates = ([m for i, m in enumerate(msgs) if i >= cut or m["role"] == "system"] for cut in cuts)
        expected = next((kept for kept in candidates if count(kept) + reserve <= n_ctx), None)
        if expected is None:
            with pytest.raises(ValueError, match="shorten it or raise Context"):
                fit_messages(count, msgs, n_ctx, reserve)
            continue
        fit = fit_messages(count, msgs, n_ctx, reserve)
        assert fit.messages == expected
        assert fit.dropped == len(msgs) - len(expected)


def test_reply_reserve():
    assert reply_reserve(256, 2048) == 256
    assert reply_reserve(1024, 2048) == 512
    assert reply_reserve(-1, 2048) == 512
    assert reply_reserve(0, 2048) == 1
    assert reply_reserve(100, 2) == 1


SENTENCES = ["The lighthouse keeper logged every ship that passed the northern cape.",
             "Rain fell on the terraced vineyards for three days without a pause.",
             "A chemist measured the boiling point of the new solvent twice.",
             "Children in the village learned to read from a travelling librarian.",
             "The orchestra tuned for an hour before the premiere of the symphony.",
             "Engineers replaced the bridge cables one strand at a time."]


def long_chat(n_turns: int) -> list[dict]:
    msgs = [msg("system", "You are a concise assistant.")]
    for i in range(n_turns):
        msgs.append(msg("user", f"Question {i}: " + " ".join(SENTENCES[(i + k) % 6] for k in range(3))))
        msgs.append(msg("assistant", f"Answer {i}: " + " ".join(SENTENCES[(i * 5 + k) % 6] for k in range(2))))
    return msgs + [msg("user", "Summarise the last answer in one sentence.")]


@pytest.fixture(scope="module")
def gemma(gemma_path):
    m = Model(gemma_path, n_ctx=512, n_threads=2, warmup=False)
    yield m
    m.close()


@pytest.mark.parametrize("renderer", ["jinja", "plain"])
def test_gemma_conversation_fits_its_context(gemma, renderer):
    m = gemma

    def render(msgs: list[dict]) -> str:
        return m.apply_chat_template(msgs) if renderer == "jinja" else plain_prompt(m.gguf.metadata, msgs)[0]

    def count(msgs: list[dict]) -> int:
        return len(m.tokenize(render(msgs)))

    msgs = long_chat(16)
    assert count(msgs) > 2 * m.n_ctx
    reserve = reply_reserve(256, m.n_ctx)
    fit = fit_messages(count, msgs, m.n_ctx, reserve)
    assert fit.dropped > 0 and fit.dropped % 2 == 0  # whole user/assistant turns
    assert fit.messages[0] == msgs[0] and fit.messages[-1] == msgs[-1]
    assert fit.messages[1]["role"] == "user"
    n = count(fit.messages)
    assert n + reserve <= m.n_ctx
    back = [msgs[0], *msgs[len(msgs) - len(fit.messages) - 1:]]  # one more turn would not fit
    assert count(back) + reserve > m.n_ctx
    steps = list(m.generate(render(fit.messages), n_predict=4, temperature=0))
    assert steps[-1].finish_reason in ("stop", "length")
    assert m.timings.prompt_tokens + m.timings.cached_tokens == n
