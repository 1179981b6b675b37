// Q4_1: blocks of 20 bytes: d, m (f16), 16 bytes of nibbles (low: x0..15, high: x16..31); x = d * q + m.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 20u;
    let d = wf16(b);
    let m = vec4<FT>(wf16(b + 2u));
    for (var j = 0u; j < 16u; j += 4u) {
        let q = W[(b + 4u + j) >> 2u];  // blocks are word-aligned
        let lo = vec4<FT>((vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu)) * d + m;
        let hi = vec4<FT>((vec4<u32>(q) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu)) * d + m;
        v[j] = lo.x; v[j + 1u] = lo.y; v[j + 2u] = lo.z; v[j + 3u] = lo.w;
        v[j + 16u] = hi.x; v[j + 17u] = hi.y; v[j + 18u] = hi.z; v[j + 19u] = hi.w;
    }
    return v;
}
