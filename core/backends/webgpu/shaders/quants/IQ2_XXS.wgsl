// IQ2_XXS: super-blocks of 256 in 66 bytes: d (f16), then per group of 32 eight bytes: four grid indices (bytes
// 0..3, into the 256 points of 8 values of iq2xxs_grid) and a u32 of four 7-bit sign fields and a 4-bit scale s
// (bits 28..31); x = d * (0.5 + s) * 0.25 * grid * sign.
//!INCLUDE iq_common.wgsl
//!INCLUDE iq_grid_iq2xxs.wgsl
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 66u;
    let g = b + 2u + (c & 7u) * 8u;
    let idx = wu32(g);
    let aux = wu32(g + 4u);
    let db = wf16(b) * (FT(0.5) + FT(aux >> 28u)) * FT(0.25);
    for (var l = 0u; l < 4u; l++) {
        let i = (idx >> (8u * l)) & 0xffu;
        let pt = iq_half(IQ2XXS_GRID[i >> 1u], i);
        let signs = iq_ksigns((aux >> (7u * l)) & 127u);
        for (var j = 0u; j < 8u; j++) {
            v[8u * l + j] = db * iq2_value((pt >> (2u * j)) & 3u) * iq_sign(signs, j);
        }
    }
    return v;
}
