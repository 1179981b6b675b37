// The index and value of the largest of n logits (the first on ties, as the C kernel): one workgroup of 256.
struct P { n: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
    var best = -3.4e38;
    var idx = 0xffffffffu;
    for (var i = tid; i < p.n; i += 256u) {
        let v = X[p.off + i];
        // the first value a thread sees counts even at -inf (or below -3.4e38); NaN never does, as in C
        if (v > best || (idx == 0xffffffffu && v <= best)) { best = v; idx = i; }
    }
    bv[tid] = best;
    bi[tid] = idx;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (tid < k) {
            let v = bv[tid + k];
            let j = bi[tid + k];
            let take = v > bv[tid] || (v == bv[tid] && j < bi[tid]) || bi[tid] == 0xffffffffu;
            if (j != 0xffffffffu && take) { bv[tid] = v; bi[tid] = j; }
        }
        workgroupBarrier();
    }
    if (tid == 0u) { OUT[0] = select(bi[0], 0u, bi[0] == 0xffffffffu); OUT[1] = bitcast<u32>(bv[0]); }
}
