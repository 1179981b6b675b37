// Shared by the grid I-quants' load_chunk (quants/IQ*.wgsl).
// The eight signs of ggml's ksigns_iq2xs table: seven stored bits, the eighth their parity.
fn iq_ksigns(s7: u32) -> u32 { return s7 | ((countOneBits(s7) & 1u) << 7u); }
// +1 or -1 for bit j of signs
fn iq_sign(signs: u32, j: u32) -> FT { return select(FT(1.0), FT(-1.0), ((signs >> j) & 1u) != 0u); }
// the 16 bits of 2-bit codes of point i of a grid packed two points a u32
fn iq_half(w: u32, i: u32) -> u32 { return (w >> ((i & 1u) << 4u)) & 0xffffu; }
// an IQ2 grid's code (0, 1, 2) as its value (8, 25, 43)
fn iq2_value(c: u32) -> FT { return FT(8u + 17u * c + (c >> 1u)); }
