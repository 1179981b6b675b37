"""GGUF reader: metadata, tensor table and zero-copy tensor data, in pure Python.

The layout (GGUF v2/v3, little-endian)::

    magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
    kv_count x  (string key, u32 value_type, value)
    tensor_count x (string name, u32 n_dims, n_dims x u64 ne, u32 ggml_type, u64 offset)
    padding to general.alignment (default 32) | tensor data (offsets relative to its start)

Strings are a u64 byte length followed by UTF-8 bytes; an array is a u32 item type, a u64 length and the
items (arrays of arrays are allowed).

Every length is checked against the bytes that remain (and every count against a cap) before anything is
allocated or read, so a damaged file raises :class:`GGUFError` (never a crash, a hang or a huge allocation).
Works without numpy, threads or mmap (Pyodide): :meth:`GGUFFile.open` maps the file when it can and reads it
otherwise.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

from emberllm.gguf import types as ggml_types

try:  # Pyodide may lack mmap; the reader then reads files into memory
    import mmap as _mmap_module
except ImportError:  # pragma: no cover - exercised only where mmap is missing
    _mmap_module = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_ALIGNMENT", "GGUFError", "GGUFFile", "GGUFHeader", "GGUFTruncatedError", "GGUFValueType",
    "TensorInfo", "parse_header",
]

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4

#: Sanity caps beyond "fits in the file": no real model comes near them.
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
MAX_ARRAY_LEN = 1 << 24
MAX_KEY_LEN = 1 << 16
MAX_NAME_LEN = 1 << 16
MAX_ARRAY_DEPTH = 8
_INT64_MAX = (1 << 63) - 1



class GGUFValueType(IntEnum):
    """Type tags of metadata values."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_VT = GGUFValueType
_VALUE_TYPE_IDS = frozenset(int(t) for t in GGUFValueType)

#: Scalar value types: struct for one value and array typecode for many.
_SCALAR_STRUCTS: dict[int, struct.Struct] = {
    _VT.UINT8: struct.Struct("<B"),
    _VT.INT8: struct.Struct("<b"),
    _VT.UINT16: struct.Struct("<H"),
    _VT.INT16: struct.Struct("<h"),
    _VT.UINT32: struct.Struct("<I"),
    _VT.INT32: struct.Struct("<i"),
    _VT.FLOAT32: struct.Struct("<f"),
    _VT.BOOL: struct.Struct("<?"),
    _VT.UINT64: struct.Struct("<Q"),
    _VT.INT64: struct.Struct("<q"),
    _VT.FLOAT64: struct.Struct("<d"),
}
_ARRAY_CODES: dict[int, str] = {
    _VT.UINT8: "B", _VT.INT8: "b", _VT.UINT16: "H", _VT.INT16: "h", _VT.UINT32: "I", _VT.INT32: "i",
    _VT.FLOAT32: "f", _VT.BOOL: "B", _VT.UINT64: "Q", _VT.INT64: "q", _VT.FLOAT64: "d",
}
_MIN_ITEM_BYTES: dict[int, int] = {
    **{t: s.size for t, s in _SCALAR_STRUCTS.items()}, _VT.STRING: 8, _VT.ARRAY: 4 + 8,
}
#: ``array`` item sizes are platform-defined; fall back to ``struct`` where they differ from GGUF's.
_ARRAY_OK = sys.byteorder == "little" and all(
    array(code).itemsize == _SCALAR_STRUCTS[t].size for t, code in _ARRAY_CODES.items()
)

