// IQ4_NL: blocks of 32 in 18 bytes: d (f16), 16 bytes of 4-bit indices into a table of 16 values (low nibbles:
// x0..15, high: x16..31); x = d * table[q].
var<private> IQ4NL_VALUES: array<i32, 16> = array<i32, 16>(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38,
                                                             53, 69, 89, 113);

fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 18u;
    let d = wf16(b);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = wu8x4(b + 2u + j);
        for (var k = 0u; k < 4u; k++) {
            v[j + k] = FT(IQ4NL_VALUES[q[k] & 0xfu]) * d;
            v[j + k + 16u] = FT(IQ4NL_VALUES[q[k] >> 4u]) * d;
        }
    }
    return v;
}
