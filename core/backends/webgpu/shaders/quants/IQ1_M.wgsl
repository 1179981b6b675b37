// IQ1_M: super-blocks of 256 in 56 bytes: 32 low index bytes, 16 bytes of a nibble per 8 values (3 index high bits,
// the delta's sign at bit 3), 4 u16 of 3-bit scales (a pair per group of 32) whose top nibbles together are the f16
// d; indices into iq1s_grid (-1/0/1 values); x = d * (2 s + 1) * (grid +- 0.125).
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq1s.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 56u;
    let ib = c & 7u;
    let dh = (wu16(b + 48u) >> 12u) | ((wu16(b + 50u) >> 8u) & 0xf0u) | ((wu16(b + 52u) >> 4u) & 0xf00u) |
             (wu16(b + 54u) & 0xf000u);
    let d = FT(unpack2x16float(dh).x);
    let sc = wu16(b + 48u + 2u * (ib >> 1u)) >> (6u * (ib & 1u));
    let dl0 = d * FT(2u * (sc & 7u) + 1u);
    let dl1 = d * FT(2u * ((sc >> 3u) & 7u) + 1u);
    for (var l = 0u; l < 4u; l++) {
        let qh = wbyte(b + 32u + 2u * ib + (l >> 1u)) >> (4u * (l & 1u));
        let i = wbyte(b + 4u * ib + l) | ((qh & 7u) << 8u);
        let pt = iq_half(IQ1S_GRID[i >> 1u], i);
        let delta = select(FT(0.125), FT(-0.125), (qh & 8u) != 0u);
        let dl = select(dl1, dl0, l < 2u);
        for (var j = 0u; j < 8u; j++) {
            v[8u * l + j] = dl * (FT(i32((pt >> (2u * j)) & 3u) - 1) + delta);
        }
    }
    return v;
}
