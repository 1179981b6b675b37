"""A request's sampling settings (:class:`SamplingParams`): llama-server's names, defaults and checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .biases import check_logit_bias, parse_logit_bias
from .names import DEFAULT_SAMPLERS, parse_samplers

INF = math.inf


@dataclass
class SamplingParams:
    """A request's sampling settings, with llama.cpp server's names and defaults.

    Construction normalizes like llama-server: soft limits are clamped (``top_k`` >= 0, ``top_p``,
    ``min_p``, XTC settings to [0, 1], ``temperature`` >= 0, ``mirostat`` to 0..2), ``dry_base`` < 1 falls
    back to 1.75, ``seed`` -1 or 0xFFFFFFFF means random (None); anything else invalid raises
    ``ValueError`` whose message starts with the field name.  ``repeat_last_n`` and ``dry_penalty_last_n``
    of -1 mean the whole history passed to :meth:`Sampler.sample`.  ``grammar``: GBNF text the output must
    match (empty: none); a malformed one raises :class:`~emberllm.grammar.GrammarError` (a ``ValueError``).
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
    grammar: str = ""

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
        self.logit_bias = check_logit_bias(self.logit_bias)
        self.samplers = parse_samplers(self.samplers)
        self.grammar = _check_grammar(self.grammar)
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
            values["logit_bias"] = parse_logit_bias(data["logit_bias"], n_vocab, tokenize)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as llama-server reports them (``generation_settings``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["seed"] = 0xFFFFFFFF if self.seed is None else self.seed
        # llama-server's shape: {"bias", "token"}, -inf as null
        out["logit_bias"] = [{"bias": None if bias == -INF else bias, "token": tok}
                             for tok, bias in self.logit_bias.items()]
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


def _check_grammar(value: Any) -> str:
    """GBNF text, parsed once to report a malformed grammar here (empty: no grammar)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"grammar: expected a string, got {value!r}")
    if value:
        from emberllm.grammar import parse

        parse(value)
    return value


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
