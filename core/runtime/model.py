"""The user-facing engine: load a GGUF model, tokenize, evaluate and generate.

``Model`` ties the pieces together: the GGUF file (zero-copy), the tokenizer, the architecture's forward
pass over the C kernels, and one KV cache that keeps the previous prompt so a new request reuses the
longest common prefix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emberllm.backends.binding import Kernels, load_kernels
from emberllm.backends.cpu import CpuBackend
from emberllm.backends.kv_cache import KVCache
from emberllm.backends.memory import DEFAULT_KV_TYPE, ensure_kv_fits, kv_cache_bytes, kv_cache_type, kv_row_bytes
from emberllm.gguf.reader import GGUFFile
from emberllm.models import arch_spec
from emberllm.models.base import HParams, check_tensor_types
from emberllm.models.decoder import Decoder
from emberllm.runtime import embedding
from emberllm.runtime.batch import BatchEntry, BatchRunner, HiddenRows, LogitRows
from emberllm.runtime.context_size import MIN_CTX, resolve_context
from emberllm.runtime.decoding import DecodeState, Step, Timings, common_prefix, next_piece, shift_amount
from emberllm.runtime.offload import place_layers
from emberllm.sampling import Sampler, SamplingParams, VocabInfo
from emberllm.tokenizers import load_tokenizer

__all__ = ["BatchEntry", "Completion", "DecodeState", "HiddenRows", "LogitRows", "Model", "Step", "Timings",
           "check_model_file", "default_threads"]


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


def check_model_file(path: str | os.PathLike[str], n_ctx: int = 4096, n_seq: int = 1,
                     cache_type_k: str = DEFAULT_KV_TYPE, cache_type_v: str = DEFAULT_KV_TYPE) -> int:
    """From the header alone: that ``path`` is a GGUF file of a supported architecture and tensor types, and that
    the KV caches of ``n_seq`` sequences sharing ``n_ctx`` tokens (K and V of the cache types) fit in memory;
    returns the context per sequence (warns when it is capped).

    Raises ``OSError``, ``GGUFError``, ``UnsupportedModelError`` or ``ValueError`` with one clear message.
    """
    with GGUFFile.open(Path(path).expanduser()) as gguf:
        arch_spec(gguf.metadata.get("general.architecture", "<missing>"))
        check_tensor_types(gguf)
        hp = HParams.from_gguf(gguf)
    return fit_context(hp, n_ctx, n_seq, cache_type_k, cache_type_v)


def check_cache_types(hp: HParams, cache_type_k: str, cache_type_v: str) -> tuple[str, str]:
    """The canonical K and V cache type names (``ValueError`` for an unknown one, or a quantized type whose blocks
    do not divide the head size, as llama.cpp refuses it)."""
    types = kv_cache_type(cache_type_k, "K"), kv_cache_type(cache_type_v, "V")
    for which, name in zip("KV", types, strict=True):
        try:
            kv_row_bytes(name, hp.head_dim)
        except ValueError:
            raise ValueError(f"{which} cache type {name} does not divide the head size {hp.head_dim} into whole "
                             "blocks") from None
    return types


def fit_context(hp: HParams, n_ctx: int, n_seq: int = 1, cache_type_k: str = DEFAULT_KV_TYPE,
                cache_type_v: str = DEFAULT_KV_TYPE) -> int:
    """The context per sequence for ``n_ctx`` shared by ``n_seq`` sequences (0 = trained, capped with a warning),
    once their KV caches (of the cache types) are known to fit in memory (``KVCacheTooLargeError`` otherwise)."""
    type_k, type_v = check_cache_types(hp, cache_type_k, cache_type_v)
    per_seq = resolve_context(n_ctx, hp.n_ctx_train, n_seq)
    ensure_kv_fits(kv_cache_bytes(hp.n_layer, per_seq, hp.kv_dim, n_seq, type_k, type_v), per_seq, n_seq)
    return per_seq


class Model:
    """A loaded model ready to generate.

    ``source`` is a path (``~`` expanded) or any bytes-like buffer holding a GGUF file.  ``n_ctx`` is the context
    in tokens as llama.cpp's ``-c``: 0 means the model's trained context, a larger one is capped at it with a
    warning; with ``n_seq`` sequences (server slots) each gets ``n_ctx // n_seq`` positions.  ``use_mmap=False``
    reads the file into memory instead of mapping it.  ``n_gpu_layers`` (llama.cpp's ``-ngl``) runs the last
    layers on WebGPU (``device`` "webgpu" alone: all of them; ``EMBERLLM_DEVICE`` overrides; no usable adapter: the
    CPU, with a warning); ``gpu`` is an already open WebGPU device to use.  ``cache_type_k``/``cache_type_v`` are
    llama.cpp's ``-ctk``/``-ctv``: ``f16`` (default), ``q8_0``, ``q4_0`` or ``f32`` (not f16: CPU layers only).
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
        n_seq: int = 1,
        use_mmap: bool = True,
        n_gpu_layers: int | None = None,
        device: str | None = None,
        gpu: Any = None,
        cache_type_k: str = DEFAULT_KV_TYPE,
        cache_type_v: str = DEFAULT_KV_TYPE,
    ) -> None:
        t0 = time.perf_counter()
        self.path = Path(source).expanduser() if isinstance(source, str | os.PathLike) else None
        self.gguf = (GGUFFile.open(self.path, use_mmap=use_mmap) if self.path is not None
                     else GGUFFile.from_buffer(source))
        spec = arch_spec(self.gguf.metadata.get("general.architecture", "<missing>"))
        self.tokenizer = load_tokenizer(self.gguf.metadata)
        self.kernels = kernels or load_kernels()
        level = self.kernels.best_level() if kernel_level is None else kernel_level
        self.n_threads = n_threads or default_threads()
        self.backend = CpuBackend(self.kernels, self.n_threads, level)
        self.kernel_level = level
        self.gpu_backend: Any = None
        try:
            placement = place_layers(self.gguf, HParams.from_gguf(self.gguf), self.kernels, n_gpu_layers, device, gpu)
            self.gpu_backend, self.offload_message = placement.backend, placement.message
            self.decoder = Decoder(self.gguf, spec, self.backend, n_batch=n_batch, device=self.gpu_backend,
                                   n_device_layers=placement.n_layers)
            self.hp = self.decoder.hp
            types = check_cache_types(self.hp, cache_type_k, cache_type_v)
            if placement.n_layers and types != (DEFAULT_KV_TYPE, DEFAULT_KV_TYPE):
                raise ValueError(f"KV cache types other than f16 (-ctk {types[0]} -ctv {types[1]}) are not supported "
                                 "with layers on WebGPU (-ngl): use -ngl 0 or the f16 cache")
            self.decoder.cache_type_k, self.decoder.cache_type_v = types
            self.n_ctx = fit_context(self.hp, n_ctx, n_seq, *types)
        except BaseException:
            self.close()  # the kernel context's threads and the mapped file go with a model that did not load
            raise
        self.decoder.set_context(self.n_ctx)
        self._runner = BatchRunner(self.decoder)
        self._sequence: KVCache | None = None
        self._last: LogitRows | None = None
        self._chat_template_override = chat_template
        self._chat_template: Any = None
        self._vocab: VocabInfo | None = None
        if warmup:
            self._warmup()
        self.timings = Timings(load_ms=(time.perf_counter() - t0) * 1000.0)

    def _warmup(self) -> None:
        """One throw-away token through every layer (like llama.cpp's warm-up): faults the weights in."""
        first = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else 0
        self.decode([(self.new_sequence(MIN_CTX), [first])])

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the kernel context and release the file."""
        if getattr(self, "backend", None) is not None:
            self.backend.close()
        if getattr(self, "gpu_backend", None) is not None:
            self.gpu_backend.close()
            self.gpu_backend = None
        self.gguf.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sequences and the forward pass ---------------------------------------------------------------
    def new_sequence(self, n_ctx: int | None = None) -> KVCache:
        """An empty sequence (its KV cache) of ``n_ctx`` positions (default: the model's context per sequence)."""
        return self.decoder.new_cache(self.n_ctx if n_ctx is None else n_ctx)

    @property
    def sequence(self) -> KVCache:
        """The sequence ``generate``, ``chat`` and ``eval_prompt`` use (made on first use)."""
        if self._sequence is None:
            self._sequence = self.new_sequence()
        return self._sequence

    def decode(self, batch: Sequence[BatchEntry | tuple[Any, ...]]) -> LogitRows:
        """Append tokens to sequences in one forward pass (``(sequence, tokens[, logit_rows])`` entries, logits of
        the last token by default) and return the logits asked for; see ``emberllm.runtime.batch``."""
        self._last = self._runner.decode_batch(batch)
        return self._last

    def decode_hidden(self, batch: Sequence[BatchEntry | tuple[Any, ...]]) -> HiddenRows:
        """``decode`` that stops at the final norm: the asked rows' hidden states (llama.cpp's token embeddings)."""
        return self._runner.decode_hidden(batch)

    # -- embeddings ----------------------------------------------------------------------------------
    @property
    def pooling(self) -> str:
        """The model's embedding pooling: its GGUF ``<arch>.pooling_type``, else ``none`` (llama.cpp's default)."""
        return embedding.model_pooling(self.gguf.metadata)

    def embed(self, texts: str | Sequence[Any], pooling: str | None = None, normalize: int = 2) -> Any:
        """Embeddings of ``texts`` (a string, a list of token ids, or a list of those) as llama-embedding computes
        them: one vector per text (per token with ``pooling="none"``), normalised like ``--embd-normalize``
        (-1 none, 0 int16 max, 1 taxicab, 2 L2, more: p-norm); a single text gives its one result, a list a list.
        ``pooling`` is ``none``, ``mean``, ``cls`` or ``last`` (default: ``self.pooling``)."""
        items, single = embedding.split_inputs(texts)
        inputs = [self.tokenize(t) if isinstance(t, str) else t for t in items]
        out = embedding.finish(self.embed_steps(inputs, pooling, normalize))
        return out[0] if single else out

    def embed_steps(self, inputs: Sequence[Sequence[int]], pooling: str | None = None,
                    normalize: int = 2) -> Generator[int, None, list[Any]]:
        """``embed`` of token lists one micro-batch per step, for a caller that schedules the forward passes (each
        step yields the tokens it evaluated; the generator returns the list of results)."""
        return embedding.embedding_steps(self, inputs, pooling or self.pooling, normalize)

    @property
    def cache_types(self) -> tuple[str, str]:
        """The K and V cache types (llama.cpp's names)."""
        return self.decoder.cache_type_k, self.decoder.cache_type_v

    @property
    def n_batch(self) -> int:
        """The prompt micro-batch in tokens."""
        return self.decoder.n_batch

    @property
    def kernel_calls(self) -> int:
        """Kernel calls (CPU) and dispatches (WebGPU) made by this model so far (a decode step of Gemma 3 makes 273
        on the CPU)."""
        return self.backend.calls + (self.gpu_backend.calls if self.gpu_backend is not None else 0)

    @property
    def kernel_level_name(self) -> str:
        """The SIMD level the kernels run at."""
        return self.backend.level_name

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
            from emberllm.chat.template import ChatTemplate

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
        seq = self.sequence
        n_common = common_prefix(seq.tokens, tokens)
        seq.truncate(n_common)
        self.decode([(seq, tokens[n_common:])])
        return n_common

    def last_logits(self) -> memoryview:
        """Logits of the last row the last decode asked for (valid until the next decode)."""
        if self._last is None or not len(self._last):
            raise RuntimeError("nothing has been decoded yet")
        return self._last[-1]

    def sampler(self, params: SamplingParams) -> Sampler:
        """A sampler chain for ``params`` over this model's vocabulary."""
        return Sampler(params, self.sampler_vocab(), kernels=self.kernels)

    def sampler_vocab(self) -> VocabInfo:
        """What the sampler chain knows of the vocabulary (its size, end-of-generation ids...), built once."""
        if self._vocab is None:
            self._vocab = VocabInfo.from_tokenizer(self.tokenizer)
        return self._vocab

    def shift_cache(self, kv: KVCache, n_keep: int, n_discard: int = 0) -> int:
        """llama.cpp's context shift on a full sequence: keep ``n_keep`` tokens (plus BOS), drop ``n_discard`` of
        the rest (0: half); returns the number of tokens dropped."""
        keep, n_discard = shift_amount(kv, n_keep, self.tokenizer.add_bos, n_discard)
        self.decoder.shift_cache(kv, keep, n_discard)
        return n_discard

    def decode_state(self, tokens: list[int], params: SamplingParams, kv: KVCache | None = None,
                     n_predict: int = 128, stop: Sequence[str] = (), n_keep: int = 0,
                     context_shift: bool = True, n_discard: int = 0) -> DecodeState:
        """A generation of ``tokens`` into ``kv`` (default: the model's own cache), for a caller that schedules
        the forward passes itself."""
        return DecodeState(self.tokenizer, self.sampler(params), self.sequence if kv is None else kv, tokens,
                           n_predict=n_predict, stop=stop, n_keep=n_keep, context_shift=context_shift,
                           shift=self.shift_cache, n_discard=n_discard)

    def generate(
        self,
        prompt: str | list[int],
        n_predict: int = 128,
        params: SamplingParams | None = None,
        stop: Sequence[str] = (),
        n_keep: int = 0,
        context_shift: bool = True,
        n_discard: int = 0,
        cancel: Callable[[], bool] | None = None,
        prompt_progress: bool = False,
        prompt_chunk: int | None = None,
        prompt_chunk_ms: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
        **sampling: Any,
    ) -> Iterator[Step]:
        """Stream generated tokens for a prompt (text is tokenized with BOS and special tokens parsed).

        ``params`` (or keyword sampling settings such as ``temperature=0``, ``top_k``, ``seed``) choose the
        sampler chain; ``n_predict`` < 0 means until end of generation or context; ``stop`` strings end
        generation and are not emitted (partial matches are held back while streaming).  When the context fills,
        half of the tokens after ``n_keep`` (``-1``: the prompt; BOS is kept too) are discarded (``n_discard`` of
        them when not 0) and generation continues, unless ``context_shift`` is
        False (then it ends with ``finish_reason="context"``).  ``json_schema`` (a JSON schema; ``{}``: any JSON
        object) constrains the output through a grammar built from it, as llama-server's ``json_schema`` does; it
        and ``grammar`` exclude each other, and a keyword the grammar cannot express raises
        :class:`~emberllm.grammar.json_schema.UnsupportedSchemaError` naming it.

        The prompt's uncached tokens are read in pieces of ``prompt_chunk`` tokens (default ``n_batch``; with
        ``prompt_chunk_ms``, the first piece, the next ones sized to take about that long at the speed of the one
        before); the logits do not depend on the pieces (``next_piece``).  ``cancel`` is polled between pieces and
        before every token; a cancel during the read yields the usual ``cancelled`` step and leaves the cache
        holding exactly the tokens read so far (the next request reuses them as a prefix).  With
        ``prompt_progress``, each piece is followed by a step ``Step(-1, "", extra={"prompt_done": n,
        "prompt_total": m})``: ``n`` tokens of the ``m``-token prompt are in the cache (reused ones included); the
        last such step has ``n == m``.  ``timings.prompt_ms`` is the time spent reading (not the time the caller
        holds a progress step).
        """
        if prompt_chunk is not None and prompt_chunk < 1:
            raise ValueError(f"prompt chunk must be at least 1 token, got {prompt_chunk}")
        if json_schema is not None:
            if sampling.get("grammar") or (params is not None and params.grammar):
                raise ValueError("grammar, json_schema: give one of them, not both")
            from emberllm.grammar.json_schema import requested_schema_gbnf

            sampling["grammar"] = requested_schema_gbnf(dict(json_schema))
        if params is None:
            params = SamplingParams(**sampling)
        elif sampling:
            params = replace(params, **sampling)
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        state = self.decode_state(tokens, params, n_predict=n_predict, stop=stop, n_keep=n_keep,
                                  context_shift=context_shift, n_discard=n_discard)
        tm = state.timings
        tm.load_ms = self.timings.load_ms
        self.timings = tm
        seq = state.kv
        todo = state.prefill_tokens()
        want = self.n_batch if prompt_chunk is None else prompt_chunk
        floor = self.backend.batch_path_min_rows()
        done = 0
        while done < len(todo):
            if done and cancel is not None and cancel():
                tm.prompt_tokens = done
                yield state.cancel()
                return
            n = next_piece(done, len(todo), self.n_batch, want, floor)
            last = done + n == len(todo)
            t0 = time.perf_counter()
            # only the last piece's last row is projected to logits; a progress step means the piece is computed
            rows = self.decode([(seq, todo[done : done + n], None if last else ())])
            if last or prompt_progress or prompt_chunk_ms:
                rows.sync()
            ms = (time.perf_counter() - t0) * 1000.0
            tm.prompt_ms += ms
            done += n
            if prompt_chunk_ms:
                want = max(1, round(n * prompt_chunk_ms / max(ms, 1e-3)))
            if prompt_progress:
                yield Step(-1, "", extra={"prompt_done": tm.cached_tokens + done, "prompt_total": len(tokens)})
        calls0 = self.kernel_calls
        while True:
            if cancel is not None and cancel():
                yield state.cancel()
                return
            step = state.sample_row(rows, -1)
            yield step
            if state.finished:
                return
            te = time.perf_counter()
            rows = self.decode([(seq, [state.next_token])])
            rows.sync()
            tm.eval_ms += (time.perf_counter() - te) * 1000.0
            tm.eval_tokens += 1
            tm.kernel_calls = self.kernel_calls - calls0
