// Q5_0: blocks of 22 bytes: d (f16), qh (32 high bits), 16 bytes of low nibbles; x = d * (q - 16).
fn load_chunk(rb: u32, c: u32) -> array<FT, 32> {
    var v: array<FT, 32>;
    let b = rb + c * 22u;
    let d = wf16(b);
    let qh = wu32(b + 2u);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = wu8x4(b + 6u + j);
        let jj = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
        let lo = (q & vec4<u32>(0xfu)) | (((vec4<u32>(qh) >> jj) << vec4<u32>(4u)) & vec4<u32>(0x10u));
        let hi = (q >> vec4<u32>(4u)) | ((vec4<u32>(qh) >> (jj + vec4<u32>(12u))) & vec4<u32>(0x10u));
        let a = vec4<FT>(vec4<i32>(lo) - vec4<i32>(16)) * d;
        let e = vec4<FT>(vec4<i32>(hi) - vec4<i32>(16)) * d;
        v[j] = a.x; v[j + 1u] = a.y; v[j + 2u] = a.z; v[j + 3u] = a.w;
        v[j + 16u] = e.x; v[j + 17u] = e.y; v[j + 18u] = e.z; v[j + 19u] = e.w;
    }
    return v;
}
