"""The mixture-of-experts feed-forward block (Mixtral's ``llama`` layers, ``qwen3moe``), over a backend's named ops.

llama.cpp's ``build_moe_ffn`` with softmax gating: router logits ``ffn_gate_inp @ h``, softmax over *all* experts,
the top ``expert_used_count`` probabilities, renormalised to sum 1 (``norm_w``: llama.cpp passes true for both
families; a file saying ``{arch}.expert_weights_norm = false`` is honoured), then scaled by
``{arch}.expert_weights_scale`` when it is neither 0 nor 1.  Each selected expert is a gated unit (SiLU) of its own
rows of the 3-D tensors ``ffn_{gate,up,down}_exps`` ([n_embd, n_ff_exp, n_expert]: expert ``e`` is rows
``e * n_ff_exp ..`` of the flattened matrix), and the output is the weighted sum of the selected experts' outputs.

Only the selected experts' rows are read: the tokens of a micro-batch are grouped by expert, and each expert that
has tokens gathers their rows (``get_rows`` on the F32 activations), runs its three matrices once on them and adds
its weighted outputs into their rows (``add_rows_scaled``).  Routing is a few floats per token, done on the host.
As with llama.cpp's ``mul_mat_id``, a token's expert outputs can differ in the last bits with the number of tokens
of its micro-batch that share the expert (the kernels' int8 GEMM from ``emb_ctx_set_gemm_min_tokens`` rows on);
``row_by_row`` (batched decoding) keeps every expert product on the per-row kernels.
"""

from __future__ import annotations

import array
import heapq
import math
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Buffer
from emberllm.models import UnsupportedModelError
from emberllm.models.base import MatrixGroup, Weight, WeightStore
from emberllm.models.spec import ACT_SILU

#: ggml's clamp of the top-k weight sum before renormalising (the smallest normal F16).
_MIN_WEIGHT_SUM = 6.103515625e-5


@dataclass
class MoeScratch:
    """Host buffers shared by the MoE layers of one decoder (one micro-batch of up to ``n_batch`` rows)."""

    x: Buffer
    gate: Buffer
    up: Buffer
    y: Buffer
    logits: Buffer
    rows: Buffer
    scales: Buffer


@dataclass(frozen=True)
class MoeConfig:
    """Expert counts and the weighting rule, from ``{arch}.expert_*`` metadata (the gating is softmax whatever
    ``expert_gating_func`` says, as llama.cpp's ``llama`` and ``qwen3moe`` graphs do)."""

    n_expert: int
    n_used: int
    norm_w: bool
    w_scale: float

    @classmethod
    def from_metadata(cls, md: dict[str, Any], arch: str) -> MoeConfig:
        """Read ``expert_count``, ``expert_used_count``, ``expert_weights_norm`` and ``expert_weights_scale``."""
        n_expert = int(md.get(f"{arch}.expert_count", 0) or 0)
        n_used = int(md.get(f"{arch}.expert_used_count", 0) or 0)
        if n_expert <= 0 or not 0 < n_used <= n_expert:
            raise UnsupportedModelError(f"mixture-of-experts model with expert_count {n_expert} and "
                                        f"expert_used_count {n_used}")
        return cls(n_expert, n_used, bool(md.get(f"{arch}.expert_weights_norm", True)),
                   float(md.get(f"{arch}.expert_weights_scale", 0.0) or 0.0))


def route(logits: memoryview, n: int, cfg: MoeConfig) -> dict[int, tuple[list[int], list[float]]]:
    """expert -> (rows, weights) of the ``n`` tokens whose router ``logits`` (n x n_expert) select it."""
    ne, k = cfg.n_expert, cfg.n_used
    values = logits[: n * ne].tolist()
    out: dict[int, tuple[list[int], list[float]]] = {}
    for t in range(n):
        row = values[t * ne : (t + 1) * ne]
        top = heapq.nlargest(k, range(ne), key=row.__getitem__)  # softmax keeps the order
        m = row[top[0]]
        total = math.fsum(math.exp(v - m) for v in row)
        weights = [math.exp(row[e] - m) / total for e in top]
        if cfg.norm_w:
            s = max(math.fsum(weights), _MIN_WEIGHT_SUM)
            weights = [w / s for w in weights]
        if cfg.w_scale not in (0.0, 1.0):
            weights = [w * cfg.w_scale for w in weights]
        for e, w in zip(top, weights, strict=True):
            rows, ws = out.setdefault(e, ([], []))
            rows.append(t)
            ws.append(w)
    return out


