// Causal attention of n_tok query rows (positions pos0 + t) over an f16 KV cache, GQA, optional sliding window,
// as the C kernel computes it: scores q.k * scale (soft-capped, cap * tanh(s / cap), when softcap > 0), softmax
// over positions [lo, pos0 + t], output the weighted sum of V.  One workgroup per (token, head); positions in tiles of 64 (one score per thread), online softmax.
struct P { n_tok: u32, n_head: u32, n_head_kv: u32, head_dim: u32, pos0: u32, window: u32, scale: f32,
           q_off: u32, o_off: u32, q_stride: u32, softcap: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> KC: array<u32>;
@group(0) @binding(3) var<storage, read> VC: array<u32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

const TILE = 64u;
const MAX_HD = 512u;
var<workgroup> qs: array<f32, MAX_HD>;
var<workgroup> w: array<f32, TILE>;
var<workgroup> red: array<f32, TILE>;


@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let kv_dim = p.n_head_kv * hd;
    let kvh = h / (p.n_head / p.n_head_kv);
    let qb = p.q_off + t * p.q_stride + h * hd;
    for (var i = tid; i < hd; i += TILE) { qs[i] = Q[qb + i]; }
    workgroupBarrier();
    let hi = p.pos0 + t;
    var lo = 0u;
    if (p.window > 0u && hi + 1u > p.window) { lo = hi + 1u - p.window; }
    var m = -3.4e38;
    var s = 0.0;
    var acc: array<f32, 8>;  // dims tid, tid + 64, ... (head_dim <= 512)
    for (var p0 = lo; p0 <= hi; p0 += TILE) {
        let pp = p0 + tid;
        var score = -3.4e38;
        if (pp <= hi) {
            let kb = (pp * kv_dim + kvh * hd) / 2u;
            var d = 0.0;
            for (var i = 0u; i < hd / 2u; i++) {
                let kk = unpack2x16float(KC[kb + i]);
                d += qs[2u * i] * kk.x + qs[2u * i + 1u] * kk.y;
            }
            score = d * p.scale;
            if (p.softcap > 0.0) { score = p.softcap * tanh(score / p.softcap); }
        }
        red[tid] = score;
        workgroupBarrier();
        for (var k = TILE / 2u; k > 0u; k >>= 1u) {
            if (tid < k) { red[tid] = max(red[tid], red[tid + k]); }
            workgroupBarrier();
        }
        let m_new = max(m, red[0]);
        workgroupBarrier();
        var e = 0.0;
        if (pp <= hi) { e = exp(score - m_new); }
        w[tid] = e;
        red[tid] = e;
        workgroupBarrier();
        for (var k = TILE / 2u; k > 0u; k >>= 1u) {
            if (tid < k) { red[tid] += red[tid + k]; }
            workgroupBarrier();
        }
        let corr = exp(m - m_new);
        s = s * corr + red[0];
        m = m_new;
        let n_here = min(TILE, hi + 1u - p0);
        for (var j = 0u; j * TILE < hd; j++) {
            let dd = tid + j * TILE;
            var a = acc[j] * corr;
            if (dd < hd) {
                for (var q = 0u; q < n_here; q++) {
                    let e2 = (p0 + q) * kv_dim + kvh * hd + dd;
                    let vv = unpack2x16float(VC[e2 / 2u]);
                    a += w[q] * select(vv.x, vv.y, (e2 & 1u) == 1u);
                }
            }
            acc[j] = a;
        }
        workgroupBarrier();
    }
    let inv = select(0.0, 1.0 / s, s > 0.0);
    let ob = p.o_off + t * (p.n_head * hd) + h * hd;
    for (var j = 0u; j * TILE < hd; j++) {
        let dd = tid + j * TILE;
        if (dd < hd) { O[ob + dd] = acc[j] * inv; }
    }
}
