"""The BPE pre-tokenizers named by ``tokenizer.ggml.pre`` (Tekken, GPT-4o, GLM-4, Qwen3.5, Kimi K2...), checked on
the mixed-script corpus against Hugging Face ``tokenizers`` and llama.cpp's ``llama-tokenize``.

No model hub is reachable, so for each pre-tokenizer a byte-level BPE vocabulary is trained here with PyPI
``tokenizers`` on the corpus itself, using the pre-tokenizer of the model's tokenizer.json, and written as a
vocabulary-only GGUF file. Three tokenizers then read the corpus:

* ours, loaded from the GGUF file's metadata;
* Hugging Face's, once with the model's own regexes ("model") and once with llama.cpp's regexes written for
  Oniguruma ("llama.cpp's regex": llama.cpp reads ``\\p{Lu}`` as any letter and has no marks in
  ``(?=[\\p{L}])``, and its custom splitters for Kimi K2 and digit groups are written out as regexes);
* llama.cpp's ``llama-tokenize`` on the GGUF file (the corpus lines joined by a control token, which cuts the
  text into independent fragments), skipped when llama.cpp is not built (failed under ``CI=true``).

Ours must equal llama.cpp's everywhere, Hugging Face's with llama.cpp's regexes everywhere, and the model's own
tokenizer on every line where llama.cpp's regexes and the model's agree.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pytest

from emberllm.convert.hf_vocab import vocab_metadata
from emberllm.gguf.reader import GGUFFile
from emberllm.tokenizers import BPETokenizer, load_tokenizer
from emberllm.tokenizers.pretokenize import KNOWN_UNSUPPORTED_PRE, SUPPORTED_PRE, pre_tokenizer
from tests.tokenizer_corpus import corpus

from . import llamacpp
from .gguf_builder import write_vocab_gguf

hf_tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<s>", "</s>", "<|sep|>"]
BOS, EOS, SEP = 0, 1, 2

# --- regexes in Oniguruma's syntax -------------------------------------------------------------------------
_C_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_C = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_TAIL_SLASH = r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_UP_HF = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LO_HF = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_UP = r"(?:(?=[\p{L}])[^a-z])"
_LO = r"(?:(?=[\p{L}])[^A-Z])"
_LLAMA3 = _C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}" + _TAIL
_LLAMA3_HF = _C_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}" + _TAIL
_QWEN2 = _C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + _TAIL
_QWEN2_HF = _C_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + _TAIL
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
#: AFMoE's digit groups as llama.cpp's code makes them (the text before a run joins its first group)
_DIGIT_GROUPS = r"\P{N}*\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))"
_HAN = r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}"
_PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
_DEEPSEEK3 = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
              r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class Case:
    """A pre-tokenizer: llama.cpp's splits and (when they differ) the model's, as Hugging Face ``Split``s."""

    llama: tuple[str, ...]
    model: tuple[str, ...] | None = None
    ignore_merges: bool = False
    add_bos: bool = False


_LEAD = r"[^\r\n\p{L}\p{N}]?"
_TEKKEN_HF = _LEAD + _UP_HF + "*" + _LO_HF + "+|" + _LEAD + _UP_HF + "+" + _LO_HF + r"*|\p{N}" + _TAIL_SLASH
_GPT4O_HF = (_LEAD + _UP_HF + "*" + _LO_HF + "+" + _C_HF + "?|" + _LEAD + _UP_HF + "+" + _LO_HF + "*" + _C_HF
             + r"?|\p{N}{1,3}" + _TAIL_SLASH)

CASES: dict[str, Case] = {
    "tekken": Case((_LEAD + _UP + "*" + _LO + "+|" + _LEAD + _UP + "+" + _LO + r"*|\p{N}" + _TAIL_SLASH,),
                   (_TEKKEN_HF,), ignore_merges=True, add_bos=True),
    "gpt-4o": Case((_LEAD + _UP + "*" + _LO + "+" + _C + "?|" + _LEAD + _UP + "+" + _LO + "*" + _C
                    + r"?|\p{N}{1,3}" + _TAIL_SLASH,), (_GPT4O_HF,)),
    "granite-embed-multi-97m": Case(
        (r"[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])*(?:(?=[\p{L}\p{M}])[^A-Z])+" + _C + "?"
         r"|[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])+(?:(?=[\p{L}\p{M}])[^A-Z])*" + _C + "?"
         r"|\p{N}{1,3}" + _TAIL_SLASH,), (_GPT4O_HF,), ignore_merges=True),
    "tiny_aya": Case((_DIGIT_GROUPS, r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+" + _C + r"?|\p{N}{1,3}" + _TAIL_SLASH),
                     (r"\d{1,3}(?=(?:\d{3})*\b)", _GPT4O_HF)),
    "chatglm-bpe": Case((_LLAMA3,), (_LLAMA3_HF,)),
    "glm4": Case((_LLAMA3,), (_LLAMA3_HF,), ignore_merges=True),
    "grok-2": Case((_QWEN2,), (_QWEN2_HF,)),
    "qwen35": Case((_C + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
                    r"|\s+(?!\S)|\s+",),
                   (_C_HF + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
                    r"|\s+(?!\S)|\s+",)),
    "seed-coder": Case((_C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",),
                       (_C_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)"
                        r"|\s+",)),
    "bailingmoe": Case((r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",),
                       (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                        r"|\s*[\r\n]|\s+(?!\S)|\s+",)),
    "exaone-moe": Case((_C + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",),
                       (_C_HF + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",)),
    "jais-2": Case((_C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
                    + "|".join(rf"\s{{{n}}}(?!\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4, "1,2")) + r"|\s{1}",)),
    "minicpm5": Case((r"\p{N}{1,3}", _C + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+" + _TAIL), ignore_merges=True),
    "ufakzeka": Case((r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + _TAIL,)),
    "laguna": Case((r"[^\n]+|[\n]+", _QWEN2)),
    "superbpe": Case((r"\p{N}+", r"(?=(?:[0-9]{3})+(?![0-9]))")),
    "kimi-k2": Case((f"[{_HAN}]+|[^\\r\\n\\p{{L}}\\p{{N}}]?[\\p{{L}}&&[^{_HAN}]]+{_C}?|\\p{{N}}{{1,3}}"
                     r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",)),
    "afmoe": Case((_DIGIT_GROUPS,
                   "[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f\u2f00-\u2fdf"
                   "\u0e40-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff\uac00-\ud7af"
                   "\u1100-\u11ff]+", _DEEPSEEK3)),
    "youtu": Case(("[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a\uff1b\uff0c"
                   "\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                   r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+" + _C + r"?|\p{N}" + _TAIL_SLASH), ignore_merges=True),
    "spark2_5": Case((r"\p{N}{1,3}", _CJK_KANA,
                      r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
                      r"| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+", r"\p{N}")),
    "chameleon": Case(("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", r"\p{N}",
                       r"[\p{P}!-/:-@\[-`{-~]", _GPT2), add_bos=True),
    "viking": Case((_PORO, r"\p{N}")),
    "poro-chat": Case((_PORO,)),
    "falcon": Case((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]")),
    "default": Case((r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]")),
    "deepseek-coder": Case(("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+",
                            "[[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]&&\\S]+", r"\p{N}")),
}


def _hf_tokenizer(splits: tuple[str, ...], ignore_merges: bool) -> Any:
    """An untrained byte-level BPE tokenizer with ``splits`` (Split, Isolated) before the byte-level step."""
    t = hf_tokenizers
    tok = t.Tokenizer(t.models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = t.pre_tokenizers.Sequence(
        [t.pre_tokenizers.Split(t.Regex(s), "isolated") for s in splits]
        + [t.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = t.decoders.ByteLevel()
    return tok


def _with_splits(trained: Any, splits: tuple[str, ...]) -> Any:
    """The trained tokenizer with other splits."""
    data = json.loads(trained.to_str())
    data["pre_tokenizer"] = json.loads(_hf_tokenizer(splits, False).to_str())["pre_tokenizer"]
    return hf_tokenizers.Tokenizer.from_str(json.dumps(data))


def _metadata(name: str, trained: Any) -> dict[str, Any]:
    """GGUF tokenizer metadata of a trained tokenizer (as llama.cpp's converter writes a byte-level BPE)."""
    data = json.loads(trained.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    tokens = [""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    types = [3 if text in SPECIALS else 1 for text in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": name, "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": EOS,
    }
    if name not in ("chatglm-bpe", "glm4"):  # GLM-4 has no BOS: llama.cpp gives it none by default
        meta["tokenizer.ggml.bos_token_id"] = BOS
    return meta


@dataclass
class Built:
    """One pre-tokenizer's trained vocabulary: its GGUF file, our tokenizer and Hugging Face's two."""

    path: Path
    ours: BPETokenizer
    hf_llama: Any
    hf_model: Any | None
    trained: Any

    @cached_property
    def ids(self) -> list[list[int]]:
        """Our ids of every text of ``TEXTS`` (no BOS)."""
        return [self.ours.encode(line, add_special=False, parse_special=True) for line in TEXTS]


def _wild_lines(n: int = 150, seed: int = 20) -> list[str]:
    """Random lines over all of Unicode's assigned code points (no surrogates or private use), mixed with the
    ASCII that the regexes name (case, digits, apostrophes, spaces, newlines)."""
    rng = random.Random(seed)
    ascii_bits = list("aZ09'sStT ll\r\n\t /.,!?") + ["'re", "'VE", " x", "  ", "\n\n"]
    lines = []
    while len(lines) < n:
        chars = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.4:
                chars.append(rng.choice(ascii_bits))
                continue
            cp = rng.choice([rng.randint(0x80, 0x2FFF), rng.randint(0x3000, 0xFFFF), rng.randint(0x10000, 0x2FFFF)])
            if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co"):
                chars.append(chr(cp))
        lines.append("".join(chars))
    return lines


#: the corpus (the vocabularies are trained on it)
LINES = corpus(["</s>"])
#: what the tokenizers are compared on: the corpus and random lines
TEXTS = LINES + _wild_lines()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """``built(name)``: the vocabulary trained with ``name``'s model pre-tokenizer, written and loaded."""
    root = tmp_path_factory.mktemp("pre-gguf")

    @cache
    def build(name: str) -> Built:
        case = CASES[name]
        trained = _hf_tokenizer(case.model or case.llama, case.ignore_merges)
        trainer = hf_tokenizers.trainers.BpeTrainer(
            vocab_size=3000, special_tokens=SPECIALS, show_progress=False,
            initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
        trained.train_from_iterator(LINES, trainer)
        path = root / f"{name}.gguf"
        write_vocab_gguf(_metadata(name, trained), path)
        with GGUFFile.open(path) as f:
            ours = load_tokenizer(dict(f.metadata))
        assert isinstance(ours, BPETokenizer)
        hf_model = _with_splits(trained, case.model) if case.model else None
        return Built(path, ours, _with_splits(trained, case.llama), hf_model, trained)

    return build


def _hf_ids(tok: Any, line: str) -> list[int]:
    return tok.encode(line, add_special_tokens=False).ids


def _show(tok: BPETokenizer, ids: list[int]) -> list[str]:
    return [tok.token_text(t) for t in ids]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_hf(name: str, built: Callable[[str], Built]) -> None:
    """Equal to HF with llama.cpp's regexes on every line, and to HF with the model's where those agree."""
    b = built(name)
    bad, agree, model_bad = [], 0, []
    for line, got in zip(TEXTS, b.ids, strict=True):
        want = _hf_ids(b.hf_llama, line)
        if got != want:
            bad.append(f"{line!r}:\n  ours {_show(b.ours, got)}\n  hf   {_show(b.ours, want)}")
        if b.hf_model is not None:
            model_ids = _hf_ids(b.hf_model, line)
            if model_ids == want:
                agree += 1
                if got != model_ids:
                    model_bad.append(line)
    assert not bad, f"{len(bad)} of {len(TEXTS)} lines differ from HF with llama.cpp's regexes, e.g.\n" + "\n".join(
        bad[:3])
    assert not model_bad, f"{len(model_bad)} lines differ from the model's tokenizer: {model_bad[:3]}"
    if b.hf_model is not None:  # llama.cpp's regex follows the model's on most of the corpus
        assert agree >= 0.6 * len(TEXTS), f"llama.cpp's regexes agree with the model's on {agree} lines only"


@cache
def _llama_tokenize(path: Path) -> list[list[int]]:
    """llama-tokenize's ids of every corpus line (after the BOS it adds when the model asks for one)."""
    binary = llamacpp.build.binary("llama-tokenize")
    if not binary.is_file():
        llamacpp.unavailable(f"llama.cpp's llama-tokenize not found at {binary} "
                             "(build it: python build_scripts/build_llamacpp.py)")
    text_file = path.with_suffix(".txt")
    text_file.write_bytes(SPECIALS[SEP].join(TEXTS).encode("utf-8"))
    proc = subprocess.run([str(binary), "-m", str(path), "-f", str(text_file), "--ids",
                           "--no-escape", "--log-disable"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids: list[int] = json.loads(proc.stdout.strip().splitlines()[-1])
    lines: list[list[int]] = [[]]
    for t in ids:
        if t == SEP:
            lines.append([])
        else:
            lines[-1].append(t)
    return lines


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_llama_cpp(name: str, built: Callable[[str], Built]) -> None:
    """Equal to llama-tokenize on every corpus line, BOS included as llama.cpp adds it for the name."""
    b = built(name)
    want = _llama_tokenize(b.path)
    assert len(want) == len(TEXTS)
    assert b.ours.add_bos == CASES[name].add_bos
    first = b.ours.encode(TEXTS[0], add_special=True, parse_special=True)
    assert first == want[0]
    bad = []
    for line, got, ids in zip(TEXTS[1:], b.ids[1:], want[1:], strict=True):
        if got != ids:
            bad.append(f"{line!r}:\n  ours  {_show(b.ours, got)}\n  llama {_show(b.ours, ids)}")
    assert not bad, f"{len(bad)} of {len(TEXTS)} lines differ from llama-tokenize, e.g.\n" + "\n".join(bad[:3])


@pytest.mark.parametrize("name", ["tekken", "gpt-4o", "qwen35"])
def test_converter_names_the_pre_tokenizer(name: str, built: Callable[[str], Built], tmp_path: Path) -> None:
    """``emberllm convert`` tells these tokenizer.json pre-tokenizers apart by their regex."""
    b = built(name)
    b.trained.save(str(tmp_path / "tokenizer.json"))
    md = vocab_metadata(tmp_path)
    assert md["tokenizer.ggml.pre"] == name
    assert md["tokenizer.ggml.tokens"] == b.ours.vocab.tokens
    assert md["tokenizer.ggml.merges"] == _metadata(name, b.trained)["tokenizer.ggml.merges"]


def test_flags_follow_llama_cpp() -> None:
    """llama.cpp's per-name vocabulary options (llama_vocab::load)."""
    tekken = pre_tokenizer("tekken")
    assert (tekken.ignore_merges, tekken.add_bos, tekken.clean_spaces) == (True, True, False)
    for name in ("gpt-4o", "llama4", "minimax-m2", "kimi-k2", "qwen35", "seed-coder", "bailingmoe", "llada-moe",
                 "grok-2", "superbpe", "afmoe", "solar-open", "viking", "chameleon"):
        assert not pre_tokenizer(name).clean_spaces, name
    assert pre_tokenizer("glm4").ignore_merges and not pre_tokenizer("chatglm-bpe").ignore_merges
    assert pre_tokenizer("exaone-moe").clean_spaces and pre_tokenizer("falcon").clean_spaces
    base = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [chr(97 + i) for i in range(12)],
            "tokenizer.ggml.merges": []}
    assert load_tokenizer({**base, "tokenizer.ggml.pre": "chatglm-bpe"}).bos_id is None
    assert load_tokenizer({**base, "tokenizer.ggml.pre": "gpt-2"}).bos_id == 11
    # Kimi K2's files may have no merges (llama.cpp allows it for that name only)
    del base["tokenizer.ggml.merges"]
    assert load_tokenizer({**base, "tokenizer.ggml.pre": "kimi-k2"}).encode("ab") == [0, 1]
    with pytest.raises(ValueError, match="no merges"):
        load_tokenizer({**base, "tokenizer.ggml.pre": "tekken"})


def test_every_name_splits_losslessly() -> None:
    """Every supported name's words concatenate to the text, on the whole corpus."""
    text = "\n".join(LINES)
    for name in sorted(SUPPORTED_PRE):
        assert "".join(pre_tokenizer(name).split(text)) == text, name


def test_every_llama_cpp_name_is_known() -> None:
    """Every ``tokenizer.ggml.pre`` name of llama.cpp's ``llama_vocab::load`` is supported or refused with a
    reason (read from the llama.cpp source that build_scripts/build_llamacpp.py builds)."""
    source = llamacpp.build.source_dir() / "src" / "llama-vocab.cpp"
    if not source.is_file():
        llamacpp.unavailable(f"llama.cpp's source not found at {source}")
    names = set(re.findall(r'tokenizer_pre == "([^"]+)"', source.read_text(encoding="utf-8")))
    assert len(names) > 80
    assert names - SUPPORTED_PRE == set(KNOWN_UNSUPPORTED_PRE)
    assert SUPPORTED_PRE <= names
    with pytest.raises(ValueError, match=r"'gemma4' \(BPE over raw UTF-8.*supported: .*tekken"):
        pre_tokenizer("gemma4")


def test_unsupported_models_and_names_are_named() -> None:
    """An unsupported ``tokenizer.ggml.model`` or ``pre`` names itself and lists what is supported."""
    for model in ("t5", "rwkv", "plamo2", "bert", "gemma4"):
        with pytest.raises(ValueError, match=f"tokenizer model '{model}'.*not supported.*'llama', 'gpt2'"):
            load_tokenizer({"tokenizer.ggml.model": model, "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(ValueError, match="tokenizer.ggml.model is missing.*'llama', 'gpt2'"):
        load_tokenizer({"tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(ValueError, match="unsupported BPE pre-tokenizer 'gemma9'.*supported: .*tekken"):
        pre_tokenizer("gemma9")
