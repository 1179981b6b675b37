// cos and sin of any angle: Cody-Waite reduction to [-pi, pi] first (GPU sin/cos are only accurate there).
fn cos_sin(a: f32) -> vec2<f32> {
    let k = round(a * 0.15915494309189535);
    // 2*pi = C1 + C2: C1 has 8 significant bits, so k * C1 is exact for |k| < 2^16
    let r = (a - k * 6.28125) - k * 0.0019353071795864769;
    return vec2<f32>(cos(r), sin(r));
}
