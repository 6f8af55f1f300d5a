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

// Each build's wasm-bindgen glue, by a literal import(): a bundler (Vite, webpack, ...) sees
// every one and copies it and, through the glue's own `new URL('wordmask_bg.wasm',
// import.meta.url)`, its .wasm; unbundled, the browser resolves them beside this file.
const MODULES = {
  main: () => import('../pkg/wordmask.js'),
  'cpu-relaxed': () => import('../pkg/cpu-relaxed/wordmask.js'),
  threads: () => import('../pkg/threads/wordmask.js'),
  'threads-relaxed': () => import('../pkg/threads-relaxed/wordmask.js'),
};

/** The module of a build ('main', 'cpu-relaxed', 'threads' or 'threads-relaxed'). */
export const importCore = (build) => MODULES[build]();

/** A build's folder in the package: 'pkg/' or 'pkg/<build>/'. */
export const coreFolder = (build) => (build === 'main' ? 'pkg/' : `pkg/${build}/`);

// The threads module's build.
export const threadsCore = () => (relaxedSimd() ? 'threads-relaxed' : 'threads');

// The one-thread CPU module's build where the browser has relaxed SIMD (else null: pkg/ runs it).
export const singleCore = () => (relaxedSimd() ? 'cpu-relaxed' : null);
