// Q4_0: blocks of 18 bytes: d (f16), 16 bytes of nibbles (low: x0..15, high: x16..31); x = d * (q - 8).
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 18u;
    let d = wf16(b);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = wu8x4(b + 2u + j);
        let lo = vec4<FT>(vec4<i32>(q & vec4<u32>(0xfu)) - vec4<i32>(8)) * d;
        let hi = vec4<FT>(vec4<i32>(q >> vec4<u32>(4u)) - vec4<i32>(8)) * d;
        v[j] = lo.x; v[j + 1u] = lo.y; v[j + 2u] = lo.z; v[j + 3u] = lo.w;
        v[j + 16u] = hi.x; v[j + 17u] = hi.y; v[j + 18u] = hi.z; v[j + 19u] = hi.w;
    }
    return v;
}
