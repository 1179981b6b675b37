// IQ2_XS: super-blocks of 256 in 74 bytes: d (f16), 32 u16 (a 9-bit index into the 512 points of iq2xs_grid and a
// 7-bit sign field per 8 values), 8 scale bytes (a nibble per 16 values, low first); x = d * (0.5 + s) * 0.25 *
// grid * sign.
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq2xs.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 74u;
    let ib = c & 7u;
    let d = wf16(b);
    let sc = wbyte(b + 66u + ib);
    let db0 = d * (FT(0.5) + FT(sc & 0xfu)) * FT(0.25);
    let db1 = d * (FT(0.5) + FT(sc >> 4u)) * FT(0.25);
    for (var l = 0u; l < 4u; l++) {
        let q = wu16(b + 2u + 8u * ib + 2u * l);
        let i = q & 511u;
        let pt = iq_half(IQ2XS_GRID[i >> 1u], i);
        let signs = iq_ksigns(q >> 9u);
        let db = select(db1, db0, l < 2u);
        for (var j = 0u; j < 8u; j++) {
            v[8u * l + j] = db * iq2_value((pt >> (2u * j)) & 3u) * iq_sign(signs, j);
        }
    }
    return v;
}
