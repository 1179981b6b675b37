// IQ1_S: super-blocks of 256 in 50 bytes: d (f16), 32 low index bytes, 8 u16 per group of 32 (3 index high bits per
// 8 values, a 3-bit scale s at bits 12..14, the delta's sign at bit 15); indices into the 2048 points of -1/0/1
// values of iq1s_grid; x = d * (2 s + 1) * (grid +- 0.125).
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq1s.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 50u;
    let ib = c & 7u;
    let qh = wu16(b + 34u + 2u * ib);
    let dl = wf16(b) * FT(2u * ((qh >> 12u) & 7u) + 1u);
    let delta = select(FT(0.125), FT(-0.125), (qh & 0x8000u) != 0u);
    for (var l = 0u; l < 4u; l++) {
        let i = wbyte(b + 2u + 4u * ib + l) | (((qh >> (3u * l)) & 7u) << 8u);
        let pt = iq_half(IQ1S_GRID[i >> 1u], i);
        for (var j = 0u; j < 8u; j++) {
            v[8u * l + j] = dl * (FT(i32((pt >> (2u * j)) & 3u) - 1) + delta);
        }
    }
    return v;
}
