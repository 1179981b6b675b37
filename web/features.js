// Browser feature checks the page needs before it boots the in-browser engine.

// (module (func (result v128) (i32.const 0) (i8x16.splat) (i8x16.popcnt))): validates only with SIMD128.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
  65, 0, 253, 15, 253, 98, 11]);

/** Whether this browser runs WebAssembly with fixed-width SIMD (the kernels need it). */
export function hasWasmSimd() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}
