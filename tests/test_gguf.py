"""The GGUF reader: the real Gemma file against PyPI ``gguf``, synthetic files, every error, and a fuzz."""

from __future__ import annotations

import math
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emberllm.gguf import reader as G
from emberllm.gguf.reader import GGUFError, GGUFFile, GGUFTruncatedError, parse_header
from emberllm.gguf.reader import GGUFValueType as V

from .gguf_builder import GGUFBuilder, enc_kv, enc_str, enc_tensor_info

gguf_py = pytest.importorskip("gguf")

F32, Q4_K, Q8_0 = 0, 12, 8


# --------------------------------------------------------------------------------------------------------
# The real file
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(gemma_path):
    with GGUFFile.open(gemma_path) as f:
        yield f


@pytest.fixture(scope="module")
def gguf_py_reader(gemma_path):
    """PyPI gguf's reader on the real file (slow: ~10 s), with its metadata as plain values."""
    reader = gguf_py.GGUFReader(gemma_path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return reader, fields, {k: f.contents() for k, f in fields.items()}


@pytest.mark.slow
def test_real_metadata_matches_gguf_py(real, gguf_py_reader):
    reader, fields, values = gguf_py_reader
    assert list(real.metadata) == list(values)
    for key, expected in values.items():
        assert real.metadata[key] == expected, key
        assert type(real.metadata[key]) is type(expected), key
        assert real.value_types[key] == tuple(int(t) for t in fields[key].types[:2]), key
    assert len(real.metadata["tokenizer.ggml.tokens"]) == 262144
    assert real.version == int(reader.fields["GGUF.version"].parts[-1][0]) == 3


@pytest.mark.slow
def test_real_tensor_table_and_bytes_match_gguf_py(real, gguf_py_reader):
    reader = gguf_py_reader[0]
    assert [t.name for t in reader.tensors] == list(real.tensors)
    assert real.alignment == reader.alignment and real.data_offset == reader.data_offset
    for t in reader.tensors:
        info = real.tensors[t.name]
        assert info.shape == tuple(int(d) for d in t.shape), t.name
        assert info.ggml_type == int(t.tensor_type), t.name
        assert info.offset == t.data_offset and info.nbytes == t.n_bytes, t.name
        assert info.n_elements == t.n_elements, t.name
        assert real.tensor_data(t.name) == memoryview(np.ascontiguousarray(t.data)).cast("B"), t.name


def test_real_header_facts(real, gemma_path):
    assert real.version == 3 and real.architecture == "gemma3" and real.get("general.name") == "Gemma 3 270m"
    assert len(real.metadata) == 33 and len(real.tensors) == 236
    assert real.file_size == gemma_path.stat().st_size
    assert real.value_types["tokenizer.ggml.tokens"] == (V.ARRAY, V.STRING)
    assert real.get("missing.key", 7) == 7
    emb = real.tensors["token_embd.weight"]
    assert emb.shape == (640, 262144) and emb.type_name == "Q8_0" and emb.n_elements == 640 * 262144
    assert emb.nbytes == 262144 * 640 // 32 * 34 and emb.offset % real.alignment == 0
    assert len(real.tensor_data("token_embd.weight")) == emb.nbytes
    with pytest.raises(KeyError):
        real.tensor_data("nope")


def test_real_header_parse_time(gemma_path):
    """The whole header (262144-entry vocabulary) parses in well under a second natively."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        GGUFFile.open(gemma_path).close()
        best = min(best, time.perf_counter() - t0)
    print(f"Gemma header parse: {best * 1000:.0f} ms")
    assert best < 1.5  # ~0.1-0.2 s on an idle machine; generous for loaded CI boxes


def test_open_without_mmap_and_from_buffer_agree(real, gemma_path):
    with GGUFFile.open(gemma_path, use_mmap=False) as plain:
        assert plain.metadata == real.metadata and plain.tensors == real.tensors
        assert plain.tensor_data("output_norm.weight") == real.tensor_data("output_norm.weight")
    view = GGUFFile.from_buffer(real.buffer)
    assert view.tensors == real.tensors and view.metadata == real.metadata


def test_parse_header_prefix_and_incremental_fetch(real, gemma_path):
    size = real.file_size
    with open(gemma_path, "rb") as f:
        head = f.read(real.data_offset)
    header = parse_header(head, file_size=size)
    assert header.tensors == real.tensors and header.metadata == real.metadata
    # The browser's way: fetch a prefix, parse, fetch what the error asks for, until it parses.
    have, rounds = 4096, 0
    while True:
        rounds += 1
        try:
            header = parse_header(head[:have], file_size=size)
            break
        except GGUFTruncatedError as exc:
            assert exc.needed > have and "header truncated" in str(exc)
            have = max(exc.needed, have * 2)
    assert header.data_offset == real.data_offset and rounds < 20
    # Without the file size, a prefix is simply a truncated file.
    with pytest.raises(GGUFError, match="corrupt or truncated|truncated file"):
        parse_header(head[:100_000])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("tokens_len", "absurd"),
        ("tokens_len_fit", "left in the file"),
        ("tokens_len_fit_prefix", "header truncated: .* array length 16777216"),
        ("scores_type", "unknown array item type 77"),
        ("token_str_len", "string length"),
        ("tensor_count", "tensor count 1099511627776 at offset 8 is absurd"),
        ("kv_count", "metadata kv count 2097152 at offset 16 is absurd"),
    ],
)
def test_real_header_targeted_corruptions(real, gemma_path, mutate, message):
    with open(gemma_path, "rb") as f:
        head = bytearray(f.read(real.data_offset))
    tok = head.find(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 4  # -> array item type
    scores = head.find(b"tokenizer.ggml.scores") + len(b"tokenizer.ggml.scores") + 4
    if mutate == "tokens_len":
        struct.pack_into("<Q", head, tok + 4, 1 << 62)
    elif mutate.startswith("tokens_len_fit"):
        struct.pack_into("<Q", head, tok + 4, 1 << 24)
    elif mutate == "scores_type":
        struct.pack_into("<I", head, scores, 77)
    elif mutate == "token_str_len":
        struct.pack_into("<Q", head, tok + 12 + 8 + 5, (1 << 64) - 1)  # 2nd token's length
    elif mutate == "tensor_count":
        struct.pack_into("<Q", head, 8, 1 << 40)
    elif mutate == "kv_count":
        struct.pack_into("<Q", head, 16, 1 << 21)
    with pytest.raises(GGUFError, match=message):
        parse_header(bytes(head), file_size=None if mutate == "tokens_len_fit" else real.file_size)


# --------------------------------------------------------------------------------------------------------
# Synthetic files written by PyPI gguf's GGUFWriter
# --------------------------------------------------------------------------------------------------------


def write_with_gguf_py(path: Path, alignment: int | None = None) -> dict:
    w = gguf_py.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    values = {
        "t.u8": 255, "t.i8": -128, "t.u16": 65535, "t.i16": -32768, "t.u32": 2**32 - 1, "t.i32": -(2**31),
        "t.u64": 2**64 - 1, "t.i64": -(2**63), "t.f32": 1.5, "t.f64": math.pi, "t.bool": True,
        "t.str": "héllo ▁wörld", "t.arr_i32": [1, -2, 3], "t.arr_str": ["a", "", "ü"],
        "t.arr_f32": [0.25, -8.0], "t.arr_bool": [True, False, True], "t.nested": [[1, 2], [3]],
    }
    prefixes = {"u": "uint", "i": "int", "f": "float"}
    for kind in ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"):
        getattr(w, f"add_{prefixes[kind[0]]}{kind[1:]}")(f"t.{kind}", values[f"t.{kind}"])
    w.add_bool("t.bool", values["t.bool"])
    w.add_string("t.str", values["t.str"])
    for key in ("t.arr_i32", "t.arr_str", "t.arr_f32", "t.arr_bool", "t.nested"):
        w.add_array(key, values[key])
    w.add_tensor("f32.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("f16.bias", np.ones(5, dtype=np.float16))
    q4k = gguf_py.GGMLQuantizationType.Q4_K
    w.add_tensor("q4k.weight", np.full((2, 144), 7, dtype=np.uint8), raw_dtype=q4k)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return values


@pytest.mark.parametrize("alignment", [None, 64, 1, 4096])
def test_gguf_py_written_file_round_trips(tmp_path, alignment):
    path = tmp_path / "t.gguf"
    values = write_with_gguf_py(path, alignment)
    with GGUFFile.open(path) as f:
        md = {k: v for k, v in f.metadata.items() if k.startswith("t.")}
        assert md == values and isinstance(md["t.bool"], bool) and isinstance(md["t.arr_bool"][0], bool)
        assert f.value_types["t.nested"] == (V.ARRAY, V.ARRAY) and f.value_types["t.f64"] == (V.FLOAT64,)
        assert f.alignment == (alignment or 32) and f.data_offset % f.alignment == 0
        reader = gguf_py.GGUFReader(path)
        assert reader.data_offset == f.data_offset
        for t in reader.tensors:
            info = f.tensors[t.name]
            expected = (t.data_offset, t.n_bytes, tuple(map(int, t.shape)))
            assert (info.offset, info.nbytes, info.shape) == expected
            assert info.offset % f.alignment == 0
        assert f.tensors["f32.weight"].shape == (4, 3)
        assert f.tensors["q4k.weight"].shape == (256, 2) and f.tensors["q4k.weight"].nbytes == 288
        data = f.tensor_data("f32.weight").cast("f")
        assert list(data) == [float(i) for i in range(12)]
        data.release()
        assert bytes(f.tensor_data("q4k.weight")) == b"\x07" * 288


# --------------------------------------------------------------------------------------------------------
# Hand-built files
# --------------------------------------------------------------------------------------------------------

ALL_VALUES = [
    ("v.u8", V.UINT8, 200), ("v.i8", V.INT8, -5), ("v.u16", V.UINT16, 60000), ("v.i16", V.INT16, -300),
    ("v.u32", V.UINT32, 4_000_000_000), ("v.i32", V.INT32, -2_000_000_000), ("v.f32", V.FLOAT32, -0.5),
    ("v.bool", V.BOOL, False), ("v.str", V.STRING, "ascii and 中文"), ("v.u64", V.UINT64, 2**63 + 5),
    ("v.i64", V.INT64, -(2**40)), ("v.f64", V.FLOAT64, 1e300),
    ("v.empty_str", V.STRING, ""), ("v.empty_arr", V.ARRAY, (V.UINT8, [])),
    ("v.arr_u8", V.ARRAY, (V.UINT8, [0, 1, 255])), ("v.arr_i8", V.ARRAY, (V.INT8, [-1, 1])),
    ("v.arr_u16", V.ARRAY, (V.UINT16, [9])), ("v.arr_i16", V.ARRAY, (V.INT16, [-9])),
    ("v.arr_u32", V.ARRAY, (V.UINT32, [7, 8])), ("v.arr_i32", V.ARRAY, (V.INT32, [-7])),
    ("v.arr_f32", V.ARRAY, (V.FLOAT32, [1.0, 2.5])), ("v.arr_bool", V.ARRAY, (V.BOOL, [True, False])),
    ("v.arr_u64", V.ARRAY, (V.UINT64, [2**64 - 1])), ("v.arr_i64", V.ARRAY, (V.INT64, [-(2**63)])),
    ("v.arr_f64", V.ARRAY, (V.FLOAT64, [0.1])), ("v.arr_str", V.ARRAY, (V.STRING, ["x", "yz"])),
    ("v.nested", V.ARRAY, (V.ARRAY, [(V.INT32, [1, 2]), (V.STRING, ["a"]), (V.ARRAY, [(V.UINT8, [3])])])),
]
EXPECTED = {
    "v.u8": 200, "v.i8": -5, "v.u16": 60000, "v.i16": -300, "v.u32": 4_000_000_000, "v.i32": -2_000_000_000,
    "v.f32": -0.5, "v.bool": False, "v.str": "ascii and 中文", "v.u64": 2**63 + 5, "v.i64": -(2**40),
    "v.f64": 1e300, "v.empty_str": "", "v.empty_arr": [], "v.arr_u8": [0, 1, 255], "v.arr_i8": [-1, 1],
    "v.arr_u16": [9], "v.arr_i16": [-9], "v.arr_u32": [7, 8], "v.arr_i32": [-7], "v.arr_f32": [1.0, 2.5],
    "v.arr_bool": [True, False], "v.arr_u64": [2**64 - 1], "v.arr_i64": [-(2**63)], "v.arr_f64": [0.1],
    "v.arr_str": ["x", "yz"], "v.nested": [[1, 2], ["a"], [[3]]],
}


def full_builder(version: int = 3, alignment: int = 32) -> GGUFBuilder:
    b = GGUFBuilder(version=version, alignment=alignment)
    b.kv("general.architecture", V.STRING, "test")
    if alignment != 32:
        b.kv("general.alignment", V.UINT32, alignment)
    for key, vtype, value in ALL_VALUES:
        b.kv(key, vtype, value)
    b.tensor("a.weight", (4, 3), F32, struct.pack("<12f", *range(12)))
    b.tensor("b.q4k", (256, 2), Q4_K, bytes(range(144)) * 2)
    b.tensor("scalar", (), F32, struct.pack("<f", 2.0))
    return b


def small_file() -> bytes:
    return full_builder().build()


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))])
def test_every_value_type_and_buffer_kind(version, wrap):
    raw = full_builder(version).build()
    f = GGUFFile.from_buffer(wrap(raw))
    assert f.version == version and f.architecture == "test"
    assert {k: v for k, v in f.metadata.items() if k.startswith("v.")} == EXPECTED
    assert list(f.metadata)[1:] == [k for k, _, _ in ALL_VALUES]
    for key, vtype, value in ALL_VALUES:
        sub = value[0] if vtype == V.ARRAY else None
        assert f.value_types[key] == ((vtype, sub) if sub is not None else (vtype,))
    assert list(f.tensors) == ["a.weight", "b.q4k", "scalar"]
    a, q, s = f.tensors.values()
    assert (a.shape, a.nbytes, a.n_elements, a.offset) == ((4, 3), 48, 12, f.data_offset)
    assert (q.shape, q.nbytes, q.type_name, q.offset) == ((256, 2), 288, "Q4_K", f.data_offset + 64)
    assert (s.shape, s.nbytes, s.n_elements) == ((), 4, 1)
    assert bytes(f.tensor_data("b.q4k")) == bytes(range(144)) * 2
    assert struct.unpack("<f", f.tensor_data("scalar"))[0] == 2.0
    f.close()


def test_v2_and_v3_parse_the_same():
    v2, v3 = GGUFFile.from_buffer(full_builder(2).build()), GGUFFile.from_buffer(full_builder(3).build())
    assert v2.metadata == v3.metadata and v2.tensors == v3.tensors and (v2.version, v3.version) == (2, 3)


@pytest.mark.parametrize("alignment", [1, 8, 64, 256])
def test_custom_alignment(alignment):
    f = GGUFFile.from_buffer(full_builder(alignment=alignment).build())
    assert f.alignment == alignment and f.data_offset % alignment == 0
    assert all(t.offset % alignment == 0 for t in f.tensors.values())
    assert bytes(f.tensor_data("b.q4k")) == bytes(range(144)) * 2


def test_from_buffer_is_zero_copy_and_close_is_safe():
    raw = bytearray(small_file())
    f = GGUFFile.from_buffer(raw)
    view = f.tensor_data("a.weight")
    raw[f.tensors["a.weight"].offset] ^= 0xFF
    assert view[0] == raw[f.tensors["a.weight"].offset]
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError):
        f.tensor_data("a.weight")


def test_open_maps_and_closes(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(small_file())
    with GGUFFile.open(path) as f:
        held = f.tensor_data("a.weight")  # an export still alive at close must not raise
        assert f.path == path and "m.gguf" in repr(f)
    assert f.closed
    held.release()


def test_open_without_the_mmap_module(tmp_path, monkeypatch):
    """As on Pyodide: no mmap, the file is read into memory."""
    path = tmp_path / "m.gguf"
    path.write_bytes(small_file())
    monkeypatch.setattr(G, "_mmap_module", None)
    with GGUFFile.open(path) as f:
        assert f._owner is None and bytes(f.tensor_data("b.q4k")) == bytes(range(144)) * 2
        assert {k: v for k, v in f.metadata.items() if k.startswith("v.")} == EXPECTED


def test_invalid_utf8_value_round_trips_but_key_is_rejected():
    raw = GGUFBuilder().kv("k", V.STRING, b"\xff\xfeok").build()
    value = GGUFFile.from_buffer(raw).metadata["k"]
    assert value.encode("utf-8", "surrogateescape") == b"\xff\xfeok"
    with pytest.raises(GGUFError, match="metadata key #0 at offset 24 is not valid UTF-8"):
        GGUFFile.from_buffer(GGUFBuilder().kv(b"\xffkey", V.UINT8, 1).build())
    with pytest.raises(GGUFError, match="tensor #0 name .* not valid UTF-8"):
        GGUFFile.from_buffer(GGUFBuilder().tensor(b"\xc3", (1,), F32, bytes(4)).build())


def test_buffer_kinds_with_other_formats():
    raw = small_file()
    padded = raw + bytes(-len(raw) % 4)
    as_u32 = memoryview(bytearray(padded)).cast("I")
    f = GGUFFile.from_buffer(as_u32)
    assert f.buffer.format == "B" and f.file_size == len(padded) and "v.nested" in f.metadata
    with pytest.raises(TypeError, match="contiguous"):
        GGUFFile.from_buffer(memoryview(raw)[::2])


def test_no_tensors_and_no_metadata():
    f = GGUFFile.from_buffer(GGUFBuilder().build())
    assert f.metadata == {} and f.tensors == {} and f.architecture is None and f.alignment == 32


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


def fails(data: bytes, pattern: str, exc: type[GGUFError] = GGUFError) -> GGUFError:
    with pytest.raises(exc, match=pattern) as info:
        GGUFFile.from_buffer(data)
    return info.value


def test_empty_file(tmp_path):
    fails(b"", r"^empty file \(0 bytes\): not a GGUF file$")
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(GGUFError, match=r"empty\.gguf: empty file"):
        GGUFFile.open(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        GGUFFile.open(tmp_path / "nope.gguf")


@pytest.mark.parametrize("data", [b"GGML" + bytes(20), b"\x00\x00\x00\x00", b"PK\x03\x04zip", b"X", b"GGx"])
def test_bad_magic(data):
    fails(data, r"bad magic .* at offset 0: not a GGUF file \(expected b'GGUF'\)")


def test_short_magic_is_truncation():
    fails(b"GGU", r"truncated file: magic at offset 0 needs 4 bytes", GGUFTruncatedError)


def test_versions():
    fails(GGUFBuilder(version=1).build(), r"GGUF version 1 is not supported \(only versions 2 and 3\)")
    fails(GGUFBuilder(version=99).build(), r"unsupported GGUF version 99 \(supported: 2, 3\)")
    fails(GGUFBuilder(version=0).build(), r"unsupported GGUF version 0")
    fails(b"GGUF" + struct.pack(">I", 3) + bytes(16), r"big-endian GGUF file \(version 3\) is not supported")


def test_truncated_at_every_header_byte():
    builder = full_builder()
    raw, head_len = builder.build(), len(builder.header())
    for cut in range(1, head_len):
        with pytest.raises(GGUFError, match="truncated|left in the file") as info:
            GGUFFile.from_buffer(raw[:cut])
        with pytest.raises(GGUFTruncatedError, match="header truncated") as pinfo:
            parse_header(raw[:cut], file_size=len(raw))
        assert cut < pinfo.value.needed <= len(raw), (cut, str(pinfo.value))
        assert "Traceback" not in str(info.value)
    parse_header(raw[:head_len], file_size=len(raw))


@pytest.mark.parametrize(
    ("cut", "pattern"),
    [
        (6, r"truncated file: version at offset 4 needs 4 bytes but the file ends at offset 6"),
        (12, r"truncated file: tensor count at offset 8 needs 8 bytes"),
        (20, r"truncated file: metadata kv count at offset 16 needs 8 bytes"),
        (30, r"truncated file: metadata key #0 length at offset 24 needs 8 bytes"),
        (40, r"metadata key #0 string length 20 at offset 24 needs at least 20 bytes but only 8 are left"),
        (54, r"truncated file: metadata 'general.architecture' value type at offset 52 needs 4 bytes"),
    ],
)
def test_truncation_messages_name_field_and_offset(cut, pattern):
    fails(small_file()[:cut], pattern)


def test_truncated_in_array_and_tensor_table():
    raw = GGUFBuilder().kv("arr", V.ARRAY, (V.STRING, ["abcdefghij", "defgh"])).header()
    fails(raw[:len(raw) - 3], r"metadata 'arr'\[1\] string length 5 at offset \d+ needs at least 5 bytes")
    fails(raw[:len(raw) - 9], r"truncated file: metadata 'arr'\[1\] length at offset \d+ needs 8 bytes")
    b = GGUFBuilder().tensor("t", (8,), F32, bytes(32))
    head = b.header()
    fails(head[:-6], r"truncated file: tensor 't' offset at offset \d+ needs 8 bytes")
    fails(head[:-10], r"truncated file: tensor 't' type at offset \d+ needs 4 bytes")


def test_tensor_data_beyond_eof():
    raw = small_file()
    fails(raw[:-1], r"tensor 'scalar': data \[\d+, \d+\) lies outside the file \(\d+ bytes\): truncated")
    far = GGUFBuilder().tensor("t", (8,), F32, bytes(32), rel=1 << 40).header()
    fails(far + bytes(64), r"tensor 't': data \[\d+, \d+\) lies outside the file")
    huge = GGUFBuilder().tensor("t", (1 << 40, 1 << 20), F32, b"").header()
    fails(huge, r"tensor 't': data .* lies outside the file")
    # parse_header without a file size does not check tensor extents
    assert parse_header(huge).tensors["t"].nbytes == 4 << 60


def test_unknown_tensor_type():
    fails(GGUFBuilder().tensor("t", (32,), 200, bytes(32)).build(),
          r"tensor 't': unknown ggml type id 200 at offset 45")
    # a known type our kernels lack is fine at read time
    f = GGUFFile.from_buffer(GGUFBuilder().tensor("t", (256,), 16, bytes(66)).build())
    assert f.tensors["t"].type_name == "IQ2_XXS"


def test_unknown_value_types():
    raw = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + enc_str("k") + struct.pack("<I", 13) + bytes(8)
    fails(raw, r"metadata 'k': unknown value type 13 at offset 33")
    arr = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + enc_str("k") + struct.pack("<IIQ", 9, 99, 1) + bytes(8)
    fails(arr, r"metadata 'k': unknown array item type 99 at offset 37")


def test_huge_string_lengths():
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    fails(body + struct.pack("<Q", 1 << 62) + b"abc",
          r"metadata key #0 string length 4611686018427387904 at offset 24 is absurd")
    fails(body + struct.pack("<Q", 5000) + b"abc", r"metadata key #0 string length 5000 at offset 24 needs "
          r"at least 5000 bytes but only 3 are left in the file \(corrupt or truncated file\)")
    value = body + enc_str("k") + struct.pack("<IQ", V.STRING, (1 << 64) - 1) + b"x" * 10
    fails(value, r"metadata 'k' string length 18446744073709551615 at offset 37 needs .* only 10 are")


def test_huge_array_lengths():
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + enc_str("k")
    fails(body + struct.pack("<IIQ", 9, V.UINT8, 1 << 60), r"'k' array length \d+ at offset 41 is absurd")
    fails(body + struct.pack("<IIQ", 9, V.UINT32, 1000) + bytes(100),
          r"metadata 'k' array length 1000 at offset 41 needs at least 4000 bytes but only 100 are left")
    fails(body + struct.pack("<IIQ", 9, V.STRING, 20) + bytes(100),
          r"metadata 'k' array length 20 at offset 41 needs at least 160 bytes")
    fails(body + struct.pack("<IIQ", 9, V.ARRAY, 10) + bytes(100),
          r"metadata 'k' array length 10 at offset 41 needs at least 120 bytes")


def test_absurd_counts():
    fails(b"GGUF" + struct.pack("<IQQ", 3, 1 << 50, 0), r"tensor count \d+ at offset 8 is absurd")
    fails(b"GGUF" + struct.pack("<IQQ", 3, 0, (1 << 64) - 1), r"metadata kv count \d+ at offset 16 is absurd")
    # counts under the cap that the data cannot hold end at the record that runs out
    fails(b"GGUF" + struct.pack("<IQQ", 3, 1000, 0) + enc_tensor_info("a", (8,), F32, 0) + bytes(5),
          r"truncated file: tensor #1 name length at offset 57 needs 8 bytes but the file ends at offset 62")
    fails(b"GGUF" + struct.pack("<IQQ", 3, 0, 50) + enc_kv("k", V.UINT8, 1) + bytes(3),
          r"truncated file: metadata key #1 length at offset 38 needs 8 bytes")


def test_tensor_shape_errors():
    def one(shape, type_id=F32, data=b""):
        return GGUFBuilder().tensor("t", shape, type_id, data).build()

    fails(one((1,) * 9), r"tensor 't': n_dims 9 at offset 33 is invalid \(at most 4\)")
    fails(one((1,) * 5), r"n_dims 5 .* is invalid")
    fails(one((4, 0)), r"tensor 't': dimension 1 is 0 \(shape \[4, 0\]\)")
    fails(one(((1 << 64) - 1,)), r"tensor 't': dimension 0 = 18446744073709551615 is out of range")
    fails(one((1 << 62, 1 << 62)), r"tensor 't': shape \[.*\] has too many elements")
    fails(one((100, 2), Q4_K), r"tensor 't': row length 100 is not a multiple of the Q4_K block size 256")
    fails(one((33,), Q8_0), r"row length 33 is not a multiple of the Q8_0 block size 32")


def test_offsets_misaligned_or_overlapping():
    b = GGUFBuilder().tensor("a", (8,), F32, bytes(32)).tensor("b", (8,), F32, bytes(32), rel=16)
    fails(b.build(), r"tensor 'b': data offset 16 is not a multiple of the alignment 32")
    b = GGUFBuilder().tensor("a", (16,), F32, bytes(64)).tensor("b", (8,), F32, bytes(32), rel=32)
    fails(b.build(), r"tensors 'a' and 'b' overlap: \[0, 64\) and \[32, 64\)")
    b = GGUFBuilder().tensor("a", (8,), F32, bytes(32), rel=64).tensor("b", (8,), F32, bytes(32), rel=0)
    f = GGUFFile.from_buffer(b.build())
    assert [t.offset - f.data_offset for t in f.tensors.values()] == [64, 0]


def test_duplicates():
    two_keys = GGUFBuilder().kv("k", V.UINT8, 1).kv("k", V.UINT8, 2).build()
    fails(two_keys, r"duplicate metadata key 'k' at offset 38")
    b = GGUFBuilder().tensor("t", (8,), F32, bytes(32)).tensor("t", (8,), F32, bytes(32))
    fails(b.build(), r"duplicate tensor name 't' at offset \d+")


@pytest.mark.parametrize(("value", "vtype"), [(0, V.UINT32), (3, V.UINT32), (96, V.UINT64), (-32, V.INT32)])
def test_bad_alignment(value, vtype):
    fails(GGUFBuilder().kv("general.alignment", vtype, value).build(),
          rf"general.alignment = {value} is invalid: it must be a nonzero power of 2")


def test_alignment_must_be_an_integer():
    fails(GGUFBuilder().kv("general.alignment", V.STRING, "32").build(), r"general.alignment must be an int")
    fails(GGUFBuilder().kv("general.alignment", V.FLOAT32, 32.0).build(), r"must be an integer, not FLOAT32")


def test_nesting_depth_limit():
    value: tuple = (V.UINT8, [1])
    for _ in range(G.MAX_ARRAY_DEPTH + 2):
        value = (V.ARRAY, [value])
    fails(GGUFBuilder().kv("deep", V.ARRAY, value).build(), r"'deep'(\[0\])+: arrays nested more than")


def test_long_key_and_name_caps():
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    n = G.MAX_KEY_LEN + 1
    key = struct.pack("<Q", n) + b"k" * n
    fails(body + key + struct.pack("<IB", 0, 1), r"string length 65537 .* is absurd")


def test_parse_header_rejects_file_size_below_buffer():
    with pytest.raises(ValueError, match="smaller than the buffer"):
        parse_header(small_file(), file_size=10)


# --------------------------------------------------------------------------------------------------------
# Fuzz: mutated headers parse or raise GGUFError, quickly and without big allocations
# --------------------------------------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 64, 200, 255, 256, 0xFFFF, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
PREFIX_BYTES = 64 * 1024


def rebuilt_small(real: GGUFFile) -> bytes:
    """The real file's metadata (arrays cut to 8 items) and a few of its tensors, re-encoded."""
    b = GGUFBuilder()
    for key, value in real.metadata.items():
        types = real.value_types[key]
        b.kv(key, types[0], (types[1], value[:8]) if types[0] == V.ARRAY else value)
    for name in ("output_norm.weight", "blk.0.attn_k_norm.weight", "blk.0.attn_q_norm.weight"):
        info = real.tensors[name]
        b.tensor(name, info.shape, info.ggml_type, bytes(real.tensor_data(name)))
    b.tensor("fake.q4k", (256, 2), Q4_K, bytes(288))
    return b.build()


@pytest.fixture(scope="module")
def fuzz_bases(real, gemma_path):
    with open(gemma_path, "rb") as f:
        prefix = f.read(PREFIX_BYTES)
    small = rebuilt_small(real)
    parsed = GGUFFile.from_buffer(small)
    assert {k: v[:8] if isinstance(v, list) else v for k, v in real.metadata.items()} == parsed.metadata
    return [(prefix, real.file_size), (small, None)]


def mutate(data: bytearray, draw) -> bytearray:
    kind = draw(st.sampled_from(["byte", "u32", "u64", "trunc", "insert", "delete"]))
    pos = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "byte" and data:
        data[pos] = draw(st.integers(0, 255))
    elif kind in ("u32", "u64"):
        size = 4 if kind == "u32" else 8
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2 ** (8 * size) - 1)) % (1 << (8 * size))
        data[pos:pos + size] = value.to_bytes(size, "little")
    elif kind == "trunc":
        del data[pos:]
    elif kind == "insert":
        data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del data[pos:pos + draw(st.integers(1, 16))]
    return data


