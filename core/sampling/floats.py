"""Float helpers of the sampler: softmax over a list, the cumulative pick, float32 ordering and bisection."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

INF = math.inf
LN2 = math.log(2.0)
FLT_MAX = 3.4028234663852886e38


def softmax(logits: Sequence[float]) -> list[float]:
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


def log0(p: float) -> float:
    """log(p), -inf for p = 0."""
    return math.log(p) if p > 0.0 else -INF


def pick(probs: Sequence[float], u: float) -> int:
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


def float_order(f: float) -> int:
    """An integer that orders float32 values as the floats are ordered (-0.0 and 0.0 equal)."""
    bits = struct.unpack("<i", struct.pack("<f", f))[0]
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def order_float(o: int) -> float:
    """Inverse of :func:`float_order`."""
    bits = o if o >= 0 else (-o) | 0x80000000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def bisect_floats(lo: float, hi: float, ok: Callable[[float], bool]) -> float:
    """The largest float32 t in [lo, hi) with ok(t), for ok true at lo and false at hi and monotonic."""
    a, b = float_order(lo), float_order(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if ok(order_float(mid)):
            a = mid
        else:
            b = mid
    return order_float(a)


def next_up(f: float) -> float:
    """The next float32 above f."""
    return order_float(float_order(f) + 1)


def next_down(f: float) -> float:
    """The next float32 below f."""
    return order_float(float_order(f) - 1)