def alloc_scratch(ops: Any, n_batch: int, n_embd: int, n_ff_exp: int, n_expert: int) -> MoeScratch:
    """Scratch buffers on ``ops`` for micro-batches of up to ``n_batch`` rows."""
    return MoeScratch(x=ops.f32(n_batch * n_embd), gate=ops.f32(n_batch * n_ff_exp), up=ops.f32(n_batch * n_ff_exp),
                      y=ops.f32(n_batch * n_embd), logits=ops.f32(n_batch * n_expert), rows=ops.i32(n_batch),
                      scales=ops.f32(n_batch))


def expert_ffn_width(w: WeightStore, prefix: str) -> int:
    """``n_ff_exp``: the middle dimension of ``{prefix}ffn_up_exps.weight``."""
    info = w.gguf.tensors.get(prefix + "ffn_up_exps.weight")
    if info is None or len(info.shape) != 3:
        raise UnsupportedModelError(f"missing 3-D tensor {prefix + 'ffn_up_exps.weight'!r}")
    return int(info.shape[1])


class MoeFFN:
    """One layer's router and experts: ``forward`` writes the weighted sum of the routed experts' outputs."""

    def __init__(self, ops: Any, w: WeightStore, prefix: str, n_embd: int, cfg: MoeConfig, scratch: MoeScratch,
                 act: int = ACT_SILU) -> None:
        self.cfg, self.scratch, self.act, self.n_embd = cfg, scratch, act, n_embd
        ne = cfg.n_expert
        self.n_ff = n_ff = expert_ffn_width(w, prefix)
        self.router = ops.load_matrix(w, prefix + "ffn_gate_inp.weight", n_embd, ne)
        names = [f"{prefix}expert.{e}" for e in range(ne)]
        gates = self._experts(ops, w, prefix + "ffn_gate_exps.weight", n_embd, n_ff, names)
        ups = self._experts(ops, w, prefix + "ffn_up_exps.weight", n_embd, n_ff, names)
        #: per expert: its gate and up rows, applied together
        self.gate_up: list[MatrixGroup] = [ops.group([g, u], [scratch.gate, scratch.up])
                                           for g, u in zip(gates, ups, strict=True)]
        #: per expert: its down rows
        self.down: list[Weight] = self._experts(ops, w, prefix + "ffn_down_exps.weight", n_ff, n_embd, names)
        self._input: dict[int, Weight] = {}

    @staticmethod
    def _experts(ops: Any, w: WeightStore, name: str, n_in: int, n_out: int, names: list[str]) -> list[Weight]:
        """Views of each expert's ``n_out`` rows of a 3-D expert tensor."""
        fused = ops.load_matrix(w, name, n_in, n_out * len(names))
        suffix = name.rsplit(".", 2)[-2]
        return ops.split_rows(fused, [n_out] * len(names), [f"{x}.{suffix}" for x in names])

    def forward(self, ops: Any, h: Buffer, n: int, out: Buffer) -> None:
        """``out[:n]`` = the experts' weighted outputs for the ``n`` rows of ``h`` (only routed experts run)."""
        s, d = self.scratch, self.n_embd
        ops.matmul(self.router, h, n, s.logits)
        routed = route(ops.read(s.logits, n * self.cfg.n_expert), n, self.cfg)
        ops.write(out, bytes(4 * n * d))
        table = self._input.get(id(h))
        if table is None:  # the activations seen as an F32 table for get_rows
            table = self._input[id(h)] = Weight("moe input", h.ptr, 0, h.n // d, d)
        for e in sorted(routed):
            rows, weights = routed[e]
            m = len(rows)
            s.rows.view[:m] = _int_array(rows)
            s.scales.view[:m] = _float_array(weights)
            ops.get_rows(table, s.rows, m, 1.0, s.x)
            ops.matmul_group(self.gate_up[e], s.x, m)
            ops.glu(s.gate, s.up, m, self.n_ff, self.act)
            ops.matmul(self.down[e], s.gate, m, s.y)
            ops.add_rows_scaled(s.y, s.rows, s.scales, out, m, d)


def _int_array(values: list[int]) -> memoryview:
    """Python ints as an ``i`` memoryview (what ``Buffer.view`` slices take)."""
    return memoryview(array.array("i", values))


def _float_array(values: list[float]) -> memoryview:
    """Python floats as an ``f`` memoryview."""
    return memoryview(array.array("f", values))
