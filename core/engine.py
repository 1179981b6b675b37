"""The user-facing engine: load a GGUF model, tokenize, evaluate and generate.

``Model`` ties the pieces together: the GGUF file (zero-copy), the tokenizer, the architecture's forward
pass over the C kernels, and one KV cache that keeps the previous prompt so a new request reuses the
longest common prefix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emberllm.gguf import GGUFFile
from emberllm.kernels import KernelError, Kernels, load_kernels
from emberllm.models import model_class
from emberllm.models.transformer import ContextFullError
from emberllm.sampling import Sampler, SamplingParams, VocabInfo
from emberllm.stop_strings import StopMatcher
from emberllm.tokenizers import load_tokenizer


@dataclass
class Timings:
    """Wall-clock figures of the last generation, llama.cpp style."""

    load_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    eval_ms: float = 0.0
    eval_tokens: int = 0
    sample_ms: float = 0.0
    kernel_calls: int = 0

    def per_second(self, ms: float, n: int) -> float:
        """Tokens per second for ``n`` tokens in ``ms`` milliseconds."""
        return 1000.0 * n / ms if ms > 0 else 0.0


@dataclass
class Step:
    """One generated token: its id, the text it completes (possibly empty), and on the last step why
    generation ended (``stop``, ``length``, ``context`` or ``cancelled``; ``stop_word`` names a matched stop
    string).  ``extra`` holds probabilities when ``n_probs`` was asked for."""

    token: int
    text: str
    finish_reason: str | None = None
    stop_word: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """A whole (non-streamed) generation: text, token ids, why it ended, and the timings."""

    text: str
    tokens: list[int]
    finish_reason: str | None
    stop_word: str | None
    timings: Timings
    steps: list[Step]


def default_threads() -> int:
    """Threads to use when none are given: the machine's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


