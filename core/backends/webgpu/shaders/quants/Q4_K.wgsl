// Q4_K: super-blocks of 256 in 144 bytes: d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of nibbles;
// sub-block j of 32: x = d * sc_j * q - dmin * m_j (low nibbles for even j, high for odd, 32 bytes per pair).
//!INCLUDE kquant.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 144u;
    let j = c & 7u;
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let sm = scale_min_k4(b + 4u, j);
    let d1 = d * FT(sm.x);
    let m1 = dmin * FT(sm.y);
    let q = b + 16u + (j >> 1u) * 32u;
    let shift = (j & 1u) * 4u;
    for (var l = 0u; l < 32u; l += 4u) {
        let x = vec4<FT>((wu8x4(q + l) >> vec4<u32>(shift)) & vec4<u32>(0xfu)) * d1 - vec4<FT>(m1);
        v[l] = x.x; v[l + 1u] = x.y; v[l + 2u] = x.z; v[l + 3u] = x.w;
    }
    return v;
}
