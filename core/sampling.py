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
"""

from __future__ import annotations

import math
import random
import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from emberllm.kernels import Buffer, Kernels, load_kernels

INF = math.inf
LN2 = math.log(2.0)

#: llama.cpp's default sampler order (``common_params_sampling::samplers``).
DEFAULT_SAMPLERS: tuple[str, ...] = (
    "penalties",
    "dry",
    "top_n_sigma",
    "top_k",
    "typ_p",
    "top_p",
    "min_p",
    "xtc",
    "temperature",
)

_CANONICAL = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")
#: llama.cpp samplers with no counterpart here: accepted in a sampler list and skipped.
_IGNORED = ("infill", "adaptive_p")
_LETTERS = {
    "e": "penalties",
    "d": "dry",
    "s": "top_n_sigma",
    "k": "top_k",
    "y": "typ_p",
    "p": "top_p",
    "m": "min_p",
    "x": "xtc",
    "t": "temperature",
    "i": "infill",
    "a": "adaptive_p",
}


def _sampler_aliases() -> dict[str, str]:
    """Every accepted sampler name (llama.cpp's: canonical, kebab-case, no dash, misc) -> canonical name."""
    out: dict[str, str] = {}
    for name in _CANONICAL + _IGNORED:
        out[name] = name
        if "_" in name:
            out[name.replace("_", "-")] = name
            out[name.replace("_", "")] = name
    out.update({"nucleus": "top_p", "temp": "temperature", "typ": "typ_p", "typical_p": "typ_p", "typical": "typ_p"})
    return out


_ALIASES = _sampler_aliases()

DRY_MAX_CHAR_LEN = 40  # llama.cpp truncates each sequence breaker to this many characters
DRY_MAX_SEQ_LEN = 20  # and keeps at most this many tokens of a breaker's tail
MIROSTAT_M = 100  # tokens used by Mirostat v1's Zipf estimate (llama.cpp's common sampler)
_FLOAT_MAX_LOG = 88.7228391  # log(FLT_MAX): DRY clamps its exponent so base**exp stays finite


def parse_samplers(value: str | Iterable[str]) -> list[str]:
    """Canonical sampler names from a list of names or a string of llama.cpp's letters (``"edkypmxt"``).

    Raises ``ValueError`` for an unknown name or letter; llama.cpp samplers this engine does not have
    (``infill``, ``adaptive_p``) are dropped.
    """
    names = []
    if isinstance(value, str):
        for ch in value:
            if ch not in _LETTERS:
                raise ValueError(f"samplers: unknown sampler letter {ch!r} (known: {''.join(_LETTERS)})")
            names.append(_LETTERS[ch])
    elif isinstance(value, list | tuple):
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"samplers: expected sampler names, got {item!r}")
            canon = _ALIASES.get(item.lower())
            if canon is None:
                raise ValueError(f"samplers: unknown sampler {item!r} (known: {', '.join(_CANONICAL)})")
            names.append(canon)
    else:
        raise ValueError("samplers: expected a list of sampler names or a string of sampler letters")
    return [n for n in names if n not in _IGNORED]


# -- parameters ---------------------------------------------------------------------------------------------


