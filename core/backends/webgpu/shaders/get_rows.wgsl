// OUT[i] = table[ids[i]] * scale for the ids that fall in this weight buffer's rows [row0, row0 + n_rows):
// one workgroup per id, threads over the row's 32-element chunks.
struct P { n_cols: u32, n_rows: u32, n_ids: u32, row_bytes: u32, row0: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> IDS: array<i32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;

//!INCLUDE bytes.wgsl
//!INCLUDE quant

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let i = wid.x;
    let id = u32(IDS[i]);
    if (i >= p.n_ids || id < p.row0 || id >= p.row0 + p.n_rows) { return; }
    let rb = (id - p.row0) * p.row_bytes;
    for (var c = tid; c < p.n_cols / 32u; c += 64u) {
        let v = load_chunk(rb, c);
        for (var k = 0u; k < 32u; k++) {
            var x = f32(v[k]);
            if (p.scale != 1.0) { x *= p.scale; }
            OUT[i * p.n_cols + c * 32u + k] = x;
        }
    }
}
