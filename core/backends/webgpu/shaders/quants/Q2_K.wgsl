// Q2_K: super-blocks of 256 in 84 bytes: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit
// quants, d, dmin (f16); sub-block j of 32 = bits 2*(j%4) of bytes 32*(j/4).., x = d * sc * q - dmin * m per 16.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 84u;
    let j = c & 7u;
    let d = wf16(b + 80u);
    let dmin = wf16(b + 82u);
    let s = wu16(b + 2u * j);  // the scale bytes of the two halves of 16
    let d0 = d * FT(s & 0xfu);
    let m0 = dmin * FT((s >> 4u) & 0xfu);
    let d1 = d * FT((s >> 8u) & 0xfu);
    let m1 = dmin * FT(s >> 12u);
    let q = b + 16u + (j >> 2u) * 32u;
    let shift = vec4<u32>(2u * (j & 3u));
    for (var l = 0u; l < 32u; l += 4u) {
        let first = l < 16u;
        let x = vec4<FT>((wu8x4(q + l) >> shift) & vec4<u32>(3u)) * select(d1, d0, first) - vec4<FT>(select(m1, m0, first));
        v[l] = x.x; v[l + 1u] = x.y; v[l + 2u] = x.z; v[l + 3u] = x.w;
    }
    return v;
}
