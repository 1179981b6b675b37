// Q6_K: super-blocks of 256 in 210 bytes: ql (128), qh (64), 16 int8 scales, d (f16); two halves of 128, each
// four parts of 32: x = d * sc * (q - 32), q = 4 bits of ql | 2 bits of qh.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 210u;
    let j = c & 7u;
    let half = j >> 2u;
    let part = j & 3u;
    let d = wf16(b + 208u);
    let ql = b + 64u * half + (part & 1u) * 32u;
    let qh = b + 128u + 32u * half;
    let lshift = (part >> 1u) * 4u;
    let hshift = 2u * part;
    let sc = b + 192u + 8u * half + 2u * part;
    let s0 = d * FT(wi8(sc));
    let s1 = d * FT(wi8(sc + 1u));
    for (var l = 0u; l < 32u; l += 4u) {
        let q = ((wu8x4(ql + l) >> vec4<u32>(lshift)) & vec4<u32>(0xfu))
              | (((wu8x4(qh + l) >> vec4<u32>(hshift)) & vec4<u32>(3u)) << vec4<u32>(4u));
        let x = vec4<FT>(vec4<i32>(q) - vec4<i32>(32)) * select(s1, s0, l < 16u);
        v[l] = x.x; v[l + 1u] = x.y; v[l + 2u] = x.z; v[l + 3u] = x.w;
    }
    return v;
}
