"""Sampler names: llama.cpp's default order, its aliases and letters, and parsing a sampler list."""

from __future__ import annotations

from collections.abc import Iterable

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

CANONICAL = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")
#: llama.cpp samplers with no counterpart here: accepted in a sampler list and skipped.
IGNORED = ("infill", "adaptive_p")
LETTERS = {
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
    for name in CANONICAL + IGNORED:
        out[name] = name
        if "_" in name:
            out[name.replace("_", "-")] = name
            out[name.replace("_", "")] = name
    out.update({"nucleus": "top_p", "temp": "temperature", "typ": "typ_p", "typical_p": "typ_p", "typical": "typ_p"})
    return out


ALIASES = _sampler_aliases()


def parse_samplers(value: str | Iterable[str]) -> list[str]:
    """Canonical sampler names from a list of names or a string of llama.cpp's letters (``"edkypmxt"``).

    Raises ``ValueError`` for an unknown name or letter; llama.cpp samplers this engine does not have
    (``infill``, ``adaptive_p``) are dropped.
    """
    names = []
    if isinstance(value, str):
        for ch in value:
            if ch not in LETTERS:
                raise ValueError(f"samplers: unknown sampler letter {ch!r} (known: {''.join(LETTERS)})")
            names.append(LETTERS[ch])
    elif isinstance(value, list | tuple):
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"samplers: expected sampler names, got {item!r}")
            canon = ALIASES.get(item.lower())
            if canon is None:
                raise ValueError(f"samplers: unknown sampler {item!r} (known: {', '.join(CANONICAL)})")
            names.append(canon)
    else:
        raise ValueError("samplers: expected a list of sampler names or a string of sampler letters")
    return [n for n in names if n not in IGNORED]