@dataclass
class SamplingParams:
    """A request's sampling settings, with llama.cpp server's names and defaults.

    Construction normalizes like llama-server: soft limits are clamped (``top_k`` >= 0, ``top_p``,
    ``min_p``, XTC settings to [0, 1], ``temperature`` >= 0, ``mirostat`` to 0..2), ``dry_base`` < 1 falls
    back to 1.75, ``seed`` -1 or 0xFFFFFFFF means random (None); anything else invalid raises
    ``ValueError`` whose message starts with the field name.  ``repeat_last_n`` and ``dry_penalty_last_n``
    of -1 mean the whole history passed to :meth:`Sampler.sample`.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    top_n_sigma: float = -1.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: list[str] = field(default_factory=lambda: ["\n", ":", '"', "*"])
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    min_keep: int = 0
    n_probs: int = 0
    post_sampling_probs: bool = False
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    samplers: list[str] = field(default_factory=lambda: list(DEFAULT_SAMPLERS))

    def __post_init__(self) -> None:
        self.validate()

    # fields: name -> (low, high, hard); soft limits clamp like llama-server, hard ones raise
    _FLOATS = {
        "temperature": (0.0, INF, False),
        "top_p": (0.0, 1.0, False),
        "min_p": (0.0, 1.0, False),
        "typical_p": (-INF, INF, False),
        "top_n_sigma": (-INF, INF, False),
        "xtc_probability": (0.0, 1.0, False),
        "xtc_threshold": (0.0, 1.0, False),
        "dynatemp_range": (-INF, INF, False),
        "dynatemp_exponent": (-INF, INF, False),
        "repeat_penalty": (0.0, INF, True),
        "presence_penalty": (-INF, INF, False),
        "frequency_penalty": (-INF, INF, False),
        "dry_multiplier": (-INF, INF, False),
        "dry_base": (-INF, INF, False),
        "mirostat_tau": (-INF, INF, False),
        "mirostat_eta": (-INF, INF, False),
    }
    _INTS = {
        "top_k": (0, 2**31 - 1, False),
        "repeat_last_n": (-1, 2**31 - 1, True),
        "dry_allowed_length": (0, 2**31 - 1, True),
        "dry_penalty_last_n": (-1, 2**31 - 1, True),
        "mirostat": (0, 2, False),
        "min_keep": (0, 2**31 - 1, True),
        "n_probs": (0, 2**31 - 1, True),
    }
    _BOOLS = ("post_sampling_probs", "ignore_eos")

    def validate(self) -> SamplingParams:
        """Normalize in place (see the class docstring); raises ``ValueError`` naming the bad field."""
        for name, (lo, hi, hard) in self._FLOATS.items():
            setattr(self, name, _check_number(name, getattr(self, name), float, lo, hi, hard))
        for name, (lo, hi, hard) in self._INTS.items():
            setattr(self, name, _check_number(name, getattr(self, name), int, lo, hi, hard))
        for name in self._BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a boolean, got {getattr(self, name)!r}")
        if self.repeat_penalty <= 0.0:
            raise ValueError(f"repeat_penalty: must be greater than 0, got {self.repeat_penalty}")
        if self.dry_base < 1.0:
            self.dry_base = 1.75
        self.dry_sequence_breakers = _check_breakers(self.dry_sequence_breakers)
        self.seed = _check_seed(self.seed)
        self.logit_bias = _check_logit_bias(self.logit_bias)
        self.samplers = parse_samplers(self.samplers)
        return self

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        n_vocab: int | None = None,
        tokenize: Callable[[str], list[int]] | None = None,
        defaults: SamplingParams | None = None,
    ) -> SamplingParams:
        """Settings from a llama-server style request body; keys that are not sampling settings are ignored.

        As in llama-server, ``dry_sequence_breakers`` must not be empty here (the dataclass itself accepts
        an empty list: DRY without breakers, the CLI's ``--dry-sequence-breaker none``).

        ``logit_bias`` may be an object ``{"id": bias}`` or a list of ``[id, bias]`` pairs; a bias of
        ``false`` bans the token; a string key is tokenized with ``tokenize`` (every token gets the bias);
        ids outside ``n_vocab`` are dropped, as llama-server does.  ``defaults`` supplies unset fields.
        """
        if not isinstance(data, Mapping):
            raise ValueError("request: expected a JSON object")
        base = defaults if defaults is not None else cls()
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values["logit_bias"] = dict(base.logit_bias)
        for f in fields(cls):
            if f.name in data and f.name != "logit_bias":
                values[f.name] = data[f.name]
        if "dry_sequence_breakers" in data and data["dry_sequence_breakers"] in ([], ()):
            raise ValueError("dry_sequence_breakers: must be a non-empty array of strings")
        if "logit_bias" in data:
            values["logit_bias"] = _parse_logit_bias(data["logit_bias"], n_vocab, tokenize)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as llama-server reports them (``generation_settings``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["seed"] = 0xFFFFFFFF if self.seed is None else self.seed
        out["logit_bias"] = [[tok, False if bias == -INF else bias] for tok, bias in self.logit_bias.items()]
        out["samplers"] = list(self.samplers)
        out["dry_sequence_breakers"] = list(self.dry_sequence_breakers)
        return out


def _check_number(name: str, value: Any, kind: type, lo: float, hi: float, hard: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{name}: expected an integer, got {value!r}")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name}: must be finite, got {value!r}")
    if lo <= value <= hi:
        return value
    if hard:
        raise ValueError(f"{name}: must be between {lo} and {hi}, got {value!r}")
    return min(max(value, lo), hi)


def _check_breakers(value: Any) -> list[str]:
    """A list of strings (empty: DRY without breakers, as llama.cpp's ``--dry-sequence-breaker none``)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(s, str) for s in value):
        raise ValueError("dry_sequence_breakers: expected an array of strings")
    return list(value)


def _check_seed(value: Any) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"seed: expected an integer, got {value!r}")
    value = int(value)
    if value in (-1, 0xFFFFFFFF):
        return None
    if not 0 <= value < 0xFFFFFFFF:
        raise ValueError(f"seed: must be -1 (random) or between 0 and 4294967294, got {value}")
    return value


def _check_logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, Mapping):
        raise ValueError("logit_bias: expected a mapping of token id to bias")
    out: dict[int, float] = {}
    for tok, bias in value.items():
        if isinstance(tok, bool) or not isinstance(tok, int) or tok < 0:
            raise ValueError(f"logit_bias: token ids must be non-negative integers, got {tok!r}")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or math.isnan(bias):
            raise ValueError(f"logit_bias: bias of token {tok} must be a number, got {bias!r}")
        out[tok] = float(bias)
    return out


def _parse_logit_bias(value: Any, n_vocab: int | None, tokenize: Callable[[str], list[int]] | None) -> dict[int, float]:
    """llama-server's ``logit_bias`` forms -> {id: summed bias}."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for el in value:
            if not isinstance(el, list | tuple) or len(el) != 2:
                raise ValueError(f"logit_bias: expected [token, bias] pairs, got {el!r}")
            pairs.append((el[0], el[1]))
    else:
        raise ValueError("logit_bias: expected an object or an array of [token, bias] pairs")
    out: dict[int, float] = {}
    for key, raw in pairs:
        if raw is False:
            bias = -INF
        elif isinstance(raw, bool) or not isinstance(raw, int | float) or math.isnan(raw):
            raise ValueError(f"logit_bias: bias for {key!r} must be a number or false, got {raw!r}")
        else:
            bias = float(raw)
        for tok in _bias_tokens(key, tokenize):
            if n_vocab is not None and not 0 <= tok < n_vocab:
                continue
            out[tok] = out.get(tok, 0.0) + bias
    return out


def _bias_tokens(key: Any, tokenize: Callable[[str], list[int]] | None) -> list[int]:
    if isinstance(key, bool):
        raise ValueError(f"logit_bias: bad token {key!r}")
    if isinstance(key, int):
        return [key]
    if isinstance(key, str):
        text = key.strip()
        if text.lstrip("-").isdigit():
            return [int(text)]
        if tokenize is None:
            raise ValueError(f"logit_bias: cannot tokenize {key!r} here; use token ids")
        return list(tokenize(key))
    raise ValueError(f"logit_bias: bad token {key!r}")


# -- vocabulary facts ---------------------------------------------------------------------------------------


@dataclass
class VocabInfo:
    """What the sampler needs from the model's vocabulary; make one per model and reuse it.

    ``token_text(id)`` is a token's text as ``llama_detokenize`` renders it (special tokens included);
    ``tokenize(text)`` encodes without BOS/EOS or special parsing.  Both serve DRY's sequence breakers
    only; the processed breakers are cached here per breaker list (the first use scans the vocabulary).
    """

    n_vocab: int
    eog_ids: frozenset[int] = frozenset()
    token_text: Callable[[int], str] | None = None
    tokenize: Callable[[str], list[int]] | None = None
    _texts: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _dry_cache: dict[tuple[str, ...], dict[int, list[tuple[int, ...]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VocabInfo:
        """From an ``emberllm.tokenizers.Tokenizer``."""
        return cls(
            n_vocab=tokenizer.n_vocab,
            eog_ids=frozenset(tokenizer.eog_ids),
            token_text=lambda t: tokenizer.decode([t], special=True),
            tokenize=lambda s: tokenizer.encode(s, add_special=False, parse_special=False),
        )

    def texts(self) -> list[str]:
        """Every token's text (computed once)."""
        if self._texts is None:
            if self.token_text is None:
                raise ValueError("VocabInfo has no token_text function")
            self._texts = [self.token_text(t) for t in range(self.n_vocab)]
        return self._texts

    def dry_breakers(self, breakers: Sequence[str]) -> dict[int, list[tuple[int, ...]]]:
        """DRY's processed sequence breakers: head token -> tails (token tuples; empty = the head alone).

        Empty without ``token_text``/``tokenize`` (then DRY runs without breakers).
        """
        key = tuple(breakers)
        if key not in self._dry_cache:
            if self.token_text is None or self.tokenize is None:
                self._dry_cache[key] = {}
            else:
                self._dry_cache[key] = process_dry_breakers(self.texts(), self.tokenize, breakers)
        return self._dry_cache[key]


