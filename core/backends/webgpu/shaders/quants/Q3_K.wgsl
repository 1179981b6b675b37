// Q3_K: super-blocks of 256 in 110 bytes: hmask (32), 2-bit quants (64), 12 bytes of 16 packed 6-bit scales, d
// (f16); sub-block j of 32 = bits 2*(j%4) of bytes 32*(j/4).. plus hmask bit j, x = d * (sc - 32) * (q - 4) per 16.
fn q3k_scale(s: u32, i: u32) -> FT {
    let lo = (wbyte(s + (i & 7u)) >> (4u * (i >> 3u))) & 0xfu;
    let hi = (wbyte(s + 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
    return FT(i32(lo | (hi << 4u)) - 32);
}

fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 110u;
    let j = c & 7u;
    let d = wf16(b + 108u);
    let d0 = d * q3k_scale(b + 96u, 2u * j);
    let d1 = d * q3k_scale(b + 96u, 2u * j + 1u);
    let q = b + 32u + (j >> 2u) * 32u;
    let shift = vec4<u32>(2u * (j & 3u));
    for (var l = 0u; l < 32u; l += 4u) {
        let hb = (wu8x4(b + l) >> vec4<u32>(j)) & vec4<u32>(1u);
        let qq = ((wu8x4(q + l) >> shift) & vec4<u32>(3u)) | (hb << vec4<u32>(2u));
        let x = vec4<FT>(vec4<i32>(qq) - vec4<i32>(4)) * select(d1, d0, l < 16u);
        v[l] = x.x; v[l + 1u] = x.y; v[l + 2u] = x.z; v[l + 3u] = x.w;
    }
    return v;
}
