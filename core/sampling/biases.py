"""``logit_bias``: checking the dataclass field and parsing llama-server's request forms."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

INF = math.inf


def check_logit_bias(value: Any) -> dict[int, float]:
    """``{id: bias}`` with non-negative integer ids and float biases; raises ``ValueError`` otherwise."""
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


def parse_logit_bias(value: Any, n_vocab: int | None, tokenize: Callable[[str], list[int]] | None) -> dict[int, float]:
    """llama-server's ``logit_bias`` forms -> {id: summed bias}."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for el in value:
            if isinstance(el, Mapping) and set(el) == {"bias", "token"}:  # as generation_settings reports them
                pairs.append((el["token"], False if el["bias"] is None else el["bias"]))
                continue
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
