// IQ4_XS: super-blocks of 256 in 136 bytes: d (f16), scales_h (u16: 2 high bits per sub-block), scales_l (4 bytes:
// 4 low bits per sub-block), 128 bytes of 4-bit indices (16 per sub-block of 32, laid out as IQ4_NL's);
// sub-block j: x = d * (scale_j - 32) * table[q].
var<private> IQ4NL_VALUES: array<i32, 16> = array<i32, 16>(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38,
                                                             53, 69, 89, 113);

fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 136u;
    let j = c & 7u;
    let ls = ((wbyte(b + 4u + (j >> 1u)) >> (4u * (j & 1u))) & 0xfu) | (((wu16(b + 2u) >> (2u * j)) & 3u) << 4u);
    let dl = wf16(b) * FT(i32(ls) - 32);
    let q0 = b + 8u + 16u * j;
    for (var l = 0u; l < 16u; l += 4u) {
        let q = wu8x4(q0 + l);
        for (var k = 0u; k < 4u; k++) {
            v[l + k] = FT(IQ4NL_VALUES[q[k] & 0xfu]) * dl;
            v[l + k + 16u] = FT(IQ4NL_VALUES[q[k] >> 4u]) * dl;
        }
    }
    return v;
}
