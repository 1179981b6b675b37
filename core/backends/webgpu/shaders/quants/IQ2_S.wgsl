// IQ2_S: super-blocks of 256 in 82 bytes: d (f16), 32 low index bytes, 32 sign bytes (a bit per value), 8 bytes of
// index high bits (2 per 8 values), 8 scale bytes (a nibble per 16 values); indices into the 1024 points of
// iq2s_grid; x = d * (0.5 + s) * 0.25 * grid * sign.
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq2s.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 82u;
    let ib = c & 7u;
    let d = wf16(b);
    let qh = wbyte(b + 66u + ib);
    let sc = wbyte(b + 74u + ib);
    let db0 = d * (FT(0.5) + FT(sc & 0xfu)) * FT(0.25);
    let db1 = d * (FT(0.5) + FT(sc >> 4u)) * FT(0.25);
    for (var l = 0u; l < 4u; l++) {
        let i = wbyte(b + 2u + 4u * ib + l) | (((qh >> (2u * l)) & 3u) << 8u);
        let pt = iq_half(IQ2S_GRID[i >> 1u], i);
        let signs = wbyte(b + 34u + 4u * ib + l);
        let db = select(db1, db0, l < 2u);
        for (var j = 0u; j < 8u; j++) {
            v[8u * l + j] = db * iq2_value((pt >> (2u * j)) & 3u) * iq_sign(signs, j);
        }
    }
    return v;
}
