// Reading GGUF blocks out of the u32 words of the weight buffer W (blocks of 18/22/34/... bytes are not aligned).
fn wbyte(i: u32) -> u32 { return (W[i >> 2u] >> ((i & 3u) << 3u)) & 0xffu; }
fn wi8(i: u32) -> i32 { return (i32(wbyte(i)) << 24u) >> 24u; }
// a little-endian u16 at an even byte offset
fn wu16(i: u32) -> u32 { return (W[i >> 2u] >> ((i & 2u) << 3u)) & 0xffffu; }
fn wf16(i: u32) -> FT { return FT(unpack2x16float(wu16(i)).x); }
// a little-endian u32 at any byte offset
fn wu32(i: u32) -> u32 {
    let s = (i & 3u) << 3u;
    let a = W[i >> 2u];
    if (s == 0u) { return a; }
    return (a >> s) | (W[(i >> 2u) + 1u] << (32u - s));
}
// four bytes from any byte offset, as unsigned and as signed values
fn wu8x4(i: u32) -> vec4<u32> {
    let w = wu32(i);
    return vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u);
}
fn wi8x4(i: u32) -> vec4<i32> {
    let w = bitcast<i32>(wu32(i));
    return vec4<i32>((w << 24u) >> 24u, (w << 16u) >> 24u, (w << 8u) >> 24u, w >> 24u);
}