class Model:
    """A loaded model ready to generate.

    ``source`` is a path or any bytes-like buffer holding a GGUF file.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Any,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        kernels: Kernels | None = None,
        kernel_level: int | None = None,
        chat_template: str | None = None,
        warmup: bool = True,
    ) -> None:
        t0 = time.perf_counter()
        self.gguf = GGUFFile.open(source) if isinstance(source, str | os.PathLike) else GGUFFile.from_buffer(source)
        self.path = Path(source) if isinstance(source, str | os.PathLike) else None
        arch_cls = model_class(self.gguf.metadata.get("general.architecture", "<missing>"))
        self.tokenizer = load_tokenizer(self.gguf.metadata)
        self.kernels = kernels or load_kernels()
        lib = self.kernels.lib
        level = self.kernels.best_level() if kernel_level is None else kernel_level
        self.n_threads = n_threads or default_threads()
        self.ctx = lib.emb_ctx_new(self.n_threads, level)
        if not self.ctx:
            raise KernelError(f"cannot create a kernel context (level {self.kernels.level_name(level)})")
        self.kernel_level = level
        self.arch = arch_cls(self.gguf, self.kernels, self.ctx, n_batch=n_batch)
        self.hp = self.arch.hp
        self.n_ctx = n_ctx
        self.kv = self.arch.new_cache(n_ctx)
        self._chat_template_override = chat_template
        self._chat_template: Any = None
        self._vocab: VocabInfo | None = None
        if warmup:
            self._warmup()
        self.timings = Timings(load_ms=(time.perf_counter() - t0) * 1000.0)

    def _warmup(self) -> None:
        """One throw-away token through every layer (like llama.cpp's warm-up): faults the weights in."""
        first = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else 0
        self.arch.decode([first], self.kv)
        self.kv.clear()

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the kernel context and release the file."""
        if getattr(self, "ctx", None):
            self.kernels.lib.emb_ctx_free(self.ctx)
            self.ctx = None
        self.gguf.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- text ----------------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` (BOS added when the model wants it and ``add_special``)."""
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        """Text of ``ids``."""
        return self.tokenizer.decode(ids, special=special)

    @property
    def chat_template(self) -> Any:
        """The chat template (the file's, a built-in chosen by architecture, or the override)."""
        if self._chat_template is None:
            from emberllm.chat_template import ChatTemplate

            self._chat_template = ChatTemplate.from_metadata(self.gguf.metadata, self._chat_template_override)
        return self._chat_template

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation (without the BOS text the tokenizer adds itself)."""
        return self.chat_template.render_prompt(messages, add_generation_prompt=add_generation_prompt)

    def complete(self, prompt: str | list[int], stream: bool = False, **params: Any) -> Completion | Iterator[Step]:
        """``generate`` with llama-server's choice: an iterator of steps (``stream=True``) or one ``Completion``."""
        steps = self.generate(prompt, **params)
        return steps if stream else self._collect(steps)

    def chat_completion(self, messages: list[dict[str, Any]], stream: bool = False,
                        **params: Any) -> Completion | Iterator[Step]:
        """``chat`` streamed (``stream=True``) or collected into one ``Completion``."""
        steps = self.chat(messages, **params)
        return steps if stream else self._collect(steps)

    def _collect(self, steps: Iterator[Step]) -> Completion:
        done = list(steps)
        last = done[-1] if done else Step(-1, "")
        return Completion("".join(s.text for s in done), [s.token for s in done if s.token >= 0], last.finish_reason,
                          last.stop_word, self.timings, done)

    def chat(self, messages: list[dict[str, Any]], n_predict: int = 256, **params: Any) -> Iterator[Step]:
        """Stream the assistant's reply to ``messages`` (dicts with ``role`` and ``content``)."""
        prompt = self.apply_chat_template(messages)
        stop = list(params.pop("stop", ())) + [s for s in self.chat_template.stop_strings if s]
        yield from self.generate(prompt, n_predict=n_predict, stop=stop, **params)

    # -- evaluation ----------------------------------------------------------------------------------
    def eval_prompt(self, tokens: list[int]) -> int:
        """Make the cache hold ``tokens``, reusing the longest common prefix; returns tokens reused.

        The last token is always evaluated so that fresh logits are available.
        """
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) > self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens is longer than the context ({self.n_ctx})")
        cached = self.kv.tokens
        n_common = 0
        limit = min(len(cached), len(tokens) - 1)
        while n_common < limit and cached[n_common] == tokens[n_common]:
            n_common += 1
        self.kv.truncate(n_common)
        self.arch.decode(tokens[n_common:], self.kv)
        return n_common

    def last_logits(self) -> memoryview:
        """Logits of the last evaluated token (valid until the next evaluation)."""
        return self.arch.buf.logits.view[: self.hp.n_vocab]

    def sampler(self, params: SamplingParams) -> Sampler:
        """A sampler chain for ``params`` over this model's vocabulary."""
        return Sampler(params, self._vocab_info(), kernels=self.kernels)

    def _vocab_info(self) -> VocabInfo:
        if self._vocab is None:
            self._vocab = VocabInfo.from_tokenizer(self.tokenizer)
        return self._vocab

    def shift_context(self, n_keep: int) -> int:
        """llama.cpp's context shift: keep ``n_keep`` tokens (plus BOS), drop half of the rest; returns the
        number of tokens dropped."""
        n_past = self.kv.n_past
        keep = min(max(n_keep, 0) + (1 if self.tokenizer.add_bos else 0), n_past - 1)
        n_discard = (n_past - keep) // 2
        if n_discard <= 0:
            raise ContextFullError("the context is full and nothing can be discarded")
        self.arch.shift_cache(self.kv, keep, n_discard)
        return n_discard

    def generate(
        self,
        prompt: str | list[int],
        n_predict: int = 128,
        params: SamplingParams | None = None,
        stop: Sequence[str] = (),
        n_keep: int = 0,
        context_shift: bool = True,
        cancel: Callable[[], bool] | None = None,
        **sampling: Any,
    ) -> Iterator[Step]:
        """Stream generated tokens for a prompt (text is tokenized with BOS and special tokens parsed).

        ``params`` (or keyword sampling settings such as ``temperature=0``, ``top_k``, ``seed``) choose the
        sampler chain; ``n_predict`` < 0 means until end of generation or context; ``stop`` strings end
        generation and are not emitted (partial matches are held back while streaming); ``cancel`` is polled
        before every token.  When the context fills, half of the tokens after ``n_keep`` are discarded and
        generation continues, unless ``context_shift`` is False (then it ends with ``finish_reason="context"``).
        """
        if params is None:
            params = SamplingParams(**sampling)
        elif sampling:
            params = replace(params, **sampling)
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit in the context of {self.n_ctx}")
        sampler = self.sampler(params)
        tm = Timings(load_ms=self.timings.load_ms)
        self.timings = tm
        lib = self.kernels.lib
        t0 = time.perf_counter()
        tm.cached_tokens = self.eval_prompt(tokens)
        tm.prompt_tokens = len(tokens) - tm.cached_tokens
        tm.prompt_ms = (time.perf_counter() - t0) * 1000.0
        calls0 = lib.emb_ctx_calls(self.ctx)
        decoder = self.tokenizer.stream_decoder()
        stops = StopMatcher(stop)
        history = list(tokens)
        logits = self.arch.buf.logits
        produced = 0
        while True:
            if cancel is not None and cancel():
                yield Step(-1, stops.flush(), "cancelled")
                return
            ts = time.perf_counter()
            res = sampler.sample(logits, history)
            tm.sample_ms += (time.perf_counter() - ts) * 1000.0
            token = res.token
            produced += 1
            extra = {}
            if params.n_probs > 0:
                extra = {"probs": res.probs_before, "prob": res.prob_before, "probs_after": res.probs_after,
                         "prob_after": res.prob_after}
            if self.tokenizer.is_eog(token) and not params.ignore_eos:
                yield Step(token, stops.flush() + decoder.flush(), "stop", extra=extra)
                return
            text, stopped = stops.feed(decoder.feed(token))
            if stopped:
                yield Step(token, text, "stop", stop_word=stops.matched, extra=extra)
                return
            if 0 <= n_predict <= produced:
                yield Step(token, text + stops.feed(decoder.flush())[0] + stops.flush(), "length", extra=extra)
                return
            if self.kv.n_past >= self.n_ctx:
                if not context_shift:
                    yield Step(token, text + stops.flush(), "context", extra=extra)
                    return
                self.shift_context(n_keep)
            yield Step(token, text, extra=extra)
            history.append(token)
            te = time.perf_counter()
            self.arch.decode([token], self.kv)
            tm.eval_ms += (time.perf_counter() - te) * 1000.0
            tm.eval_tokens += 1
            tm.kernel_calls = lib.emb_ctx_calls(self.ctx) - calls0
