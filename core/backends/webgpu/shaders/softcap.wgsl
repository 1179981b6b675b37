// X[off + i] = tanh(X[off + i] / cap) * cap for i < n (Gemma 2's final logit soft-capping, as emb_softcap).
struct P { n: u32, off: u32, inv: f32, cap: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) { X[p.off + i] = tanh(X[p.off + i] * p.inv) * p.cap; }
}
