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
        if (v > best) { best = v; idx = i; }
    }
    bv[tid] = best;
    bi[tid] = idx;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (tid < k) {
            let v = bv[tid + k];
            let j = bi[tid + k];
            if (v > bv[tid] || (v == bv[tid] && j < bi[tid])) { bv[tid] = v; bi[tid] = j; }
        }
        workgroupBarrier();
    }
    if (tid == 0u) { OUT[0] = bi[0]; OUT[1] = bitcast<u32>(bv[0]); }
}
