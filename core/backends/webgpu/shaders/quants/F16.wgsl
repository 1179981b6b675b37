// F16: 32 consecutive halves.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 64u;
    for (var k = 0u; k < 32u; k++) { v[k] = wf16(b + 2u * k); }
    return v;
}