_CHUNK_BYTES = 1 << 20
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The data is not a valid GGUF file; the message names the problem and where it is."""


class GGUFTruncatedError(GGUFError):
    """The data ended before a field could be read.

    ``needed`` is the smallest buffer length that would let parsing get past this point (useful when only a
    prefix of the file was fetched: fetch at least that many bytes and parse again).
    """

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of the tensor table.

    ``shape`` is in GGUF order (``shape[0]`` = ne0 = row length); ``offset`` is absolute in the file.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int
    n_elements: int

    @property
    def type(self) -> ggml_types.GGMLType:
        """The GGML type of the elements."""
        return ggml_types.BY_ID[self.ggml_type]

    @property
    def type_name(self) -> str:
        """Name of the GGML type, e.g. ``"Q4_K"``."""
        return ggml_types.BY_ID[self.ggml_type].name


@dataclass(slots=True)
class GGUFHeader:
    """Everything before the tensor data: version, metadata, tensor table and the data section's start."""

    version: int
    metadata: dict[str, Any]
    #: key -> value type; for arrays ``(ARRAY, item type)``, otherwise ``(type,)``.
    value_types: dict[str, tuple[int, ...]]
    tensors: dict[str, TensorInfo]
    alignment: int
    #: End of the tensor table (before the padding).
    header_size: int
    #: Absolute offset of the tensor data section.
    data_offset: int
    #: Size of the whole file when known (``None`` if only a prefix was given without its size).
    file_size: int | None = field(default=None)


# --------------------------------------------------------------------------------------------------------
# Low-level reader
# --------------------------------------------------------------------------------------------------------


