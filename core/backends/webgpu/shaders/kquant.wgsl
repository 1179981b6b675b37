// The 6-bit scale (x) and min (y) of sub-block j of a Q4_K / Q5_K super-block, packed in 12 bytes at byte s.
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    if (j < 4u) { return vec2<u32>(wbyte(s + j) & 63u, wbyte(s + j + 4u) & 63u); }
    return vec2<u32>((wbyte(s + j + 4u) & 0xfu) | ((wbyte(s + j - 4u) >> 6u) << 4u),
                     (wbyte(s + j + 4u) >> 4u) | ((wbyte(s + j) >> 6u) << 4u));
}
