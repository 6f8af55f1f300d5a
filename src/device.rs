//! Choosing where tensors live: the GPU through wgpu (Vulkan/Metal/DX12 natively, WebGPU in
//! the browser) or burn's pure-Rust `flex` CPU backend.

use std::fmt;

use burn::tensor::Device;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// wgpu when a hardware GPU adapter is present, else the CPU backend (a software
    /// rasteriser such as llvmpipe runs CLIP tens of times slower than `flex`).
    Auto,
    /// The GPU through wgpu (Vulkan, Metal, DX12).
    #[cfg_attr(feature = "cli", value(alias = "gpu"))]
    Wgpu,
    /// burn's pure-Rust `flex` backend.
    #[cfg_attr(feature = "cli", value(alias = "flex"))]
    Cpu,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Wgpu => "wgpu",
            Backend::Cpu => "cpu",
        })
    }
}

/// Whether this processor has AVX-512 (natively on x86-64). The CPU backend then runs linear
/// layers, attention and the element-wise kernels on the host's own AVX-512 kernels
/// (`nn::packed`, `nn::host`), against weights packed at load; elsewhere natively its own
/// matrix product is faster. The answer is cached after the first call.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Open a device natively. The wgpu runtime is initialised once per process; later calls
/// return the same device (a second initialisation would fail).
#[cfg(not(target_family = "wasm"))]
pub fn open(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => cpu(),
        Backend::Wgpu => wgpu_native(),
        Backend::Auto => open(resolve_auto()),
    }
}

/// What `auto` means on this machine.
#[cfg(not(target_family = "wasm"))]
pub fn resolve_auto() -> Backend {
    if hardware_gpu() { Backend::Wgpu } else { Backend::Cpu }
}

/// Whether wgpu sees an adapter that is not a CPU (software) device.
#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
fn hardware_gpu() -> bool {
    use burn::tensor::wgpu::wgpu;
    use std::task::{Context, Poll, Waker};
    let instance = wgpu::Instance::default();
    let mut adapters = std::pin::pin!(instance.enumerate_adapters(wgpu::Backends::all()));
    // Native enumeration completes immediately; a pending future counts as "no GPU".
    match adapters.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(list) => list.iter().any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu),
        Poll::Pending => false,
    }
}

#[cfg(all(not(feature = "wgpu"), not(target_family = "wasm")))]
fn hardware_gpu() -> bool {
    false
}

#[cfg(feature = "cpu")]
pub fn cpu() -> Result<Device> {
    Ok(Device::flex())
}

#[cfg(not(feature = "cpu"))]
pub fn cpu() -> Result<Device> {
    Err(Error::Unsupported("this build has no CPU backend (enable the `cpu` feature)".into()))
}

#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
fn wgpu_native() -> Result<Device> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options().init().map_err(|e| {
                format!("no usable GPU adapter through wgpu ({e}); on a machine without a GPU install a Vulkan driver such as Mesa's llvmpipe, or use --backend cpu")
            })
        })
        .clone()
        .map_err(Error::Device)
}

#[cfg(all(not(feature = "wgpu"), not(target_family = "wasm")))]
fn wgpu_native() -> Result<Device> {
    Err(Error::Unsupported("this build has no wgpu backend (enable the `wgpu` feature)".into()))
}

/// Browser: initialise WebGPU once (async), the only way the browser allows.
#[cfg(all(feature = "wgpu", target_family = "wasm"))]
pub async fn webgpu() -> Result<Device> {
    Device::wgpu_options().init_async().await.map_err(|e| Error::Device(format!("WebGPU is not available: {e}")))
}

/// A web build without WebGPU (the CPU fallback's `threads` module).
#[cfg(all(not(feature = "wgpu"), target_family = "wasm"))]
pub async fn webgpu() -> Result<Device> {
    Err(Error::Unsupported("this module has no WebGPU backend (it is the CPU fallback's threads module)".into()))
}

/// Read a tensor back to the host as `f32`, synchronously: natively, and in the web build's
/// `threads` module, whose one backend (the CPU) reads back at once.
#[cfg(any(not(target_family = "wasm"), feature = "threads"))]
pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a result back failed: {e:?}")))
}

/// Read a tensor back to the host as `f32` (browser and native).
pub async fn to_vec_async<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| Error::Device(format!("reading a result back failed: {e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a result back failed: {e:?}")))
}
