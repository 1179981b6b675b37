// GATE[i] = act(GATE[i]) * UP[i]: SiLU (act 0) or GELU-tanh evaluated like the C kernel's half-precision table
// (x rounded to f16, gelu rounded to f16, identity beyond +-10).
struct P { n: u32, act: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> GATE: array<f32>;
@group(0) @binding(2) var<storage, read> UP: array<f32>;

fn to_f16(x: f32) -> f32 { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }

fn gelu_tanh(x: f32) -> f32 {
    if (x <= -10.0) { return 0.0; }
    if (x >= 10.0) { return x; }
    let h = to_f16(x);
    let g = 0.5 * h * (1.0 + tanh(0.7978845608028654 * h * (1.0 + 0.044715 * h * h)));
    return to_f16(g);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let g = GATE[i];
    var a: f32;
    if (p.act == ACT_SILU) { a = g / (1.0 + exp(-g)); } else { a = gelu_tanh(g); }
    GATE[i] = a * UP[i];
}
