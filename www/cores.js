// Which builds of the CPU fallback this browser runs: pkg/threads-relaxed/ (its matrix kernel
// multiplies and adds in one relaxed-SIMD instruction) where the browser validates relaxed SIMD,
// else pkg/threads/; on one thread without isolation, pkg/cpu-relaxed/ where it validates relaxed
// SIMD, else pkg/. The model worker and the peer benchmark's worker both ask here.

// A module whose one function returns f32x4.relaxed_madd of three splats of 0.0.
const splat = [0x43, 0, 0, 0, 0, 0xfd, 0x13]; // f32.const 0; f32x4.splat
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // magic, version
  1, 5, 1, 0x60, 0, 1, 0x7b, // types: () -> v128
  3, 2, 1, 0, // functions: one of type 0
  10, 28, 1, 26, 0, ...splat, ...splat, ...splat, 0xfd, 0x85, 0x02, 0x0b, // code: the madd
]);

export const relaxedSimd = () => WebAssembly.validate(RELAXED_PROBE);

// The threads module's URL (its wasm-bindgen glue), relative to www/.
export const threadsCore = () => new URL(relaxedSimd() ? '../pkg/threads-relaxed/wordmask.js' : '../pkg/threads/wordmask.js', import.meta.url).href;

// The one-thread CPU module's URL where the browser has relaxed SIMD (else null: pkg/ runs it).
export const singleCore = () => (relaxedSimd() ? new URL('../pkg/cpu-relaxed/wordmask.js', import.meta.url).href : null);
