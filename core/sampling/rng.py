"""Random numbers as llama.cpp draws them: ``std::mt19937`` and libstdc++'s uniform distributions."""

from __future__ import annotations

import random
import struct


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
