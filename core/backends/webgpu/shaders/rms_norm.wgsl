// Per row of dim: y = x / sqrt(mean(x^2) + eps) * w (w optional); ADD: acc += y.  One workgroup per row.
// The //!INPLACE variant reads and writes OUT (a norm in place: q/k norms).
struct P { dim: u32, n_rows: u32, eps: f32, x_off: u32, out_off: u32, has_w: u32, add: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> WV: array<f32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
//!NOT_INPLACE @group(0) @binding(3) var<storage, read> X: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let r = wid.x + wid.y * nwg.x;
    let live = r < p.n_rows;
    let xb = p.x_off + r * p.dim;
    var s = 0.0;
    if (live) {
        for (var i = tid; i < p.dim; i += 64u) { let v = X[xb + i]; s += v * v; }
    }
    red[tid] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (tid < k) { red[tid] += red[tid + k]; }
        workgroupBarrier();
    }
    if (!live) { return; }
    let scale = 1.0 / sqrt(red[0] / f32(p.dim) + p.eps);
    let ob = p.out_off + r * p.dim;
    for (var i = tid; i < p.dim; i += 64u) {
        var y = X[xb + i] * scale;
        if (p.has_w != 0u) { y *= WV[i]; }
        if (p.add != 0u) { OUT[ob + i] += y; } else { OUT[ob + i] = y; }
    }
}
