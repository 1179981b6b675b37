"""The WGSL sources of the ``webgpu`` backend (``shaders/``), assembled per variant.

A kernel file (or an included part) may say ``//!INCLUDE file.wgsl`` (a shared part) or ``//!INCLUDE quant``
(the ``load_chunk`` of one GGML type, ``shaders/quants/<TYPE>.wgsl``); lines starting ``//!NOT_INPLACE`` belong
to the variant with a separate input ``X`` (the in-place variant reads ``OUT`` instead).  ``FT`` is the
arithmetic type of dequantized weights: ``f16`` on adapters with ``shader-f16`` when asked for, ``f32`` otherwise.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from emberllm.backends.kernel_api import constants

_ACT = constants("ACT")


@cache
def _source(name: str) -> str:
    return resources.files("emberllm.backends.webgpu").joinpath("shaders", name).read_text(encoding="utf-8")


def quant_types() -> list[str]:
    """GGML type names that have a WGSL ``load_chunk``."""
    folder = resources.files("emberllm.backends.webgpu").joinpath("shaders", "quants")
    return sorted(p.name.removesuffix(".wgsl") for p in folder.iterdir() if p.name.endswith(".wgsl"))


def shader(kernel: str, quant: str | None = None, f16: bool = False, inplace: bool = False,
           consts: dict[str, int] | None = None) -> str:
    """The WGSL of ``kernel`` (``shaders/<kernel>.wgsl``) for one weight type, precision and aliasing, with
    ``consts`` as u32 constants (e.g. the matmul's threads per row)."""
    text = _source(kernel + ".wgsl")

    def include(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "quant":
            if quant is None:
                raise ValueError(f"{kernel} needs a weight type")
            return _source(f"quants/{quant}.wgsl")
        return _source(name)

    while "//!INCLUDE " in text:  # included parts may include others (a K-quant its shared scale helper)
        text = re.sub(r"^//!INCLUDE (\S+)$", include, text, flags=re.M)
    if inplace:
        text = re.sub(r"^//!NOT_INPLACE .*$", "", text, flags=re.M).replace("X[", "OUT[")
    else:
        text = re.sub(r"^//!NOT_INPLACE ", "", text, flags=re.M)
    head = "enable f16;\nalias FT = f16;\n" if f16 else "alias FT = f32;\n"
    head += f"const ACT_SILU = {_ACT['SILU']}u;\n"
    head += "".join(f"const {name} = {value}u;\n" for name, value in (consts or {}).items())
    return head + text
