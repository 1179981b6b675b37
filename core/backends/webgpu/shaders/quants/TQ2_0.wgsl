// TQ2_0: super-blocks of 256 in 66 bytes: 64 bytes of 2-bit digits, d (f16); byte 32 g + m holds elements
// 128 g + 32 l + m at bits 2 l; x = d * (q - 1).
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 66u;
    let j = c & 7u;
    let d = wf16(b + 64u);
    let q0 = b + 32u * (j >> 2u);
    let shift = vec4<u32>(2u * (j & 3u));
    for (var m = 0u; m < 32u; m += 4u) {
        let x = vec4<FT>(vec4<i32>((wu8x4(q0 + m) >> shift) & vec4<u32>(3u)) - vec4<i32>(1)) * d;
        v[m] = x.x; v[m + 1u] = x.y; v[m + 2u] = x.z; v[m + 3u] = x.w;
    }
    return v;
}