def process_dry_breakers(
    texts: Sequence[str], tokenize: Callable[[str], list[int]], breakers: Sequence[str]
) -> dict[int, list[tuple[int, ...]]]:
    """llama.cpp's ``get_overlapping_token_sequences`` for each breaker.

    A token whose text contains the breaker is a head with an empty tail; a token whose text ends with a
    proper prefix of the breaker is a head whose tail is the rest of the breaker, tokenized (at most 20
    tokens).
    """
    out: dict[int, list[tuple[int, ...]]] = {}
    for raw in breakers:
        brk = raw[:DRY_MAX_CHAR_LEN]
        if not brk:
            continue
        first = brk[0]
        for tid, word in enumerate(texts):
            if first not in word:
                continue
            if brk in word:
                _add_tail(out, tid, ())
                continue
            pos = word.find(first)
            while pos != -1:
                rest = word[pos:]
                if brk.startswith(rest):
                    _add_tail(out, tid, tuple(tokenize(brk[len(rest) :])[:DRY_MAX_SEQ_LEN]))
                pos = word.find(first, pos + 1)
    return out


def _add_tail(out: dict[int, list[tuple[int, ...]]], tok: int, tail: tuple[int, ...]) -> None:
    tails = out.setdefault(tok, [])
    if tail not in tails:
        tails.append(tail)


# -- random numbers -----------------------------------------------------------------------------------------


def mt19937(seed: int) -> random.Random:
    """A ``random.Random`` in the state ``std::mt19937(seed)`` starts in (same 32-bit outputs)."""
    mt = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        prev = mt[-1]
        mt.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
    rng = random.Random()
    rng.setstate((3, (*mt, 624), None))
    return rng


def uniform_double(rng: random.Random) -> float:
    """libstdc++'s ``uniform_real_distribution<double>(0, 1)`` over an MT19937: two draws."""
    lo = rng.getrandbits(32)
    hi = rng.getrandbits(32)
    u = (lo + hi * 4294967296.0) / 18446744073709551616.0
    return u if u < 1.0 else 1.0 - 2.0**-53


def uniform_float(rng: random.Random) -> float:
    """libstdc++'s ``uniform_real_distribution<float>(0, 1)``: one draw rounded to float32."""
    x = struct.unpack("f", struct.pack("f", float(rng.getrandbits(32))))[0]
    u = x / 4294967296.0
    return u if u < 1.0 else 1.0 - 2.0**-24


def random_seed() -> int:
    """A fresh 32-bit seed (llama.cpp's LLAMA_DEFAULT_SEED behaviour)."""
    try:
        return random.SystemRandom().getrandbits(32)
    except (NotImplementedError, OSError):  # pragma: no cover - platforms without an entropy source
        return random.getrandbits(32)


