// Q8_0: blocks of 34 bytes: d (f16), 32 x int8.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 34u;
    let d = wf16(b);
    for (var k = 0u; k < 32u; k += 4u) {
        let q = vec4<FT>(wi8x4(b + 2u + k)) * d;
        v[k] = q.x; v[k + 1u] = q.y; v[k + 2u] = q.z; v[k + 3u] = q.w;
    }
    return v;
}
