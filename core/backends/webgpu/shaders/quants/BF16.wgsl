// BF16: 32 consecutive bfloat16 (the high half of a float32).
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 64u;
    for (var k = 0u; k < 32u; k++) { v[k] = FT(bitcast<f32>(wu16(b + 2u * k) << 16u)); }
    return v;
}