# -- results ------------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """One sampled token and, when ``n_probs`` > 0, the probabilities llama-server reports.

    ``probs_before``: the ``n_probs`` most likely tokens of the softmax of the raw logits over the whole
    vocabulary (``post_sampling_probs: false``), ``prob_before`` the chosen token's probability there.
    ``probs_after``: the ``n_probs`` most likely surviving candidates after the whole chain, with the
    probabilities the final draw used (zeros left out; ``post_sampling_probs: true``), ``prob_after``
    the chosen token's.
    """

    token: int
    probs_before: list[tuple[int, float]] | None = None
    probs_after: list[tuple[int, float]] | None = None
    prob_before: float | None = None
    prob_after: float | None = None


# -- the sampler --------------------------------------------------------------------------------------------

#: Candidate sets up to this size become Python lists; larger ones stay in a logits buffer (masked in C).
MATERIALIZE_LIMIT = 1024
_FLT_MAX = 3.4028234663852886e38
#: The C sums of probability are float-accurate: masses this close to a top-p / typical-p target count as
#: reaching it, as the exact sum would.
_MASS_EPS = 1e-6


class _Cands:
    """The candidate set during one :meth:`Sampler.sample`.

    ``full``: the tokens of the logits buffer that are not -inf (``masked`` of the vocabulary are), the
    current logit of a token being ``scale * buffer[id]``; ``desc``: llama.cpp would hold them sorted by
    now (else in vocabulary order), which decides the order of a list made from them.  Otherwise the
    ``ids`` with their current ``logits`` (``sorted``: descending).
    """

    __slots__ = ("full", "scale", "masked", "desc", "ids", "logits", "sorted")

    def __init__(self) -> None:
        self.full = True
        self.scale = 1.0
        self.masked = 0
        self.desc = False
        self.ids: list[int] = []
        self.logits: list[float] = []
        self.sorted = False

    def keep(self, ids: list[int], logits: list[float], is_sorted: bool) -> None:
        """Become the given candidate list."""
        self.full = False
        self.ids = ids
        self.logits = logits
        self.sorted = is_sorted


Stage = Callable[[_Cands], None]


def _softmax(logits: Sequence[float]) -> list[float]:
    """Probabilities of a non-empty list of logits (-inf gives 0; +inf entries share everything)."""
    top = max(logits)
    if top == INF:
        hits = sum(1 for v in logits if v == INF)
        return [1.0 / hits if v == INF else 0.0 for v in logits]
    if top == -INF:
        return [1.0 / len(logits)] * len(logits)
    exps = [math.exp(v - top) for v in logits]
    total = math.fsum(exps)
    return [e / total for e in exps]


def _log(p: float) -> float:
    return math.log(p) if p > 0.0 else -INF


def _sort_desc(c: _Cands) -> None:
    """Sort the candidate list by logit, descending (stable: equal logits keep their order)."""
    if c.sorted:
        return
    order = sorted(range(len(c.ids)), key=c.logits.__getitem__, reverse=True)
    c.ids = [c.ids[i] for i in order]
    c.logits = [c.logits[i] for i in order]
    c.sorted = True


def _subset(c: _Cands, keep: Sequence[int]) -> None:
    """Keep the candidates at the given positions."""
    c.ids = [c.ids[i] for i in keep]
    c.logits = [c.logits[i] for i in keep]


def _float_order(f: float) -> int:
    """An integer that orders float32 values as the floats are ordered (-0.0 and 0.0 equal)."""
    bits = struct.unpack("<i", struct.pack("<f", f))[0]
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _order_float(o: int) -> float:
    """Inverse of :func:`_float_order`."""
    bits = o if o >= 0 else (-o) | 0x80000000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _bisect_floats(lo: float, hi: float, ok: Callable[[float], bool]) -> float:
    """The largest float32 t in [lo, hi) with ok(t), for ok true at lo and false at hi and monotonic."""
    a, b = _float_order(lo), _float_order(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if ok(_order_float(mid)):
            a = mid
        else:
            b = mid
    return _order_float(a)


class Sampler:
    """llama.cpp's sampler chain for one request.

    Build it once per request; call :meth:`sample` for every token with the logits and the token history.
    It keeps the random generators and Mirostat's state between calls.

    ``vocab``: a :class:`VocabInfo` (or just ``n_vocab``); its EOG ids are banned with ``ignore_eos`` and
    its text functions give DRY its sequence breakers (``dry_breakers`` overrides them with token-level
    breakers: head token -> tails).  ``kernels``: the loaded C kernels (default: :func:`load_kernels`).
    """

    def __init__(
        self,
        params: SamplingParams,
        vocab: VocabInfo | int,
        kernels: Kernels | None = None,
        dry_breakers: Mapping[int, Iterable[Sequence[int]]] | None = None,
    ) -> None:
        self.params = params
        self.vocab = vocab if isinstance(vocab, VocabInfo) else VocabInfo(int(vocab))
        self.n_vocab = self.vocab.n_vocab
        self.kernels = kernels or load_kernels()
        self.lib = self.kernels.lib
        self.seed = params.seed if params.seed is not None else random_seed()
        self._cap = 0
        self._ids: Buffer = self.kernels.i32(1)
        self._vals: Buffer = self.kernels.f32(1)
        self._stat: Buffer = self.kernels.f32(4)
        self._hist_cap = 0
        self._hist: list[Buffer] = []
        self._work: Buffer | None = None
        self._own_logits: Buffer | None = None
        self._src_view: memoryview = memoryview(b"")
        self._src_ptr: Any = None
        self._view: memoryview = self._src_view
        self._ptr: Any = None
        self._on_work = False
        self._saved: dict[int, float] = {}
        self._prev: Sequence[int] = ()
        self._bias = self._merged_bias()
        self._dry_breakers = self._resolve_breakers(dry_breakers)
        self._dry_single = {tok for tok, tails in self._dry_breakers.items() if () in tails}
        self.reset()
        self._stages = self._build_chain()

    # -- public -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the request's start: generators reseeded, Mirostat's mu = 2 * tau."""
        self._rng = mt19937(self.seed)
        self._rng_xtc = mt19937(self.seed)
        self.mu = 2.0 * self.params.mirostat_tau

    @property
    def stage_names(self) -> list[str]:
        """The active samplers in chain order (those that cannot change the result left out)."""
        return [s.__name__.removeprefix("_st_") for s in self._stages]  # type: ignore[attr-defined]

    def sample(self, logits: Buffer | memoryview, prev_tokens: Sequence[int] = (), ptr: Any = None) -> SampleResult:
        """Pick the next token.

        ``logits``: a kernels :class:`Buffer` (its first ``n_vocab`` floats are used) or a float32
        memoryview together with ``ptr``, the kernel pointer to the same memory (a memoryview alone is
        copied first).  A few logits are patched while the chain runs; they are restored before returning.
        ``prev_tokens``: the sequence so far, prompt included (llama-server feeds the prompt to the sampler
        too): penalties and DRY look at its last ``repeat_last_n`` / ``dry_penalty_last_n`` tokens.
        """
        self._bind(logits, ptr)
        self._prev = prev_tokens
        c = _Cands()
        try:
            for stage in self._stages:
                stage(c)
            token, after = self._finish(c)
        finally:
            self._restore()
            self._prev = ()
        result = SampleResult(token)
        if self.params.n_probs > 0:
            self._report(result, after)
        return result

    # -- construction -------------------------------------------------------------------------------------
    def _merged_bias(self) -> dict[int, float]:
        bias = {tok: b for tok, b in self.params.logit_bias.items() if 0 <= tok < self.n_vocab}
        if self.params.ignore_eos:
            for tok in self.vocab.eog_ids:
                if 0 <= tok < self.n_vocab:
                    bias[tok] = bias.get(tok, 0.0) - INF
        return bias

    def _resolve_breakers(
        self, given: Mapping[int, Iterable[Sequence[int]]] | None
    ) -> dict[int, list[tuple[int, ...]]]:
        if given is not None:
            return {int(tok): [tuple(t) for t in tails] for tok, tails in given.items()}
        if not self._dry_enabled():
            return {}
        return self.vocab.dry_breakers(self.params.dry_sequence_breakers)

    def _dry_enabled(self) -> bool:
        p = self.params
        return p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and p.dry_penalty_last_n != 0

    def _penalties_enabled(self) -> bool:
        p = self.params
        neutral = p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        return p.repeat_last_n != 0 and not neutral

    def _build_chain(self) -> list[Stage]:
        p = self.params
        stages: list[Stage] = [self._st_logit_bias] if self._bias else []
        if p.mirostat:
            return [*stages, self._st_temp]
        enabled = {
            "penalties": self._penalties_enabled(),
            "dry": self._dry_enabled(),
            "top_n_sigma": p.top_n_sigma > 0.0,
            "top_k": p.top_k > 0,
            "typ_p": p.typical_p < 1.0,
            "top_p": p.top_p < 1.0,
            "min_p": p.min_p > 0.0,
            "xtc": p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5,
            "temperature": True,
        }
        stage_of: dict[str, Stage] = {
            "penalties": self._st_penalties,
            "dry": self._st_dry,
            "top_n_sigma": self._st_top_n_sigma,
            "top_k": self._st_top_k,
            "typ_p": self._st_typical,
            "top_p": self._st_top_p,
            "min_p": self._st_min_p,
            "xtc": self._st_xtc,
            "temperature": self._st_temp_ext,
        }
        names = self._drop_before_greedy([name for name in p.samplers if enabled[name]])
        return stages + [stage_of[name] for name in names]

    def _drop_before_greedy(self, names: list[str]) -> list[str]:
        """With a fixed temperature <= 0 the chain ends in the arg-max: truncations before the temperature
        that always keep the arg-max (and draw no random numbers) cannot change the result."""
        p = self.params
        if p.temperature > 0.0 or p.dynatemp_range > 0.0 or "temperature" not in names:
            return names
        cut = names.index("temperature")
        harmless = {"top_k", "top_p", "min_p", "top_n_sigma"}
        return [name for i, name in enumerate(names) if not (i < cut and name in harmless)]

    # -- buffers ------------------------------------------------------------------------------------------
    def _bind(self, logits: Buffer | memoryview, ptr: Any) -> None:
        if isinstance(logits, Buffer):
            view, ptr = logits.view, logits.ptr
        elif ptr is not None:
            view = logits
        else:
            if self._own_logits is None:
                self._own_logits = self.kernels.f32(self.n_vocab)
            self._own_logits.view[: self.n_vocab] = logits[: self.n_vocab]
            view, ptr = self._own_logits.view, self._own_logits.ptr
        if len(view) < self.n_vocab:
            raise ValueError(f"logits hold {len(view)} values, the vocabulary has {self.n_vocab}")
        self._src_view, self._src_ptr = view, ptr
        self._view, self._ptr, self._on_work = view, ptr, False

    def _restore(self) -> None:
        """Undo the patches on the caller's logits and point back at them."""
        view = self._src_view
        for tok, value in self._saved.items():
            view[tok] = value
        self._saved.clear()
        self._view, self._ptr, self._on_work = self._src_view, self._src_ptr, False

    def _to_work(self) -> None:
        """Continue on a private copy of the (patched) logits, which may then be masked."""
        if self._on_work:
            return
        if self._work is None:
            self._work = self.kernels.f32(self.n_vocab)
        self._work.view[: self.n_vocab] = self._view[: self.n_vocab]
        self._view, self._ptr, self._on_work = self._work.view, self._work.ptr, True

    def _ensure(self, k: int) -> None:
        if k > self._cap:
            self._cap = max(k, 2 * self._cap, 64)
            self._ids = self.kernels.i32(self._cap)
            self._vals = self.kernels.f32(self._cap)

    def _get(self, c: _Cands, tok: int) -> float:
        return self._view[tok] * c.scale

    def _set(self, c: _Cands, tok: int, value: float) -> None:
        old = self._view[tok]
        if not self._on_work and tok not in self._saved:
            self._saved[tok] = old
        self._view[tok] = value / c.scale
        if value == -INF and old != -INF:
            c.masked += 1

    # -- whole-vocabulary helpers (C); thresholds and values in the buffer's units unless said -------------
    def _top(self, c: _Cands, k: int) -> tuple[list[int], list[float]]:
        """The k highest current logits (-inf left out), sorted; ties: lower id first."""
        k = min(k, self.n_vocab)
        self._ensure(k)
        got = self.lib.emb_top_k_sorted(self._ptr, self.n_vocab, k, self._ids.ptr, self._vals.ptr)
        return self._fetch(c, got)

    def _nearest(self, c: _Cands, center: float, k: int) -> tuple[list[int], list[float]]:
        """The k tokens whose current logits are nearest ``center`` (current units), nearest first."""
        k = min(k, self.n_vocab)
        self._ensure(k)
        got = self.lib.emb_nearest_k(self._ptr, self.n_vocab, center / c.scale, k, self._ids.ptr, self._vals.ptr)
        return self._fetch(c, got)

    def _fetch(self, c: _Cands, got: int) -> tuple[list[int], list[float]]:
        ids = self._ids.view[:got].tolist()
        vals = self._vals.view[:got].tolist()
        while vals and vals[-1] == -INF:  # masked tokens sort last
            vals.pop()
            ids.pop()
        if c.scale != 1.0:
            vals = [v * c.scale for v in vals]
        return ids, vals

    def _count_ge(self, threshold: float) -> int:
        return int(self.lib.emb_count_ge(self._ptr, self.n_vocab, threshold))

    def _lse(self, c: _Cands) -> float:
        """log(sum(exp(current logits))) over the buffer (current units)."""
        return float(self.lib.emb_logsumexp(self._ptr, self.n_vocab, c.scale, self.kernels.null))

    def _lse_entropy(self, c: _Cands) -> tuple[float, float]:
        """Log-sum-exp and entropy (nats) of the softmax of the current logits."""
        lse = float(self.lib.emb_logsumexp(self._ptr, self.n_vocab, c.scale, self._stat.ptr))
        return lse, float(self._stat.view[0])

    def _mass(self, c: _Cands, lse: float, lo: float, hi: float) -> float:
        """Probability of the tokens with lo <= logit <= hi."""
        return float(self.lib.emb_sum_exp_between(self._ptr, self.n_vocab, c.scale, lse, lo, hi))

    def _size(self, c: _Cands) -> int:
        return self.n_vocab - c.masked if c.full else len(c.ids)

    def _kth_value(self, k: int) -> float:
        """The k-th largest logit: the largest t with at least k logits >= t."""
        _, top = self._top(_Cands(), 1)
        return _bisect_floats(-_FLT_MAX, _next_up(top[0]), lambda t: self._count_ge(t) >= k)

    def _mask(self, c: _Cands, lo: float, hi: float) -> None:
        """Keep only the logits in [lo, hi]."""
        self._to_work()
        c.masked = self.n_vocab - int(self.lib.emb_mask_outside(self._ptr, self.n_vocab, lo, hi))

    def _keep_ge(self, c: _Cands, threshold: float, k: int, by_id: bool = False) -> None:
        """Keep the k best tokens, which are those >= threshold.  ``by_id``: in vocabulary order, as
        llama.cpp's unsorted filters leave them (the order the final draw walks)."""
        if k > MATERIALIZE_LIMIT:
            if k < self._size(c):
                self._mask(c, threshold, INF)
            return
        ids, logits = self._top(c, k)
        if by_id:
            order = sorted(range(len(ids)), key=ids.__getitem__)
            ids, logits = [ids[i] for i in order], [logits[i] for i in order]
        c.keep(ids, logits, not by_id)

    def _sort_if_small(self, c: _Cands) -> None:
        """Where llama.cpp sorts the whole candidate array, do so too when it is small enough (so that the
        draw walks the same order); larger sets stay in the buffer, drawn in vocabulary order."""
        c.desc = True
        if c.full and self._size(c) <= MATERIALIZE_LIMIT:
            c.keep(*self._top(c, self._size(c)), True)

    def _keep_top(self, c: _Cands, k: int) -> None:
        """Keep the k best tokens (all tied with the k-th when there are more than MATERIALIZE_LIMIT)."""
        if k <= MATERIALIZE_LIMIT:
            c.keep(*self._top(c, k), True)
        elif k < self._size(c):
            self._mask(c, self._kth_value(k), INF)

    # -- stages: few ids ----------------------------------------------------------------------------------
    def _modify(self, c: _Cands, targets: Mapping[int, Any], fn: Callable[[float, Any], float]) -> None:
        """Replace the logit l of every candidate in ``targets`` by ``fn(l, targets[id])``."""
        if c.full:
            for tok, arg in targets.items():
                if self._view[tok] != -INF:  # -inf stays -inf (and +inf bias on it is no NaN)
                    self._set(c, tok, fn(self._get(c, tok), arg))
            return
        logits = c.logits
        for i, tok in enumerate(c.ids):
            arg = targets.get(tok)
            if arg is not None:
                logits[i] = fn(logits[i], arg)
        c.sorted = False

    def _st_logit_bias(self, c: _Cands) -> None:
        self._modify(c, self._bias, lambda logit, bias: logit + bias)

    def _st_penalties(self, c: _Cands) -> None:
        p = self.params
        n = p.repeat_last_n
        window = self._prev if n < 0 else self._prev[-n:]
        counts = Counter(tok for tok in window if 0 <= tok < self.n_vocab)
        if not counts:
            return
        rep, freq, present = p.repeat_penalty, p.frequency_penalty, p.presence_penalty

        def penalize(logit: float, count: int) -> float:
            logit = logit * rep if logit <= 0.0 else logit / rep
            return logit - (count * freq + present)

        self._modify(c, counts, penalize)

    def _st_dry(self, c: _Cands) -> None:
        penalties = self._dry_penalties()
        if penalties:
            self._modify(c, penalties, lambda logit, pen: logit - pen)

    def _dry_penalties(self) -> dict[int, float]:
        """llama.cpp's DRY: token -> penalty for every token that would extend a repeat."""
        p = self.params
        last_n = p.dry_penalty_last_n
        hist = self._prev if last_n < 0 else self._prev[-last_n:]
        allowed = p.dry_allowed_length
        if len(hist) <= allowed:
            return {}
        rep_limit = self._dry_rep_limit(hist)
        if rep_limit < allowed:
            return {}
        longest: dict[int, int] = {}
        for tok, length in self._dry_repeats(hist, rep_limit, allowed):
            if length > longest.get(tok, -1):
                longest[tok] = length
        max_exp = int(_FLOAT_MAX_LOG / math.log(p.dry_base)) if p.dry_base > 1.000001 else 0
        out = {}
        for tok, length in longest.items():
            if tok in self._dry_single or not 0 <= tok < self.n_vocab:
                continue
            exponent = min(length - allowed, max_exp) if max_exp > 0 else length - allowed
            out[tok] = p.dry_multiplier * p.dry_base**exponent
        return out

    def _dry_rep_limit(self, hist: Sequence[int]) -> int:
        """Step 1: the latest sequence breaker caps how long a repeat can be."""
        n = len(hist)
        breakers = self._dry_breakers
        if not breakers:
            return n
        for i in range(n):
            tails = breakers.get(hist[n - 1 - i])
            if tails is None:
                continue
            best = -1
            for tail in tails:
                size = len(tail)
                if best < size <= i and all(tail[o] == hist[n - i + o] for o in range(size)):
                    best = size
            if best >= 0:
                return i - best
        return n

    def _dry_repeats(self, hist: Sequence[int], rep_limit: int, min_len: int) -> list[tuple[int, int]]:
        """Steps 2-3 (C): (token that would extend a repeat, repeat length) pairs."""
        n = len(hist)
        if n > self._hist_cap:
            self._hist_cap = max(n, 2 * self._hist_cap, 256)
            self._hist = [self.kernels.i32(self._hist_cap) for _ in range(3)]
        tokens, out_tok, out_len = self._hist
        tokens.view[:n] = array("i", hist)
        got = self.lib.emb_dry_repeats(tokens.ptr, n, rep_limit, min_len, out_tok.ptr, out_len.ptr)
        return list(zip(out_tok.view[:got].tolist(), out_len.view[:got].tolist(), strict=True))

    # -- stages: truncation -------------------------------------------------------------------------------
    def _st_top_k(self, c: _Cands) -> None:
        k = self.params.top_k
        if c.full:
            self._keep_top(c, k)
            c.desc = True
        elif k < len(c.ids):
            _sort_desc(c)
            c.ids, c.logits = c.ids[:k], c.logits[:k]

    def _st_top_p(self, c: _Cands) -> None:
        p, min_keep = self.params.top_p, self.params.min_keep
        if c.full:
            self._top_p_full(c, p, min_keep)
            return
        _sort_desc(c)
        cum = 0.0
        for i, prob in enumerate(_softmax(c.logits)):
            cum += prob
            if cum >= p and i + 1 >= min_keep:
                c.ids, c.logits = c.ids[: i + 1], c.logits[: i + 1]
                return

    def _top_p_full(self, c: _Cands, p: float, min_keep: int) -> None:
        """The sorted prefix reaching mass p: from the top 256 or 1024 logits, else a bisected threshold."""
        lse = self._lse(c)
        cum, done = 0.0, 0
        for k in _growth(max(min_keep, 1)):
            ids, logits = self._top(c, k)
            for i in range(done, len(logits)):
                cum += math.exp(logits[i] - lse)
                if cum >= p and i + 1 >= min_keep:
                    c.keep(ids[: i + 1], logits[: i + 1], True)
                    return
            if len(ids) < k:
                c.keep(ids, logits, True)
                return
            done = len(ids)
        cut = _bisect_floats(-_FLT_MAX, logits[-1] / c.scale, lambda t: self._mass(c, lse, t, INF) >= p - _MASS_EPS)
        if self._count_ge(cut) < min_keep:
            cut = self._kth_value(min_keep)
        self._mask(c, cut, INF)
        c.desc = True

    def _st_min_p(self, c: _Cands) -> None:
        p, min_keep = self.params.min_p, self.params.min_keep
        if c.full:
            _, top = self._top(c, 1)
            threshold = (top[0] + math.log(p)) / c.scale
            count = self._count_ge(threshold)
            if count >= max(min_keep, 1):
                self._keep_ge(c, threshold, count, by_id=not c.desc)
            else:
                self._keep_top(c, max(min_keep, 1))
            return
        if not c.ids:
            return
        if not c.sorted:
            threshold = max(c.logits) + math.log(p)
            kept = [i for i, v in enumerate(c.logits) if v >= threshold]
            if kept and len(kept) >= min_keep:
                _subset(c, kept)
                return
            _sort_desc(c)
        threshold = c.logits[0] + math.log(p)
        i = 1
        while i < len(c.logits) and not (c.logits[i] < threshold and i >= min_keep):
            i += 1
        c.ids, c.logits = c.ids[:i], c.logits[:i]

    def _st_typical(self, c: _Cands) -> None:
        p, min_keep = self.params.typical_p, self.params.min_keep
        if c.full:
            self._typical_full(c, p, min_keep)
            return
        _sort_desc(c)
        probs = _softmax(c.logits)
        entropy = -math.fsum(q * math.log(q) for q in probs if q > 0.0)
        order = sorted(range(len(probs)), key=lambda i: abs(-_log(probs[i]) - entropy))
        cum, last = 0.0, len(order)
        for rank, i in enumerate(order):
            cum += probs[i]
            if cum > p and (min_keep == 0 or rank >= min_keep - 1):
                last = rank + 1
                break
        _subset(c, order[:last])
        c.sorted = False

    def _typical_full(self, c: _Cands, p: float, min_keep: int) -> None:
        """|-log p_i - H| = |l_i - (lse - H)|: typical order is nearness of the logit to lse - H.  The
        nearest 256 or 1024 tokens, else a bisected band around that centre."""
        lse, entropy = self._lse_entropy(c)
        center = lse - entropy
        cum, done = 0.0, 0
        for k in _growth(max(min_keep, 1)):
            ids, logits = self._nearest(c, center, k)
            for i in range(done, len(logits)):
                cum += math.exp(logits[i] - lse)
                if cum > p and (min_keep == 0 or i >= min_keep - 1):
                    c.keep(ids[: i + 1], logits[: i + 1], False)
                    return
            if len(ids) < k:
                c.keep(ids, logits, False)
                return
            done = len(ids)
        mid = center / c.scale
        width = _bisect_floats(0.0, _FLT_MAX, lambda r: self._mass(c, lse, mid - r, mid + r) <= p + _MASS_EPS)
        width = _next_up(width)
        self._mask(c, mid - width, mid + width)

    def _st_top_n_sigma(self, c: _Cands) -> None:
        n = self.params.top_n_sigma
        if self._size(c) <= 1:
            return
        if c.full:
            self.lib.emb_logit_stats(self._ptr, self.n_vocab, self._stat.ptr)
            threshold = self._stat.view[0] - n * self._stat.view[2]
            self._keep_ge(c, threshold, max(self._count_ge(threshold), 1), by_id=not c.desc)
            return
        finite = [v for v in c.logits if v != -INF]
        if not finite:
            return
        mean = math.fsum(finite) / len(finite)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / len(finite))
        threshold = max(finite) - n * std
        _subset(c, [i for i, v in enumerate(c.logits) if v >= threshold])

    def _st_xtc(self, c: _Cands) -> None:
        p = self.params
        size = self._size(c)
        if size < 2 or uniform_float(self._rng_xtc) > p.xtc_probability:
            return
        self._sort_if_small(c)
        if c.full:
            lse = self._lse(c)
            above = self._count_ge((lse + _log(p.xtc_threshold)) / c.scale)
            last = max(above - 1, 0)
            if size - last >= p.min_keep and last > 0:
                self._drop_top(c, last)
            return
        _sort_desc(c)
        last = 0
        for i, q in enumerate(_softmax(c.logits)):
            if q < p.xtc_threshold:
                break
            last = i
        if len(c.ids) - last >= p.min_keep and last > 0:
            c.ids, c.logits = c.ids[last:], c.logits[last:]

    def _drop_top(self, c: _Cands, k: int) -> None:
        """Remove the k best tokens from the whole-vocabulary set."""
        if k <= MATERIALIZE_LIMIT:
            ids, _ = self._top(c, k)
            self._to_work()
            for tok in ids:
                self._view[tok] = -INF
            c.masked += len(ids)
        else:
            self._mask(c, -INF, _next_down(self._kth_value(k)))

    # -- stages: temperature ------------------------------------------------------------------------------
    def _st_temp(self, c: _Cands) -> None:
        """Plain temperature (the Mirostat chain)."""
        self._apply_temp(c, self.params.temperature)

    def _st_temp_ext(self, c: _Cands) -> None:
        """Temperature, dynamic (entropy-scaled) when ``dynatemp_range`` > 0."""
        p = self.params
        if p.dynatemp_range <= 0.0:
            self._apply_temp(c, p.temperature)
            return
        size = self._size(c)
        if size <= 1:
            return
        lo, hi = max(0.0, p.temperature - p.dynatemp_range), p.temperature + p.dynatemp_range
        self._sort_if_small(c)
        if c.full:
            _, entropy = self._lse_entropy(c)
        else:
            entropy = -math.fsum(q * math.log(q) for q in _softmax(c.logits) if q > 0.0)
        try:
            dyn = lo + (hi - lo) * (entropy / math.log(size)) ** p.dynatemp_exponent
        except (OverflowError, ZeroDivisionError):
            dyn = hi
        self._apply_temp(c, dyn)

    def _apply_temp(self, c: _Cands, temp: float) -> None:
        if temp <= 0.0:
            self._keep_argmax(c)
        elif c.full:
            c.scale /= temp
        else:
            c.logits = [v / temp for v in c.logits]

    def _keep_argmax(self, c: _Cands) -> None:
        if c.full:
            c.keep(*self._top(c, 1), True)
        elif c.ids:
            best = max(range(len(c.logits)), key=c.logits.__getitem__)
            c.keep([c.ids[best]], [c.logits[best]], True)

    # -- the final draw -----------------------------------------------------------------------------------
    def _finish(self, c: _Cands) -> tuple[int, list[tuple[int, float]]]:
        """Mirostat or the softmax draw: the token and the final candidates with their probabilities."""
        if self.params.mirostat == 1:
            return self._mirostat_v1(c)
        if self.params.mirostat == 2:
            return self._mirostat_v2(c)
        u = uniform_double(self._rng)
        if c.full:
            return self._draw_full(c, u, self.params.n_probs > 0)
        if not c.ids:
            raise RuntimeError("no candidate token left to sample")
        probs = _softmax(c.logits)
        idx = _pick(probs, u)
        return c.ids[idx], list(zip(c.ids, probs, strict=True))

    def _draw_full(self, c: _Cands, u: float, with_probs: bool) -> tuple[int, list[tuple[int, float]]]:
        """Draw from the whole-vocabulary set; with_probs: also the probabilities of its best tokens and of
        the chosen one."""
        token = int(self.lib.emb_sample_softmax(self._ptr, self.n_vocab, c.scale, u))
        if token < 0:
            raise RuntimeError("no candidate token left to sample")
        if not with_probs:
            return token, []
        lse = self._lse(c)
        ids, logits = self._top(c, max(self.params.n_probs, 1))
        pairs = [(tok, math.exp(v - lse)) for tok, v in zip(ids, logits, strict=True)]
        if token not in ids:
            pairs.append((token, math.exp(self._get(c, token) - lse)))
        return token, pairs

    def _mirostat_v1(self, c: _Cands) -> tuple[int, list[tuple[int, float]]]:
        """Mirostat 1.0: estimate the Zipf exponent from the best 100, keep the top k that aims at tau."""
        size = self._size(c)
        if size == 0:
            raise RuntimeError("no candidate token left to sample")
        if c.full:
            _, logits = self._top(c, MIROSTAT_M)
        else:
            _sort_desc(c)
            logits = c.logits[:MIROSTAT_M]
        num = den = 0.0
        for i in range(min(MIROSTAT_M - 1, len(logits) - 1)):
            t_i = math.log((i + 2) / (i + 1))
            b_i = logits[i] - logits[i + 1]
            num += t_i * (b_i if b_i == b_i else INF)
            den += t_i * t_i
        k = _mirostat_k(num / den if den > 0.0 else math.nan, self.mu, self.n_vocab)
        if c.full:
            self._keep_top(c, k)
            self._sort_if_small(c)
        else:
            c.ids, c.logits = c.ids[:k], c.logits[:k]
        return self._mirostat_draw(c)

    def _mirostat_v2(self, c: _Cands) -> tuple[int, list[tuple[int, float]]]:
        """Mirostat 2.0: keep the tokens whose surprise -log2(p) is at most mu."""
        if c.full:
            lse = self._lse(c)
            threshold = (lse - self.mu * LN2) / c.scale
            self._keep_ge(c, threshold, max(self._count_ge(threshold), 1))
        else:
            if not c.ids:
                raise RuntimeError("no candidate token left to sample")
            _sort_desc(c)
            probs = _softmax(c.logits)
            keep = 0
            while keep < len(probs) and not -_log(probs[keep]) / LN2 > self.mu:
                keep += 1
            c.ids, c.logits = c.ids[: max(keep, 1)], c.logits[: max(keep, 1)]
        return self._mirostat_draw(c)

    def _mirostat_draw(self, c: _Cands) -> tuple[int, list[tuple[int, float]]]:
        """Draw from what Mirostat kept and move mu by eta times the surprise's error.  The draw is
        ``std::discrete_distribution``'s, which takes no random number for a single candidate."""
        p = self.params
        if c.full:
            token, pairs = self._draw_full(c, uniform_double(self._rng), True)
            prob = next(q for tok, q in pairs if tok == token)
        else:
            if not c.ids:
                raise RuntimeError("no candidate token left to sample")
            probs = _softmax(c.logits)
            idx = _pick(probs, uniform_double(self._rng)) if len(probs) > 1 else 0
            token, prob, pairs = c.ids[idx], probs[idx], list(zip(c.ids, probs, strict=True))
        self.mu -= p.mirostat_eta * (-_log(prob) / LN2 - p.mirostat_tau)
        return token, pairs

    # -- probabilities for the response --------------------------------------------------------------------
    def _report(self, result: SampleResult, after: list[tuple[int, float]]) -> None:
        """llama-server's ``probs`` before sampling (raw logits, whole vocabulary) and after (final set)."""
        n = self.params.n_probs
        raw = _Cands()
        top_ids, top_logits = self._top(raw, n)
        lse = self._lse(raw)
        result.probs_before = [(tok, math.exp(v - lse)) for tok, v in zip(top_ids, top_logits, strict=True)]
        result.prob_before = math.exp(self._view[result.token] - lse)
        ranked = sorted((pair for pair in after if pair[1] > 0.0), key=lambda pair: pair[1], reverse=True)
        result.probs_after = ranked[:n]
        result.prob_after = next((q for tok, q in after if tok == result.token), 0.0)


