// Rotary position embedding in place, as the C kernel: per token the angle of pair i is
// pos * theta_scale^i (built by repeated multiplication) / ff[i] * freq_scale; NORMAL rotates (2i, 2i+1), NEOX
// (i, i + n_rot/2).  One invocation per (token, head, pair).
struct P { n_tok: u32, n_heads: u32, head_dim: u32, n_rot: u32, theta_scale: f32, freq_scale: f32, neox: u32,
           has_ff: u32, x_off: u32, pos_off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<storage, read> POS: array<i32>;
@group(0) @binding(3) var<storage, read> FF: array<f32>;

//!INCLUDE trig.wgsl

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.n_rot / 2u;
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n_tok * p.n_heads * half) { return; }
    let i = idx % half;
    let h = (idx / half) % p.n_heads;
    let t = idx / (half * p.n_heads);
    var theta = f32(POS[p.pos_off + t]);
    for (var k = 0u; k < i; k++) { theta *= p.theta_scale; }
    var ff = 1.0;
    if (p.has_ff != 0u) { ff = FF[i]; }
    let cs = cos_sin((theta / ff) * p.freq_scale);
    let base = p.x_off + (t * p.n_heads + h) * p.head_dim;
    var i0 = 2u * i;
    var i1 = 2u * i + 1u;
    if (p.neox != 0u) { i0 = i; i1 = i + half; }
    let x0 = X[base + i0];
    let x1 = X[base + i1];
    X[base + i0] = x0 * cs.x - x1 * cs.y;
    X[base + i1] = x0 * cs.y + x1 * cs.x;
}
