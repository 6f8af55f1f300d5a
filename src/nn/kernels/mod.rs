//! The kernels the layers run besides burn's own ops: on the CPU backend, element-wise passes
//! on the host ([`host`]) and products against weights packed at load ([`packed`]); on the GPU
//! backend, the transformer block's cubecl kernels (`gpu`).

#[cfg(feature = "wgpu")]
pub(crate) mod gpu;
pub(crate) mod host;
pub(crate) mod packed;