def _growth(least: int) -> tuple[int, ...]:
    """Candidate counts to try before falling back to a bisected threshold: 256, then MATERIALIZE_LIMIT."""
    first = max(1, min(max(256, least), MATERIALIZE_LIMIT))
    return (first,) if first >= MATERIALIZE_LIMIT else (first, MATERIALIZE_LIMIT)


def _pick(probs: Sequence[float], u: float) -> int:
    """The first index whose cumulative probability reaches u (llama.cpp's dist and discrete_distribution)."""
    run, last = 0.0, len(probs) - 1
    for i, q in enumerate(probs):
        if q <= 0.0:
            continue
        run += q
        last = i
        if run >= u:
            return i
    return last


def _next_up(f: float) -> float:
    """The next float32 above f."""
    return _order_float(_float_order(f) + 1)


def _next_down(f: float) -> float:
    """The next float32 below f."""
    return _order_float(_float_order(f) - 1)


def _mirostat_k(s_hat: float, mu: float, n_vocab: int) -> int:
    """Mirostat v1's k from the Zipf exponent estimate.  llama.cpp's int() of a non-finite or huge value
    is INT_MIN on x86, which its max(k, 1) turns into 1: so here too."""
    try:
        eps = s_hat - 1.0
        k = ((eps * 2.0**mu) / (1.0 - n_vocab ** (-eps))) ** (1.0 / s_hat)
    except (OverflowError, ZeroDivisionError, ValueError):
        return 1
    if isinstance(k, complex) or not math.isfinite(k) or k >= 2**31:
        return 1
    return max(int(k), 1)
