// TQ1_0: super-blocks of 256 in 54 bytes: 48 bytes of 5 base-3 digits each, 4 bytes (qh) of 4 digits each, d (f16).
// Digit k of byte q is ((q * 3^k) mod 256) * 3 >> 8; x = d * (digit - 1).  Bytes 0..31 hold elements m + 32 k,
// bytes 32..47 elements 160 + m + 16 k, qh byte j elements 240 + j + 4 k.
fn tq1_digit(q: u32, k: u32) -> i32 {
    var p = q;
    for (var i = 0u; i < k; i++) { p = (p * 3u) & 0xffu; }
    return i32((p * 3u) >> 8u) - 1;
}

fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + (c >> 3u) * 54u;
    let j = c & 7u;
    let d = wf16(b + 52u);
    for (var m = 0u; m < 32u; m++) {
        var bo = m;
        var k = j;
        if (j == 5u || j == 6u) {
            bo = 32u + (m & 15u);
            k = 2u * (j - 5u) + (m >> 4u);
        } else if (j == 7u) {
            if (m < 16u) {
                bo = 32u + m;
                k = 4u;
            } else {
                bo = 48u + ((m - 16u) & 3u);
                k = (m - 16u) >> 2u;
            }
        }
        v[m] = FT(tq1_digit(wbyte(b + bo), k)) * d;
    }
    return v;
}
