"""The kernel API as written once in ``wasm_kernels/ember.h``.

Both bindings come from this: the cffi build uses the declarations verbatim as its ``cdef``; the ctypes
binding (Pyodide) turns each prototype into ``argtypes``/``restype``.  Nothing here is a second list of
signatures that could drift from the header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEADER_PATH = Path(__file__).resolve().parent.parent / "wasm_kernels" / "ember.h"
_BEGIN = "/* EMB_API_BEGIN */"
_END = "/* EMB_API_END */"


@dataclass(frozen=True)
class Param:
    """One parameter: its C type (``const`` removed, pointers written as ``T *``) and its name."""

    ctype: str
    name: str


@dataclass(frozen=True)
class Prototype:
    """One function of the API."""

    name: str
    restype: str
    params: tuple[Param, ...]


def api_text(header_text: str | None = None) -> str:
    """The declarations between the API markers, comments removed (a valid cffi ``cdef``)."""
    text = header_text if header_text is not None else HEADER_PATH.read_text()
    start = text.index(_BEGIN) + len(_BEGIN)
    body = text[start : text.index(_END)]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return "\n".join(line for line in body.splitlines() if line.strip())


def constants(prefix: str, header_text: str | None = None) -> dict[str, int]:
    """The public integer constants ``#define EMB_<prefix>_<NAME> <value>`` of the header, as ``{NAME: value}``
    (``constants("ROPE")`` -> ``{"NORMAL": 0, "NEOX": 2}``); the internal section is not read."""
    text = header_text if header_text is not None else HEADER_PATH.read_text()
    public = text.split("#ifdef EMB_INTERNAL", 1)[0]
    pattern = rf"^#define EMB_{re.escape(prefix)}_(\w+)\s+(-?\d+)\b"
    return {m.group(1): int(m.group(2)) for m in re.finditer(pattern, public, flags=re.M)}


def _split_decl(decl: str) -> tuple[str, str]:
    decl = " ".join(decl.replace("*", " * ").split())
    decl = decl.replace("const ", "")
    m = re.fullmatch(r"(.*?)\s*(\w+)", decl)
    if not m:
        raise ValueError(f"cannot parse declaration {decl!r}")
    ctype = " ".join(m.group(1).split()).replace(" *", "*").replace("*", " *").strip()
    return ctype, m.group(2)


def prototypes(header_text: str | None = None) -> list[Prototype]:
    """Every function prototype of the API, in header order."""
    out = []
    for stmt in api_text(header_text).split(";"):
        stmt = " ".join(stmt.split())
        if not stmt or stmt.startswith("typedef"):
            continue
        m = re.fullmatch(r"(.+?)\((.*)\)", stmt)
        if not m:
            raise ValueError(f"cannot parse prototype {stmt!r}")
        restype, name = _split_decl(m.group(1))
        args = m.group(2).strip()
        params = () if args in ("", "void") else tuple(Param(*_split_decl(a)) for a in args.split(","))
        out.append(Prototype(name, restype, params))
    return out
