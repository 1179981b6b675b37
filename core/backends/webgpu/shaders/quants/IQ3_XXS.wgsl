// IQ3_XXS: super-blocks of 256 in 98 bytes: d (f16), 64 grid indices (into the 256 points of 4 values of
// iq3xxs_grid, 8 a group of 32), 8 u32 (four 7-bit sign fields and a 4-bit scale s per group);
// x = d * (0.5 + s) * 0.5 * grid * sign.
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq3xxs.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 98u;
    let ib = c & 7u;
    let aux = wu32(b + 66u + 4u * ib);
    let db = wf16(b) * (FT(0.5) + FT(aux >> 28u)) * FT(0.5);
    for (var k = 0u; k < 8u; k++) {
        let pt = IQ3XXS_GRID[wbyte(b + 2u + 8u * ib + k)];
        let signs = iq_ksigns((aux >> (7u * (k >> 1u))) & 127u);
        for (var j = 0u; j < 4u; j++) {
            v[4u * k + j] = db * FT((pt >> (8u * j)) & 0xffu) * iq_sign(signs, 4u * (k & 1u) + j);
        }
    }
    return v;
}
