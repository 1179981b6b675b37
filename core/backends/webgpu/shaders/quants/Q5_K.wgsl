// Q5_K: super-blocks of 256 in 176 bytes: d, dmin (f16), 12 bytes of 6-bit scales/mins (as Q4_K), qh (32), 128
// bytes of nibbles; sub-block j of 32: x = d * sc_j * (nibble | bit j of qh << 4) - dmin * m_j.
//!INCLUDE kquant.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 176u;
    let j = c & 7u;
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let sm = scale_min_k4(b + 4u, j);
    let d1 = d * FT(sm.x);
    let m1 = vec4<FT>(dmin * FT(sm.y));
    let q = (b + 48u + (j >> 1u) * 32u) >> 2u;  // blocks are word-aligned
    let qh = (b + 16u) >> 2u;
    let shift = vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>((j & 1u) * 4u);
    let hshift = vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(j);
    for (var l = 0u; l < 8u; l++) {
        let qq = ((vec4<u32>(W[q + l]) >> shift) & vec4<u32>(0xfu))
               | (((vec4<u32>(W[qh + l]) >> hshift) & vec4<u32>(1u)) << vec4<u32>(4u));
        let x = vec4<FT>(qq) * d1 - m1;
        v[4u * l] = x.x; v[4u * l + 1u] = x.y; v[4u * l + 2u] = x.z; v[4u * l + 3u] = x.w;
    }
    return v;
}
