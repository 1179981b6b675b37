// ACC[i] += X[i] (the residual), or with BIAS: ACC[r, i] += X[i] for n rows (x_len = the bias length).
struct P { n: u32, x_len: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> ACC: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) { ACC[i] += X[i % p.x_len]; }
}