class _Reader:
    """A cursor over the buffer that checks every read against what remains."""

    __slots__ = ("data", "end", "limit", "pos")

    def __init__(self, data: Any, end: int, file_size: int | None) -> None:
        self.data = data
        self.end = end
        #: Where the file ends (beyond ``end`` when only a prefix was given).
        self.limit = max(end, file_size or 0)
        self.pos = 0

    # -- failures --------------------------------------------------------------------------------------
    def short(self, n: int, what: str, pos: int | None = None) -> GGUFTruncatedError:
        """The error for ``n`` bytes of ``what`` at ``pos`` that are not in the buffer."""
        pos = self.pos if pos is None else pos
        if pos + n <= self.limit:
            msg = (f"header truncated: {what} at offset {pos} needs {n} bytes but the buffer ends at offset "
                   f"{self.end} (the file has {self.limit} bytes)")
        else:
            msg = (f"truncated file: {what} at offset {pos} needs {n} bytes but the file ends at offset "
                   f"{self.end}")
        return GGUFTruncatedError(msg, pos + n)

    def too_long(self, count: int, item_bytes: int, what: str, pos: int,
                 start: int | None = None) -> GGUFError:
        """The error for a length or count ``what`` (read at ``pos``) whose data, from ``start``, cannot fit.

        It is a :class:`GGUFTruncatedError` if the rest of the file beyond the buffer could hold the data.
        """
        start = pos + 8 if start is None else start
        need = count * item_bytes
        if start + need <= self.limit:
            return GGUFTruncatedError(
                f"header truncated: {what} {count} at offset {pos} needs {need} bytes from offset {start} "
                f"but the buffer ends at offset {self.end} (the file has {self.limit} bytes)", start + need)
        left = max(self.limit - start, 0)
        return GGUFError(f"{what} {count} at offset {pos} needs at least {need} bytes but only {left} are "
                         f"left in the file (corrupt or truncated file)")

    # -- primitive reads -------------------------------------------------------------------------------
    def take(self, n: int, what: str) -> int:
        """Reserve ``n`` bytes; returns their start offset."""
        pos = self.pos
        if n > self.end - pos:
            raise self.short(n, what)
        self.pos = pos + n
        return pos

    def u32(self, what: str) -> int:
        """Read a u32."""
        return _U32.unpack_from(self.data, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        """Read a u64."""
        return _U64.unpack_from(self.data, self.take(8, what))[0]

    def count(self, what: str, cap: int, item_bytes: int = 0) -> int:
        """Read a u64 count; it must not exceed ``cap`` and its ``item_bytes``-byte items must fit."""
        pos = self.pos
        n = self.u64(what)
        if n > cap:
            raise GGUFError(f"{what} {n} at offset {pos} is absurd (more than {cap})")
        if n * item_bytes > self.end - self.pos:
            raise self.too_long(n, item_bytes, what, pos)
        return n

    def raw_string(self, what: str, cap: int | None = None) -> Any:
        """The bytes of a length-prefixed string (bytes or memoryview)."""
        pos = self.pos
        n = self.u64(f"{what} length")
        if cap is not None and n > cap:
            raise GGUFError(f"{what} string length {n} at offset {pos} is absurd (more than {cap})")
        if n > self.end - self.pos:
            raise self.too_long(n, 1, f"{what} string length", pos)
        start = self.pos
        self.pos = start + n
        return self.data[start:start + n]

    def text(self, what: str, cap: int) -> str:
        """A string that must be valid UTF-8 (keys, tensor names)."""
        pos = self.pos
        raw = self.raw_string(what, cap)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{what} at offset {pos} is not valid UTF-8 ({exc.reason})") from None

    # -- metadata values ---------------------------------------------------------------------------------
    def value(self, vtype: int, what: str, type_pos: int, depth: int = 0) -> Any:
        """Read one value of type ``vtype`` (whose tag was at ``type_pos``)."""
        st = _SCALAR_STRUCTS.get(vtype)
        if st is not None:
            return st.unpack_from(self.data, self.take(st.size, what))[0]
        if vtype == _VT.STRING:
            return str(self.raw_string(what), "utf-8", "surrogateescape")
        if vtype == _VT.ARRAY:
            return self.array(what, depth)
        raise GGUFError(f"{what}: unknown value type {vtype} at offset {type_pos}")

    def array(self, what: str, depth: int) -> list[Any]:
        """Read an array (item type, length, items) as a list."""
        type_pos = self.pos
        sub = self.u32(f"{what} array item type")
        if sub not in _VALUE_TYPE_IDS:
            raise GGUFError(f"{what}: unknown array item type {sub} at offset {type_pos}")
        n = self.count(f"{what} array length", MAX_ARRAY_LEN, _MIN_ITEM_BYTES[sub])
        if sub in _SCALAR_STRUCTS:
            return self.scalar_array(sub, n, what)
        if sub == _VT.STRING:
            return self.string_array(n, what)
        if depth + 1 >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep at offset {type_pos}")
        return [self.array(f"{what}[{i}]", depth + 1) for i in range(n)]

    def scalar_array(self, sub: int, n: int, what: str) -> list[Any]:
        """``n`` numbers or bools (the count was already checked against the buffer)."""
        size = _SCALAR_STRUCTS[sub].size
        start = self.take(n * size, what)
        if _ARRAY_OK:
            items = array(_ARRAY_CODES[sub])
            items.frombytes(self.data[start:start + n * size])
            values = items.tolist()
        else:  # pragma: no cover - big-endian or unusual hosts
            values = list(struct.unpack_from(f"<{n}{_SCALAR_STRUCTS[sub].format[-1]}", self.data, start))
        if sub == _VT.BOOL:
            return [v != 0 for v in values]
        return values

    def string_array(self, n: int, what: str) -> list[str]:
        """``n`` strings, decoded as UTF-8 with ``surrogateescape`` (the hot loop of vocabulary parsing)."""
        if isinstance(self.data, memoryview):
            return self.string_array_chunked(n, what)
        data, end, pos = self.data, self.end, self.pos
        unpack = _U64.unpack_from
        out: list[str] = []
        append = out.append
        i = 0
        try:
            for i in range(n):  # noqa: B007 - i names the failing item below
                length = unpack(data, pos)[0]
                stop = pos + 8 + length
                if stop > end:
                    self.pos = pos + 8
                    raise self.too_long(length, 1, f"{what}[{i}] string length", pos)
                append(str(data[pos + 8:stop], "utf-8", "surrogateescape"))
                pos = stop
        except struct.error:
            self.pos = pos
            raise self.short(8, f"{what}[{i}] length") from None
        self.pos = pos
        return out

    def string_array_chunked(self, n: int, what: str) -> list[str]:
        """:meth:`string_array` over a memoryview: copies windows into ``bytes``, which slice faster."""
        data, end = self.data, self.end
        unpack = _U64.unpack_from
        base, p, chunk, clen = self.pos, 0, b"", 0
        out: list[str] = []
        append = out.append
        for i in range(n):
            if p + 8 > clen:
                base, p = base + p, 0
                chunk = bytes(data[base:min(end, base + _CHUNK_BYTES)])
                clen = len(chunk)
                if clen < 8:
                    self.pos = base
                    raise self.short(8, f"{what}[{i}] length")
            length = unpack(chunk, p)[0]
            stop = p + 8 + length
            if stop > clen:
                base, p = base + p, 0
                if length > end - base - 8:
                    self.pos = base + 8
                    raise self.too_long(length, 1, f"{what}[{i}] string length", base)
                chunk = bytes(data[base:min(end, base + max(_CHUNK_BYTES, 8 + length))])
                clen = len(chunk)
                stop = 8 + length
            append(str(chunk[p + 8:stop], "utf-8", "surrogateescape"))
            p = stop
        self.pos = base + p
        return out


# --------------------------------------------------------------------------------------------------------
# Header parsing
# --------------------------------------------------------------------------------------------------------


def _as_parse_source(buf: Any) -> tuple[Any, int]:
    """An object to parse from (slicing it is cheap and decodable) and its length in bytes."""
    if isinstance(buf, bytes) or (_mmap_module is not None and isinstance(buf, _mmap_module.mmap)):
        return buf, len(buf)
    view = memoryview(buf)
    if not view.c_contiguous:
        raise TypeError("a GGUF buffer must be C-contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view, view.nbytes


def _read_preamble(r: _Reader) -> tuple[int, int, int]:
    """Magic, version, tensor count and kv count."""
    if r.end == 0 and r.limit == 0:
        raise GGUFError("empty file (0 bytes): not a GGUF file")
    magic = bytes(r.data[0:min(4, r.end)])
    if magic != MAGIC[:len(magic)]:
        raise GGUFError(f"bad magic {magic!r} at offset 0: not a GGUF file (expected {MAGIC!r})")
    r.take(4, "magic")
    version = r.u32("version")
    _check_version(version)
    # Counts are only capped here: each kv pair and tensor record consumes bytes, so a count too large
    # for the data ends in a precise truncation error at the record that runs out.
    n_tensors = r.count("tensor count", MAX_TENSORS)
    n_kv = r.count("metadata kv count", MAX_KV)
    return version, n_tensors, n_kv


def _check_version(version: int) -> None:
    if version in SUPPORTED_VERSIONS:
        return
    swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
    if swapped in (1, 2, 3):
        raise GGUFError(f"big-endian GGUF file (version {swapped}) is not supported")
    if version == 1:
        raise GGUFError("GGUF version 1 is not supported (only versions 2 and 3): convert the model again "
                        "with a current llama.cpp")
    raise GGUFError(f"unsupported GGUF version {version} (supported: 2, 3)")


def _read_metadata(r: _Reader, n_kv: int) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The kv section: values and their types, in file order."""
    metadata: dict[str, Any] = {}
    types: dict[str, tuple[int, ...]] = {}
    for i in range(n_kv):
        key_pos = r.pos
        key = r.text(f"metadata key #{i}", MAX_KEY_LEN)
        if key in metadata:
            raise GGUFError(f"duplicate metadata key {key!r} at offset {key_pos}")
        what = f"metadata {key!r}"
        type_pos = r.pos
        vtype = r.u32(f"{what} value type")
        if vtype == _VT.ARRAY and r.end - r.pos >= 4:
            types[key] = (vtype, _U32.unpack_from(r.data, r.pos)[0])
        else:
            types[key] = (vtype,)
        metadata[key] = r.value(vtype, what, type_pos)
    return metadata, types


def _alignment(metadata: dict[str, Any], types: dict[str, tuple[int, ...]]) -> int:
    """``general.alignment``: a nonzero power of two (default 32)."""
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value = metadata["general.alignment"]
    if types["general.alignment"][0] not in _INT_TYPES:
        name = GGUFValueType(types["general.alignment"][0]).name
        raise GGUFError(f"general.alignment must be an integer, not {name}")
    if value <= 0 or value & (value - 1):
        raise GGUFError(f"general.alignment = {value} is invalid: it must be a nonzero power of 2")
    return value


_INT_TYPES = frozenset({_VT.UINT8, _VT.INT8, _VT.UINT16, _VT.INT16, _VT.UINT32, _VT.INT32, _VT.UINT64,
                        _VT.INT64})


class _Record(NamedTuple):
    """A validated tensor-info record; ``rel`` is relative to the data section."""

    name: str
    shape: tuple[int, ...]
    type_id: int
    rel: int
    nbytes: int
    n_elements: int


def _read_tensor_info(r: _Reader, index: int, alignment: int) -> _Record:
    """One tensor-info record, validated: dimensions, type, size and offset alignment."""
    name = r.text(f"tensor #{index} name", MAX_NAME_LEN)
    what = f"tensor {name!r}"
    dims_pos = r.pos
    n_dims = r.u32(f"{what} n_dims")
    if n_dims > MAX_DIMS:
        raise GGUFError(f"{what}: n_dims {n_dims} at offset {dims_pos} is invalid (at most {MAX_DIMS})")
    start = r.take(8 * n_dims, f"{what} dimensions")
    shape = struct.unpack_from(f"<{n_dims}Q", r.data, start)
    type_pos = r.pos
    type_id = r.u32(f"{what} type")
    rel = r.u64(f"{what} offset")
    n_elements = _check_shape(what, shape)
    gtype = ggml_types.BY_ID.get(type_id)
    if gtype is None:
        raise GGUFError(f"{what}: unknown ggml type id {type_id} at offset {type_pos}")
    ne0 = shape[0] if shape else 1
    if ne0 % gtype.block_size:
        raise GGUFError(f"{what}: row length {ne0} is not a multiple of the {gtype.name} block size "
                        f"{gtype.block_size}")
    nbytes = ne0 // gtype.block_size * gtype.block_bytes * (n_elements // ne0)
    if rel % alignment:
        raise GGUFError(f"{what}: data offset {rel} is not a multiple of the alignment {alignment}")
    return _Record(name, shape, type_id, rel, nbytes, n_elements)


def _check_shape(what: str, shape: tuple[int, ...]) -> int:
    """Number of elements; every dimension must be in 1..INT64_MAX and so must their product."""
    n = 1
    for i, ne in enumerate(shape):
        if ne == 0:
            raise GGUFError(f"{what}: dimension {i} is 0 (shape {list(shape)})")
        if ne > _INT64_MAX:
            raise GGUFError(f"{what}: dimension {i} = {ne} is out of range (negative as int64)")
        n *= ne
        if n > _INT64_MAX:
            raise GGUFError(f"{what}: shape {list(shape)} has too many elements")
    return n


def _read_tensors(r: _Reader, n_tensors: int, alignment: int) -> list[_Record]:
    """The tensor table, in file order, without duplicate names."""
    records: list[_Record] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name_pos = r.pos
        rec = _read_tensor_info(r, i, alignment)
        if rec.name in seen:
            raise GGUFError(f"duplicate tensor name {rec.name!r} at offset {name_pos}")
        seen.add(rec.name)
        records.append(rec)
    return records


def _check_layout(records: list[_Record], data_offset: int, file_size: int | None) -> None:
    """Tensor data must not overlap and, when the file size is known, must lie within the file."""
    ordered = sorted(records, key=lambda rec: rec.rel)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.rel + a.nbytes > b.rel:
            raise GGUFError(f"tensors {a.name!r} and {b.name!r} overlap: [{a.rel}, {a.rel + a.nbytes}) and "
                            f"[{b.rel}, {b.rel + b.nbytes}) in the data section")
    if file_size is None:
        return
    for rec in records:
        start = data_offset + rec.rel
        if start + rec.nbytes > file_size:
            raise GGUFError(f"tensor {rec.name!r}: data [{start}, {start + rec.nbytes}) lies outside the "
                            f"file ({file_size} bytes): truncated or corrupt file")


def parse_header(buf: Any, file_size: int | None = None) -> GGUFHeader:
    """Parse the header of a GGUF file from ``buf`` (any bytes-like object: bytes, memoryview, mmap...).

    ``buf`` may be the whole file or only its beginning.  ``file_size`` is the size of the whole file: when
    given, tensor data is checked to lie within it, and a header that runs past the end of ``buf`` but not
    past ``file_size`` raises :class:`GGUFTruncatedError` whose ``needed`` says how much to fetch.  Without
    it the tensor extents are not checked.  Raises :class:`GGUFError` for anything malformed.
    """
    data, end = _as_parse_source(buf)
    if file_size is not None and file_size < end:
        raise ValueError(f"file_size {file_size} is smaller than the buffer ({end} bytes)")
    r = _Reader(data, end, file_size)
    version, n_tensors, n_kv = _read_preamble(r)
    metadata, types = _read_metadata(r, n_kv)
    alignment = _alignment(metadata, types)
    records = _read_tensors(r, n_tensors, alignment)
    header_size = r.pos
    data_offset = -(-header_size // alignment) * alignment
    _check_layout(records, data_offset, file_size)
    tensors = {
        t.name: TensorInfo(t.name, t.shape, t.type_id, data_offset + t.rel, t.nbytes, t.n_elements)
        for t in records
    }
    return GGUFHeader(version, metadata, types, tensors, alignment, header_size, data_offset, file_size)


# --------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------


class GGUFFile:
    """A parsed GGUF file over a buffer; tensor data is handed out as zero-copy memoryview slices."""

    def __init__(self, header: GGUFHeader, buffer: memoryview, owner: Any = None, path: Path | None = None):
        """Use :meth:`open` or :meth:`from_buffer`."""
        self.header = header
        self.version = header.version
        self.metadata = header.metadata
        self.value_types = header.value_types
        self.tensors = header.tensors
        self.alignment = header.alignment
        self.data_offset = header.data_offset
        self.buffer = buffer
        self.file_size = buffer.nbytes
        self.path = path
        self._owner = owner
        self._closed = False

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], use_mmap: bool = True) -> GGUFFile:
        """Open a file read-only: memory-mapped when possible, else read into memory (e.g. Pyodide)."""
        path = Path(path)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise GGUFError(f"{path}: empty file (0 bytes): not a GGUF file")
            mapped = _try_mmap(f) if use_mmap else None
            data = mapped if mapped is not None else f.read()
        try:
            header = parse_header(data, len(data))
        except GGUFError as exc:
            if mapped is not None:
                mapped.close()
            exc.args = (f"{path}: {exc.args[0]}", *exc.args[1:])
            raise
        return cls(header, memoryview(data), owner=mapped, path=path)

    @classmethod
    def from_buffer(cls, buf: Any) -> GGUFFile:
        """Parse a whole file held in any bytes-like object (bytes, bytearray, memoryview, mmap); no copy."""
        data, size = _as_parse_source(buf)
        header = parse_header(data, size)
        view = data if isinstance(data, memoryview) else memoryview(data)
        return cls(header, view)

    # -- access ------------------------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        """``general.architecture`` (``None`` when missing)."""
        return self.metadata.get("general.architecture")

    def get(self, key: str, default: Any = None) -> Any:
        """A metadata value, or ``default``."""
        return self.metadata.get(key, default)

    def tensor_data(self, name: str) -> memoryview:
        """The raw bytes of tensor ``name`` (a read-only slice of the buffer; ``KeyError`` if missing)."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"no tensor named {name!r}")
        if self._closed:
            raise ValueError("the GGUF file is closed")
        return self.buffer[info.offset:info.offset + info.nbytes]

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def __repr__(self) -> str:
        where = str(self.path) if self.path else f"<buffer of {self.file_size} bytes>"
        return (f"GGUFFile({where}, version={self.version}, architecture={self.architecture!r}, "
                f"{len(self.metadata)} keys, {len(self.tensors)} tensors)")

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Release the buffer and unmap the file.

        If slices of the data are still in use elsewhere (exported buffers), the mapping stays alive until
        they are gone instead of raising.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.buffer.release()
        except BufferError:
            pass
        if self._owner is not None:
            try:
                self._owner.close()
            except BufferError:
                pass
            self._owner = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _try_mmap(f: Any) -> Any:
    """A read-only mapping of the open file, or ``None`` where mmap is unavailable."""
    if _mmap_module is None:
        return None
    try:
        return _mmap_module.mmap(f.fileno(), 0, access=_mmap_module.ACCESS_READ)
    except (OSError, ValueError, AttributeError):
        return None
