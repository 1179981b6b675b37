// Y[t, row0 + r] = sum_k W[r, k] * X[t, k] for the rows of one weight buffer (a whole matrix or one row block of
// a split one) and up to TT tokens per workgroup: each row gets TPR threads striding over its 32-element chunks
// (dequantized once by load_chunk, used for every token of the tile), then a tree reduction per token.
struct P { n_in: u32, n_rows: u32, n_tok: u32, row_bytes: u32, row0: u32, ld_y: u32, x_off: u32, y_off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

const WG = 64u;
const TT = 8u;
// TPR threads per row (a power of two set per matrix width), WG / TPR rows per workgroup
const RPW = WG / TPR;
var<workgroup> red: array<f32, 512>;

//!INCLUDE bytes.wgsl
//!INCLUDE quant

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let lane = tid % TPR;
    let row = (wid.x + wid.y * nwg.x) * RPW + tid / TPR;
    let t0 = wid.z * TT;
    let nt = min(TT, p.n_tok - t0);
    var acc: array<f32, 8>;
    if (row < p.n_rows) {
        let rb = row * p.row_bytes;
        let n_chunks = p.n_in / 32u;
        for (var c = lane; c < n_chunks; c += TPR) {
            let v = load_chunk(rb, c);
            for (var t = 0u; t < TT; t++) {
                if (t >= nt) { break; }
                let xb = p.x_off + (t0 + t) * p.n_in + c * 32u;
                var s = FT(0.0);
                for (var k = 0u; k < 32u; k += 4u) {
                    s += dot(vec4<FT>(v[k], v[k + 1u], v[k + 2u], v[k + 3u]),
                             vec4<FT>(vec4<f32>(X[xb + k], X[xb + k + 1u], X[xb + k + 2u], X[xb + k + 3u])));
                }
                acc[t] += f32(s);
            }
        }
    }
    if (TPR > 1u) {
        for (var t = 0u; t < TT; t++) { red[t * WG + tid] = acc[t]; }
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            if (lane < s) {
                for (var t = 0u; t < TT; t++) { red[t * WG + tid] += red[t * WG + tid + s]; }
            }
            workgroupBarrier();
        }
        for (var t = 0u; t < TT; t++) { acc[t] = red[t * WG + tid]; }
    }
    if (row < p.n_rows && lane == 0u) {
        for (var t = 0u; t < TT; t++) { if (t < nt) { Y[p.y_off + (t0 + t) * p.ld_y + p.row0 + row] = acc[t]; } }
    }
}