def parse_any(data: bytes, file_size: int | None) -> None:
    """Parse as the runtime would; touch every tensor's bytes when the whole file is there."""
    if file_size is not None:
        parse_header(data, file_size=max(file_size, len(data)))
        parse_header(data)
        return
    f = GGUFFile.from_buffer(data)
    for info in f.tensors.values():
        assert len(f.tensor_data(info.name)) == info.nbytes
        assert info.offset + info.nbytes <= len(data) and info.offset >= f.data_offset


def parse_measured(raw: bytes, file_size: int | None) -> tuple[str, int, float]:
    """Parse ``raw``; returns the outcome, the peak bytes allocated meanwhile and the seconds it took."""
    tracemalloc.start()
    t0 = time.perf_counter()
    outcome = "parsed"
    try:
        parse_any(raw, file_size)
    except GGUFError as exc:
        assert str(exc)
        outcome = type(exc).__name__
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak, elapsed


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_headers(fuzz_bases, data):
    """Either the header parses or GGUFError is raised: no other exception, no hang, no big allocation."""
    which = data.draw(st.integers(0, 1))
    base, file_size = fuzz_bases[which]
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        buf = mutate(buf, data.draw)
    raw = bytes(buf)
    outcome, peak, elapsed = parse_measured(raw, file_size)
    event(f"{['real prefix', 'rebuilt small file'][which]}: {outcome}")
    assert peak < 16 * len(raw) + (4 << 20), peak  # bounded by the input, never by a claimed length
    assert elapsed < 2.0
