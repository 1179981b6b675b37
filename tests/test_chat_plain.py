"""The jinja-free chat renderer (used in Pyodide) against the Jinja built-ins and the real Gemma file."""

from __future__ import annotations

from pathlib import Path

import pytest

from emberllm.chat.plain import PLAIN_FAMILIES, plain_family, plain_prompt, render_plain
from emberllm.chat.template import ChatTemplate
from emberllm.gguf.reader import GGUFFile

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  What is 2+2?\n"}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": " Bonjour ! "},
        {"role": "user", "content": [{"type": "text", "text": "Count"}, {"type": "text", "text": "to three"}]},
    ],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "system", "content": "late"},
     {"role": "user", "content": ""}],
]

SPECIALS = [{"bos_token": "<s>", "eos_token": "</s>"}, {}]


@pytest.mark.parametrize("family", sorted(PLAIN_FAMILIES))
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("specials", range(len(SPECIALS)))
@pytest.mark.parametrize("gen", [True, False])
def test_plain_matches_jinja_builtin(family: str, conv: int, specials: int, gen: bool) -> None:
    sp = SPECIALS[specials]
    jinja = ChatTemplate.builtin(family, special_tokens=sp).render(CONVERSATIONS[conv], add_generation_prompt=gen)
    plain = render_plain(family, CONVERSATIONS[conv], sp.get("bos_token"), sp.get("eos_token"), gen)
    assert plain == jinja


def test_plain_prompt_equals_engine_for_gemma(gemma_path: Path) -> None:
    gguf = GGUFFile.open(gemma_path)
    try:
        md = gguf.metadata
        assert plain_family(md) == "gemma"
        template = ChatTemplate.from_metadata(md)
        for conv in CONVERSATIONS:
            text, stops = plain_prompt(md, conv)
            assert text == template.render_prompt(conv)
            assert stops == template.stop_strings
    finally:
        gguf.close()


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="no plain renderer"):
        render_plain("vicuna", CONVERSATIONS[0])
