// IQ3_S: super-blocks of 256 in 110 bytes: d (f16), 64 low index bytes, 8 bytes of index high bits (a bit per 4
// values), 32 sign bytes (a bit per value), 4 scale bytes (a nibble per 32 values); indices into the 512 points of 4
// values of iq3s_grid; x = d * (1 + 2 s) * grid * sign.
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq3s.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 110u;
    let ib = c & 7u;
    let qh = wbyte(b + 66u + ib);
    let sc = (wbyte(b + 106u + (ib >> 1u)) >> (4u * (ib & 1u))) & 0xfu;
    let db = wf16(b) * FT(1u + 2u * sc);
    for (var k = 0u; k < 8u; k++) {
        let pt = IQ3S_GRID[wbyte(b + 2u + 8u * ib + k) | (((qh >> k) & 1u) << 8u)];
        let signs = wbyte(b + 74u + 4u * ib + (k >> 1u));
        for (var j = 0u; j < 4u; j++) {
            v[4u * k + j] = db * FT((pt >> (8u * j)) & 0xffu) * iq_sign(signs, 4u * (k & 1u) + j);
        }
    }
    return v;
}
