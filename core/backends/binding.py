"""The binding to the C kernels: cffi natively, ctypes on Pyodide, one small interface for both.

Both backends come from ``wasm_kernels/ember.h`` (see ``kernel_api``).  The rest of the engine uses only
what ``Kernels`` offers: ``lib`` (the C functions), typed buffers (``f32``, ``i32``, ``u16``), pointers into
bytes-like weights (``bytes_ptr``) and element offsets (``at``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from emberllm.backends.kernel_api import constants


class KernelError(RuntimeError):
    """The kernels could not be loaded or a kernel call failed."""


@dataclass
class Buffer:
    """A typed array owned by the kernels' allocator.

    ``ptr`` is what C functions take; ``view`` is a memoryview of the elements (format ``f``, ``i`` or ``H``);
    ``keep`` holds the owning object alive.
    """

    ptr: Any
    view: memoryview
    keep: Any
    n: int
    itemsize: int


class _CffiBackend:
    """Native: the cffi API-mode extension ``emberllm._kernels``."""

    name = "cffi"

    def __init__(self) -> None:
        from emberllm import _kernels  # type: ignore[attr-defined]

        self.ffi = _kernels.ffi
        self.lib = _kernels.lib

    def alloc(self, ctype: str, n: int, fmt: str, itemsize: int) -> Buffer:
        arr = self.ffi.new(f"{ctype}[]", max(n, 1))
        view = memoryview(self.ffi.buffer(arr)).cast(fmt)
        return Buffer(arr, view, arr, n, itemsize)

    def bytes_ptr(self, data: Any, offset: int = 0) -> Any:
        ptr = self.ffi.from_buffer(data)
        return self._Ref(self.ffi.cast("char *", ptr) + offset, ptr)

    class _Ref:
        """A pointer with the buffer handle that keeps its memory alive."""

        __slots__ = ("ptr", "owner")

        def __init__(self, ptr: Any, owner: Any) -> None:
            self.ptr = ptr
            self.owner = owner

    def at(self, buf: Buffer, index: int) -> Any:
        return buf.ptr + index

    def array(self, ctype: str, values: list[Any]) -> Any:
        return self.ffi.new(f"{ctype}[]", values)

    def null(self) -> Any:
        return self.ffi.NULL

    def string(self, p: Any) -> str:
        return self.ffi.string(p).decode()


class _CtypesBackend:
    """Pyodide (or any place without the cffi extension): ctypes over a shared library."""

    name = "ctypes"

    _CTYPES = {
        "int": "c_int",
        "int32_t": "c_int32",
        "int64_t": "c_int64",
        "uint16_t": "c_uint16",
        "float": "c_float",
        "double": "c_double",
        "void": None,
        "char *": "c_char_p",
    }

    def __init__(self, path: str) -> None:
        import ctypes

        from emberllm.backends.kernel_api import prototypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(path)
        for proto in prototypes():
            fn = getattr(self.lib, proto.name)
            fn.restype = self._ctype(proto.restype)
            fn.argtypes = [self._ctype(p.ctype) for p in proto.params]

    def _ctype(self, ctype: str) -> Any:
        c = self.ctypes
        if ctype in self._CTYPES:
            name = self._CTYPES[ctype]
            return getattr(c, name) if name else None
        if ctype.endswith("*"):
            return c.c_void_p
        raise KernelError(f"no ctypes mapping for C type {ctype!r}")

    def alloc(self, ctype: str, n: int, fmt: str, itemsize: int) -> Buffer:
        c = self.ctypes
        arr = (c.c_char * (max(n, 1) * itemsize))()
        view = memoryview(arr).cast("B").cast(fmt)
        return Buffer(c.addressof(arr), view, arr, n, itemsize)

    def bytes_ptr(self, data: Any, offset: int = 0) -> Any:
        c = self.ctypes
        view = memoryview(data)
        if not view.readonly:
            arr = (c.c_char * view.nbytes).from_buffer(view)
            return _IntRef(c.addressof(arr) + offset, arr)
        pinned = _PinnedBuffer(c, data)  # read-only (a read-only mmap, bytes): ask the buffer protocol directly
        return _IntRef(pinned.address + offset, pinned)

    def at(self, buf: Buffer, index: int) -> Any:
        return buf.ptr + index * buf.itemsize

    def array(self, ctype: str, values: list[Any]) -> Any:
        c = self.ctypes
        item = {"int": c.c_int, "int64_t": c.c_int64}.get(ctype, c.c_void_p)
        arr = (item * len(values))(*values)
        return _IntRef(c.addressof(arr), arr)

    def null(self) -> Any:
        return None

    def string(self, p: Any) -> str:
        return p.decode() if isinstance(p, bytes) else str(p)


_PY_BUFFER: dict[int, Any] = {}


def _py_buffer_type(c: Any) -> Any:
    """ctypes' ``Py_buffer`` structure, defined once (the C-API prototypes below are set once with it too: a second
    definition would make buffers pinned through the first one unreleasable)."""
    if id(c) not in _PY_BUFFER:
        class PyBuffer(c.Structure):
            _fields_ = [("buf", c.c_void_p), ("obj", c.py_object), ("len", c.c_ssize_t), ("itemsize", c.c_ssize_t),
                        ("readonly", c.c_int), ("ndim", c.c_int), ("format", c.c_char_p),
                        ("shape", c.c_void_p), ("strides", c.c_void_p), ("suboffsets", c.c_void_p),
                        ("internal", c.c_void_p)]

        c.pythonapi.PyObject_GetBuffer.argtypes = [c.py_object, c.POINTER(PyBuffer), c.c_int]
        c.pythonapi.PyBuffer_Release.argtypes = [c.POINTER(PyBuffer)]
        _PY_BUFFER[id(c)] = PyBuffer
    return _PY_BUFFER[id(c)]


class _PinnedBuffer:
    """The address of any read-only buffer through the C buffer protocol, released when this is collected."""

    def __init__(self, c: Any, obj: Any) -> None:
        self._c = c
        self._view = _py_buffer_type(c)()
        if c.pythonapi.PyObject_GetBuffer(obj, c.byref(self._view), 0) != 0:
            raise KernelError("cannot get the address of a read-only buffer")
        self.address = int(self._view.buf or 0)

    def __del__(self) -> None:
        self._c.pythonapi.PyBuffer_Release(self._c.byref(self._view))


class _IntRef:
    """An address plus the object that keeps its memory alive; ctypes passes it as the address."""

    __slots__ = ("ptr", "owner")

    def __init__(self, ptr: int, owner: Any) -> None:
        self.ptr = ptr
        self.owner = owner

    @property
    def _as_parameter_(self) -> int:
        return self.ptr


class Kernels:
    """The loaded kernels plus helpers to make buffers and pointers for them."""

    def __init__(self, backend: Any) -> None:
        self._b = backend
        self.lib = backend.lib
        self.backend = backend.name

    def f32(self, n: int) -> Buffer:
        """A zeroed float32 buffer of ``n`` elements."""
        return self._b.alloc("float", n, "f", 4)

    def i32(self, n: int) -> Buffer:
        """A zeroed int32 buffer of ``n`` elements."""
        return self._b.alloc("int32_t", n, "i", 4)

    def u16(self, n: int) -> Buffer:
        """A zeroed uint16 buffer (F16 storage) of ``n`` elements."""
        return self._b.alloc("uint16_t", n, "H", 2)

    def u8(self, n: int) -> Buffer:
        """A zeroed byte buffer of ``n`` bytes (rows of quantized blocks)."""
        return self._b.alloc("uint8_t", n, "B", 1)

    def bytes_ptr(self, data: Any, offset: int = 0) -> Any:
        """A ``void *`` to ``data[offset:]`` for any bytes-like object; keep the result alive while used."""
        return self._b.bytes_ptr(data, offset).ptr

    def bytes_ref(self, data: Any, offset: int = 0) -> Any:
        """Like ``bytes_ptr`` but returns an object with ``.ptr`` and the owner that keeps it valid."""
        return self._b.bytes_ptr(data, offset)

    def at(self, buf: Buffer, index: int) -> Any:
        """Pointer to element ``index`` of ``buf``."""
        return self._b.at(buf, index)

    def array(self, ctype: str, values: list[Any]) -> Any:
        """A C array (``int``, ``int64_t``, or pointers as ``void *``/``float *``) to pass where the API takes
        ``T *``; keep the returned object alive while C may read it."""
        return self._b.array(ctype, values)

    @property
    def null(self) -> Any:
        """The NULL pointer of this backend."""
        return self._b.null()

    def level_name(self, level: int) -> str:
        """Human name of a kernel level (``emb_kernel_level_name``)."""
        return self._b.string(self.lib.emb_kernel_level_name(level))

    @property
    def level_names(self) -> list[str]:
        """Every kernel level's name, by level number (``EMB_LEVEL_*`` in ember.h)."""
        return [self.level_name(level) for level in range(constants("LEVEL")["COUNT"])]

    def weight_type_supported(self, type_id: int) -> bool:
        """Whether a model's weights may have GGML type ``type_id`` (the kernels have its dot product)."""
        return bool(self.lib.emb_weight_type_supported(type_id))

    def best_level(self) -> int:
        """The fastest level this CPU supports, or the one forced by ``EMBERLLM_KERNELS``."""
        forced = os.environ.get("EMBERLLM_KERNELS", "").strip().lower()
        if forced:
            names = self.level_names
            if forced not in names:
                raise KernelError(f"EMBERLLM_KERNELS={forced!r}: expected one of {', '.join(names)}")
            level = names.index(forced)
            if not self.lib.emb_kernel_level_supported(level):
                raise KernelError(f"EMBERLLM_KERNELS={forced!r} is not supported on this CPU")
            return level
        return int(self.lib.emb_kernel_level_best())

    def supported_levels(self) -> list[int]:
        """Every kernel level this machine can run."""
        return [lv for lv in range(constants("LEVEL")["COUNT"]) if self.lib.emb_kernel_level_supported(lv)]


_LOADED: Kernels | None = None


def load_kernels() -> Kernels:
    """Load the kernels once: the cffi extension natively, the side module through ctypes on Pyodide.

    ``EMBERLLM_BINDING=ctypes`` with ``EMBERLLM_KERNELS_LIB=path/to/lib.so`` uses the ctypes binding natively.
    """
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    errors = []
    if sys.platform != "emscripten" and os.environ.get("EMBERLLM_BINDING", "cffi") != "ctypes":
        try:
            _LOADED = Kernels(_CffiBackend())
            return _LOADED
        except ImportError as exc:
            errors.append(f"cffi extension: {exc}")
    path = os.environ.get("EMBERLLM_KERNELS_LIB") or _default_shared_library()
    if path:
        try:
            _LOADED = Kernels(_CtypesBackend(path))
            return _LOADED
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    raise KernelError(
        "emberllm's C kernels are not built (" + "; ".join(errors or ["no library found"]) + "). "
        "Run `pip install -e .` in the project root."
    )


def _default_shared_library() -> str | None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package root, where the wheel puts it
    for name in ("libemberllm.so", "libemberllm_relaxed.so"):
        candidate = os.path.join(here, name)
        if os.path.exists(candidate):
            return candidate
    return None
