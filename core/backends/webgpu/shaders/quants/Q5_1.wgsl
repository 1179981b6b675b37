// Q5_1: blocks of 24 bytes: d, m (f16), qh (32 high bits), 16 bytes of low nibbles; x = d * q + m.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 24u;  // blocks are word-aligned
    let d = wf16(b);
    let m = vec4<FT>(wf16(b + 2u));
    let qh = vec4<u32>(W[(b >> 2u) + 1u]);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = vec4<u32>(W[(b >> 2u) + 2u + (j >> 2u)]);
        let jj = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
        let lo = ((q >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu)) | (((qh >> jj) & vec4<u32>(1u)) << vec4<u32>(4u));
        let hi = ((q >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu))
               | (((qh >> (jj + vec4<u32>(16u))) & vec4<u32>(1u)) << vec4<u32>(4u));
        let a = vec4<FT>(lo) * d + m;
        let e = vec4<FT>(hi) * d + m;
        v[j] = a.x; v[j + 1u] = a.y; v[j + 2u] = a.z; v[j + 3u] = a.w;
        v[j + 16u] = e.x; v[j + 17u] = e.y; v[j + 18u] = e.z; v[j + 19u] = e.w;
    }
    return v;
}
