"""What distinguishes one decoder-only architecture from another, stated as data (one registry entry each)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emberllm.backends.kernel_api import constants

if TYPE_CHECKING:
    from emberllm.models.base import HParams

_ROPE, _ACT = constants("ROPE"), constants("ACT")
#: RoPE modes (``EMB_ROPE_*`` in ember.h, ggml's numbering): adjacent pairs, or the two halves of each head (NeoX).
ROPE_NORMAL = _ROPE["NORMAL"]
ROPE_NEOX = _ROPE["NEOX"]
#: Gated-unit activations (``EMB_ACT_*`` in ember.h).
ACT_SILU = _ACT["SILU"]
ACT_GELU_TANH = _ACT["GELU_TANH"]


@dataclass(frozen=True)
class ArchSpec:
    """The differences of one architecture from the shared pre-norm decoder block.

    Optional tensors (Q/K/V biases, QK-norm, fused ``attn_qkv`` / gate-up, ``rope_freqs``, long-rope factors) are
    used whenever the file has them; the fields here say what the family requires or computes differently.
    """

    name: str
    rope_mode: int = ROPE_NORMAL
    act: int = ACT_SILU
    #: token embeddings multiplied by sqrt(n_embd) (Gemma)
    scale_embeddings: bool = False
    #: norms after attention and after the FFN, added into the residual (Gemma 2/3), required
    post_norms: bool = False
    #: per-head RMSNorm of Q and K required (Gemma 3); otherwise used when present (Qwen3)
    qk_norm: bool = False
    #: the QK-norm spans each token's whole Q (K) row, all heads at once (OLMo 2)
    qk_norm_whole: bool = False
    #: RMSNorms before attention and the FFN (``attn_norm`` / ``ffn_norm``); OLMo 2 has only the post-norms
    pre_norms: bool = True
    #: every ``swa_pattern``-th layer is global, the others use the sliding window (0: no sliding window)
    swa_pattern: int = 0
    #: RoPE base of the sliding-window layers when the file does not give ``{arch}.rope.freq_base_swa`` (0: the
    #: global base, as Gemma 2)
    swa_rope_base: float = 10000.0
    #: n_rot is the head size (the file's ``rope.dimension_count`` is ignored)
    rope_full_head: bool = False
    #: attention scores and final logits soft-capped, ``cap * tanh(x / cap)`` with the file's
    #: ``{arch}.attn_logit_softcapping`` / ``{arch}.final_logit_softcapping`` (llama.cpp's defaults 50 and 30)
    softcap: bool = False
    #: the attention scale from the hyper-parameters (default ``1 / sqrt(head_dim)``)
    query_scale: Callable[[HParams], float] | None = None


def gemma2_query_scale(hp: HParams) -> float:
    """llama.cpp's Gemma 2 query scale: ``1 / sqrt(n_embd / n_head)`` for the 27B (46 layers; its
    ``query_pre_attn_scalar`` is 144), else ``1 / sqrt(head_dim)``; llama.cpp reads no key for it."""
    if hp.n_layer == 46:
        return 1.0 / math.sqrt(float(hp.n_embd // hp.n_head))
    return 1.0 / math.sqrt(float(hp.head_dim))
