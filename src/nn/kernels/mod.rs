//! The kernels the layers run besides burn's own ops: on the CPU backend, element-wise passes
//! on the host ([`host`]) and products against weights packed at load ([`packed`]); on the GPU
//! backend, the transformer block's cubecl kernels (`gpu`). [`Kernel`] is which of them a
//! layer runs, chosen when the layer is built.

#[cfg(feature = "wgpu")]
pub(crate) mod gpu;
pub(crate) mod host;
pub(crate) mod packed;

use burn::tensor::Device;

/// Which implementation a layer runs, chosen once when the layer is built from the device its
/// weights are on (and, for the host, whether the loader packed them); `forward` matches on it
/// and checks only what depends on its input (how many rows, a mask). Each layer documents
/// which of these it has kernels for; on the others it runs burn's ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The CPU backend with every weight of the layer packed on the host: the layer runs whole
    /// on the host (`packed`).
    Packed,
    /// The CPU backend with the weights on the device: burn's products, and the host's
    /// element-wise passes (`host`).
    Host,
    /// The GPU backend: the cubecl kernels (`gpu`).
    Gpu,
    /// burn's ops: another backend, a device that records its graph for training, or a layer
    /// that the kernels above do not suit.
    Burn,
}

impl Kernel {
    /// Where layers with weights on `device` run, before any packing: [`Kernel::Host`] on the
    /// CPU backend, [`Kernel::Gpu`] on the GPU backend, [`Kernel::Burn`] elsewhere and on a
    /// device that records its graph.
    pub fn on(device: &Device) -> Self {
        if host::runs_here(device) {
            return Kernel::Host;
        }
        #[cfg(feature = "wgpu")]
        if gpu::runs_here(device) {
            return Kernel::Gpu;
        }
        Kernel::Burn
    }
}

/// Whether a layer with weights on `device` and rows of these widths runs on the GPU kernels:
/// the device is the GPU backend's and every width suits them (`gpu::widths_fit`).
pub fn gpu_suits(device: &Device, widths: &[usize]) -> bool {
    #[cfg(feature = "wgpu")]
    return Kernel::on(device) == Kernel::Gpu && gpu::widths_fit(widths);
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (device, widths);
        false
    }
}
