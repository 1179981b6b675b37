// F32: 32 consecutive floats.
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let w0 = (rb >> 2u) + c * 32u;
    for (var k = 0u; k < 32u; k++) { v[k] = FT(bitcast<f32>(W[w0 + k])); }
    return v;
}
