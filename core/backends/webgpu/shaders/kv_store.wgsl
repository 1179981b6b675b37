// K/V rows (f32) of n_tok tokens into the f16 caches at positions pos0.. (two halves per u32 word).
struct P { n_words: u32, kv_dim: u32, pos0: u32, k_off: u32, v_off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> KC: array<u32>;
@group(0) @binding(4) var<storage, read_write> VC: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * 256u;
    if (w >= p.n_words) { return; }
    let e = 2u * w;
    let dst = (p.pos0 * p.kv_dim + e) / 2u;
    KC[dst] = pack2x16float(vec2<f32>(K[p.k_off + e], K[p.k_off + e + 1u]));
    VC[dst] = pack2x16float(vec2<f32>(V[p.v_off + e], V[p.v_off + e + 1u]));
}
