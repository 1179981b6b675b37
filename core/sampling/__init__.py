"""llama.cpp's sampler chain: parameters, validation and a per-request :class:`Sampler`.

The chain and its semantics are llama.cpp's (``common/sampling.cpp`` and ``src/llama-sampler.cpp``):
logit bias first, then the configured samplers in order (default: penalties, DRY, top-n-sigma, top-k,
typical-p, top-p, min-p, XTC, temperature with dynamic temperature), then a draw from the softmax of what is
left; or, with Mirostat, logit bias, temperature and Mirostat v1/v2 only.  Random numbers come from an
MT19937 seeded the way ``std::mt19937(seed)`` is and turned into uniforms the way libstdc++ does, so a
seeded request draws the same numbers as llama.cpp's samplers (XTC and the final draw each own a generator).

Speed: the vocabulary can be 262,144 logits, so Python never loops over it.  The candidate set starts as
"the whole vocabulary" held in the logits buffer itself; samplers that touch a few ids (bias, penalties,
DRY) patch those logits in place (the originals are put back before :meth:`Sampler.sample` returns), and
whole-vocabulary work goes to the C helpers of ``wasm_kernels/sampling.c`` (sorted top-k, nearest-k,
counts, log-sum-exp and entropy, statistics, a softmax draw).  Once a truncating sampler has run, the
candidates are short Python lists.  A temperature is kept as a scale on the buffer until then.

Deliberate differences from llama.cpp, none of which changes which tokens can be drawn or their
probabilities: tokens that llama.cpp keeps with a logit of -inf (greedy temperature, top-n-sigma, bans)
are dropped from the candidates instead; tied logits are ordered by token id (a top-k over more than
MATERIALIZE_LIMIT candidates keeps all ties of the k-th); probabilities are computed in double precision.
The final draw walks the candidates in llama.cpp's order, so a seed picks llama.cpp's token, except when
more than MATERIALIZE_LIMIT candidates survive into a draw that llama.cpp makes over a sorted array: those
are drawn in vocabulary order (same distribution, other token for the same seed).

Modules: ``names`` and ``params`` (settings and request parsing, ``biases`` for ``logit_bias``), ``vocab``,
``rng``; ``candidates`` (the protocol and the short list) and ``full`` (the whole vocabulary over
``buffer``); one unit per sampler (``edits``, ``dry``, ``truncation``, ``xtc``, ``temperature``, ``final``);
``chain`` (:class:`Sampler`).
"""

from __future__ import annotations

from .chain import Sampler, SampleResult
from .final import MIROSTAT_M
from .names import DEFAULT_SAMPLERS, parse_samplers
from .params import SamplingParams
from .rng import mt19937, random_seed, uniform_double, uniform_float
from .vocab import DRY_MAX_CHAR_LEN, DRY_MAX_SEQ_LEN, VocabInfo, process_dry_breakers

#: Candidate sets up to this size become Python lists; larger ones stay in a logits buffer (masked in C).
#: Read at call time (``full``), so that tests can lower it here.
MATERIALIZE_LIMIT = 1024

__all__ = [
    "DEFAULT_SAMPLERS",
    "DRY_MAX_CHAR_LEN",
    "DRY_MAX_SEQ_LEN",
    "MATERIALIZE_LIMIT",
    "MIROSTAT_M",
    "SampleResult",
    "Sampler",
    "SamplingParams",
    "VocabInfo",
    "mt19937",
    "parse_samplers",
    "process_dry_breakers",
    "random_seed",
    "uniform_double",
    "uniform_float",
]
