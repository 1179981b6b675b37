"""The part of a decoder-only transformer that does not depend on the family: buffers, batching, logits.

A subclass reads its hyper-parameters (``_read_hparams``), looks up its weights (``_load_layers``) and
runs its blocks over a micro-batch (``_forward_layers``); this class splits prompts into micro-batches,
keeps the KV cache positions, applies the final norm and computes logits only for the rows asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from emberllm.gguf import GGUFFile
from emberllm.kernels import Buffer, KernelError, Kernels
from emberllm.kv_cache import KVCache
from emberllm.models.base import HParams, MatrixGroup, Weight, WeightStore

#: Logit rows computed per output matmul when many rows are wanted (perplexity).
LOGIT_SLICE = 16


class ContextFullError(RuntimeError):
    """The tokens do not fit in the KV cache."""


@dataclass
class Segment:
    """Rows ``start .. start + n`` of a micro-batch belong to the sequence cached in ``kv``, from ``pos0`` on."""

    kv: KVCache
    start: int
    n: int
    pos0: int


@dataclass
class Activations:
    """Scratch activations for one micro-batch of up to ``n_batch`` tokens."""

    x: Buffer
    h: Buffer
    h2: Buffer
    q: Buffer
    k: Buffer
    v: Buffer
    att: Buffer
    gate: Buffer
    up: Buffer
    ids: Buffer
    pos: Buffer
    logits: Buffer


class TransformerModel:
    """A loaded model: weights (zero-copy from the GGUF buffer), hyper-parameters and scratch buffers."""

    output: Weight
    output_norm: Any

    def __init__(self, gguf: GGUFFile, kernels: Kernels, ctx: Any, n_batch: int = 512) -> None:
        self.gguf = gguf
        self.k = kernels
        self.lib = kernels.lib
        self.ctx = ctx
        self.n_batch = n_batch
        self.hp = self._read_hparams()
        self.buf = self._alloc_activations()
        self.weights = WeightStore(gguf, kernels)
        self._load_layers(self.weights)

    # -- hooks for subclasses ------------------------------------------------------------------------
    def _read_hparams(self) -> HParams:
        return HParams.from_gguf(self.gguf)

    def _load_layers(self, w: WeightStore) -> None:
        raise NotImplementedError

    def _forward_layers(self, n: int, segments: list[Segment]) -> None:
        """Run the blocks over ``n`` rows (``buf.ids``/``buf.pos`` filled); each segment attends to its own cache."""
        raise NotImplementedError

    def _rope_params(self, il: int) -> tuple[int, float, float, int]:
        """(n_rot, freq_base, freq_scale, mode) of layer ``il``: what a context shift re-rotates keys with."""
        raise NotImplementedError

    # -- shared machinery ----------------------------------------------------------------------------
    def _alloc_activations(self) -> Activations:
        hp, nb, k = self.hp, self.n_batch, self.k
        return Activations(
            x=k.f32(nb * hp.n_embd),
            h=k.f32(nb * max(hp.n_embd, hp.q_dim)),
            h2=k.f32(nb * hp.n_embd),
            q=k.f32(nb * hp.q_dim),
            k=k.f32(nb * hp.kv_dim),
            v=k.f32(nb * hp.kv_dim),
            att=k.f32(nb * hp.q_dim),
            gate=k.f32(nb * hp.n_ff),
            up=k.f32(nb * hp.n_ff),
            ids=k.i32(nb),
            pos=k.i32(nb),
            logits=k.f32(LOGIT_SLICE * hp.n_vocab),
        )

    def new_cache(self, n_ctx: int) -> KVCache:
        """An empty KV cache for ``n_ctx`` positions."""
        return KVCache(self.k, self.hp.n_layer, n_ctx, self.hp.kv_dim)

    def shift_cache(self, kv: KVCache, n_keep: int, n_discard: int) -> None:
        """Drop positions [n_keep, n_keep + n_discard) and renumber the later ones (llama.cpp's context shift)."""
        if n_discard <= 0:
            return
        if n_keep < 0 or n_keep + n_discard > kv.n_past:
            raise ValueError(f"cannot discard {n_discard} tokens after {n_keep} of {kv.n_past}")
        hp = self.hp
        for il in range(hp.n_layer):
            n_rot, base, scale, mode = self._rope_params(il)
            self.lib.emb_kv_shift(self.ctx, kv.k_ptrs[il], kv.v_ptrs[il], kv.n_past, n_keep, n_discard, hp.n_head_kv,
                                  hp.head_dim, n_rot, base, scale, mode)
        del kv.tokens[n_keep : n_keep + n_discard]

    def matmul(self, w: Weight, x: Any, n: int, y: Any) -> None:
        """``y[n, w.n_out] = x[n, w.n_in] @ w.T`` through the kernels."""
        rc = self.lib.emb_matmul(self.ctx, w.ptr, w.type, w.n_out, w.n_in, x, n, y)
        if rc != 0:
            raise KernelError(f"matmul failed for {w.name} (code {rc})")

    def matmul_group(self, g: MatrixGroup, x: Any, n: int) -> None:
        """All matrices of ``g`` applied to ``x`` in one kernel call."""
        rc = self.lib.emb_matmul_multi(self.ctx, len(g.weights), g.ws, g.types, g.n_outs, g.weights[0].n_in, x, n, g.ys)
        if rc != 0:
            raise KernelError(f"matmul failed for {', '.join(w.name for w in g.weights)} (code {rc})")

    def decode(self, tokens: Sequence[int], kv: KVCache) -> memoryview:
        """Append ``tokens`` to the sequence in ``kv`` and return the logits of the last one."""
        result: list[memoryview] = []
        self.decode_rows(tokens, kv, [len(tokens) - 1], lambda _row, _ptr, logits: result.append(logits))
        return result[0]

    def decode_rows(
        self,
        tokens: Sequence[int],
        kv: KVCache,
        rows: Iterable[int],
        consume: Callable[[int, Any, memoryview], None],
    ) -> None:
        """Append ``tokens``; for each index in ``rows`` call ``consume(index, pointer, view)`` with the
        logits of that token as a kernel pointer and a memoryview, both valid only during the call.
        """
        hp = self.hp
        if not tokens:
            raise ValueError("no tokens to decode")
        if kv.n_past + len(tokens) > kv.n_ctx:
            raise ContextFullError(
                f"{kv.n_past + len(tokens)} tokens do not fit in the context of {kv.n_ctx}"
            )
        bad = [t for t in tokens if not 0 <= t < hp.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} outside the vocabulary (0..{hp.n_vocab - 1})")
        wanted = sorted(set(rows))
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            segment = self._load_rows([(kv, chunk)])[0]
            self._forward_layers(segment.n, [segment])
            kv.tokens.extend(chunk)
            local = [r - start for r in wanted if start <= r < start + segment.n]
            self._emit_logits(local, start, consume)

    def decode_batch(self, requests: Sequence[tuple[KVCache, Sequence[int]]],
                     consume: Callable[[int, Any, memoryview], None]) -> None:
        """Several sequences in one forward pass (continuous batching): request ``i`` appends its tokens to its own
        cache; ``consume(i, pointer, view)`` receives the logits of its last token.  The rows of all requests
        together must fit in one micro-batch (``n_batch``)."""
        total = sum(len(toks) for _, toks in requests)
        if not requests or any(not toks for _, toks in requests):
            raise ValueError("every request needs at least one token")
        if total > self.n_batch:
            raise ValueError(f"{total} tokens exceed the micro-batch of {self.n_batch}")
        for kv, toks in requests:
            if kv.n_past + len(toks) > kv.n_ctx:
                raise ContextFullError(f"{kv.n_past + len(toks)} tokens do not fit in the context of {kv.n_ctx}")
            bad = [t for t in toks if not 0 <= t < self.hp.n_vocab]
            if bad:
                raise ValueError(f"token id {bad[0]} outside the vocabulary (0..{self.hp.n_vocab - 1})")
        segments = self._load_rows(requests)
        # One token per sequence (decode steps): keep every matmul on the row-by-row kernels so each sequence
        # gets exactly the logits it would get decoded alone, whatever the batch.
        lib, single = self.lib, total == len(requests)
        old = lib.emb_ctx_set_gemm_min_tokens(self.ctx, total + 1) if single else 0
        try:
            self._forward_layers(total, segments)
            for kv, toks in requests:
                kv.tokens.extend(toks)
            last_rows = [seg.start + seg.n - 1 for seg in segments]
            index_of = {row: i for i, row in enumerate(last_rows)}
            self._emit_logits(last_rows, 0, lambda row, ptr, view: consume(index_of[row], ptr, view))
        finally:
            if single:
                lib.emb_ctx_set_gemm_min_tokens(self.ctx, old)

    def _load_rows(self, requests: Sequence[tuple[KVCache, Sequence[int]]]) -> list[Segment]:
        """Write ids and positions of the requests into the micro-batch buffers; one segment per request."""
        ids, pos = self.buf.ids.view, self.buf.pos.view
        segments = []
        row = 0
        for kv, toks in requests:
            pos0 = kv.n_past
            for i, t in enumerate(toks):
                ids[row + i] = t
                pos[row + i] = pos0 + i
            segments.append(Segment(kv, row, len(toks), pos0))
            row += len(toks)
        return segments

    def _emit_logits(self, local_rows: list[int], start: int, consume: Callable[[int, Any, memoryview], None]) -> None:
        hp, lib, ctx, b, k = self.hp, self.lib, self.ctx, self.buf, self.k
        n_vocab = hp.n_vocab
        for s in range(0, len(local_rows), LOGIT_SLICE):
            group = local_rows[s : s + LOGIT_SLICE]
            for j, r in enumerate(group):
                lib.emb_rmsnorm(ctx, k.at(b.x, r * hp.n_embd), self.output_norm, k.at(b.h, j * hp.n_embd),
                                1, hp.n_embd, hp.norm_eps)
            self.matmul(self.output, b.h.ptr, len(group), b.logits.ptr)
            for j, r in enumerate(group):
                consume(start + r, k.at(b.logits, j * n_vocab), b.logits.view[j * n_vocab : (j + 1) * n_vocab])
