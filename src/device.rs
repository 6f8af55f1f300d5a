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

/// The float type the GPU backend computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 on a hardware GPU whose adapter has `shader-f16`, else f32.
    #[default]
    Auto,
    /// Single precision everywhere: results match the reference checkpoints' to 1e-4.
    F32,
    /// Half precision on the GPU backend (weights, activations and the kernels' loads and
    /// stores; the products, norms and softmaxes accumulate in f32): half the GPU memory and
    /// memory traffic. Needs an adapter with `shader-f16`.
    F16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(Error::invalid(format!("precision must be auto, f32 or f16, got {other}"))),
        }
    }
}

/// What a device computes in: f16 where its default float type is half precision.
pub fn precision(device: &Device) -> Precision {
    match device.settings().float_dtype {
        burn::tensor::FloatDType::F16 => Precision::F16,
        _ => Precision::F32,
    }
}

/// Set a freshly opened GPU device's float type: `auto` takes f16 where `hardware` and the
/// adapter has `shader-f16`. Must run before any tensor is made on it.
#[cfg(feature = "wgpu")]
fn configure(device: &mut Device, precision: Precision, hardware: bool) -> Result<()> {
    let f16 = device.supports_dtype(burn::tensor::DType::F16);
    let half = match precision {
        Precision::F32 => false,
        Precision::Auto => f16 && hardware,
        Precision::F16 if f16 => true,
        Precision::F16 => {
            return Err(Error::invalid(
                "this GPU adapter cannot compute in f16 (it lacks shader-f16); use precision f32 or auto",
            ));
        }
    };
    let dtype = if half { burn::tensor::FloatDType::F16 } else { burn::tensor::FloatDType::F32 };
    device.configure(dtype).map_err(|e| Error::Device(format!("setting the GPU's float type to {dtype:?}: {e:?}")))
}

/// Whether this processor has AVX-512 (natively on x86-64). The CPU backend then runs linear
/// layers, attention and the element-wise kernels on the host's own AVX-512 kernels
/// (`nn::kernels::packed`, `nn::kernels::host`), against weights packed at load; elsewhere natively its own
/// matrix product is faster. The answer is cached after the first call.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Open a device natively, computing in f32. The wgpu runtime is initialised once per process;
/// later calls return the same device (a second initialisation would fail).
#[cfg(not(target_family = "wasm"))]
pub fn open(backend: Backend) -> Result<Device> {
    open_with(backend, Precision::F32)
}

/// Open a device natively in a given precision (which only the GPU backend has a choice of:
/// the CPU backend computes in f32, and refuses an explicit `f16`). The GPU device is one per
/// process, so its precision is the first caller's; a later call that asks for another fails.
#[cfg(not(target_family = "wasm"))]
pub fn open_with(backend: Backend, precision: Precision) -> Result<Device> {
    match backend {
        Backend::Cpu if precision == Precision::F16 => {
            Err(Error::invalid("f16 compute is for the GPU backend (wgpu); the CPU backend computes in f32"))
        }
        Backend::Cpu => cpu(),
        Backend::Wgpu => wgpu_native(precision),
        Backend::Auto => open_with(resolve_auto(), precision),
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
fn wgpu_native(precision: Precision) -> Result<Device> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    let device = DEVICE
        .get_or_init(|| {
            let mut device = Device::wgpu_options().init().map_err(|e| {
                format!("no usable GPU adapter through wgpu ({e}); on a machine without a GPU install a Vulkan driver such as Mesa's llvmpipe, or use --backend cpu")
            })?;
            configure(&mut device, precision, hardware_gpu()).map_err(|e| e.to_string())?;
            Ok(device)
        })
        .clone()
        .map_err(Error::NoGpu)?;
    let opened = self::precision(&device);
    match precision {
        Precision::Auto => Ok(device),
        wanted if wanted == opened => Ok(device),
        wanted => Err(Error::Device(format!(
            "this process's GPU device computes in {opened}; it cannot also compute in {wanted}"
        ))),
    }
}

#[cfg(all(not(feature = "wgpu"), not(target_family = "wasm")))]
fn wgpu_native(_precision: Precision) -> Result<Device> {
    Err(Error::Unsupported("this build has no wgpu backend (enable the `wgpu` feature)".into()))
}

/// Browser: initialise WebGPU once (async), the only way the browser allows, in `precision`
/// (`auto`: f16 where the adapter has `shader-f16`; a software adapter such as SwiftShader has
/// not).
#[cfg(all(feature = "wgpu", target_family = "wasm"))]
pub async fn webgpu(precision: Precision) -> Result<Device> {
    let mut device =
        Device::wgpu_options().init_async().await.map_err(|e| Error::NoGpu(format!("WebGPU is not available: {e}")))?;
    configure(&mut device, precision, true)?;
    Ok(device)
}

/// A web build without WebGPU (the CPU fallback's modules: `threads`, `cpu-relaxed`).
#[cfg(all(not(feature = "wgpu"), target_family = "wasm"))]
pub async fn webgpu(_precision: Precision) -> Result<Device> {
    Err(Error::Unsupported("this module has no WebGPU backend (it is one of the CPU fallback's modules)".into()))
}

/// Read a tensor back to the host as `f32`: the one way results leave the device. In the
/// browser it waits without blocking the page; natively (and in the CPU-only web modules)
/// [`block_on`] drives it.
pub async fn read<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| Error::Device(format!("reading a result back failed: {e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a result back failed: {e:?}")))
}

/// Wait until `t` has been computed, reading back one value of it: where a stage ends, so that
/// its time is its own (the GPU backends queue work and run it later).
pub async fn settle<const D: usize>(t: &burn::tensor::Tensor<D>) -> Result<()> {
    if t.shape().num_elements() == 0 {
        return Ok(());
    }
    read(t.clone().slice(std::array::from_fn::<_, D, _>(|_| 0..1))).await.map(drop)
}

/// Run one of the core's async calls to its end on this thread. Natively this blocks; in a web
/// build it succeeds where the work completes at once (the CPU backend, whose reads are
/// immediate: the threads module runs the core this way on a pool thread), and says so
/// otherwise instead of panicking.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    burn::tensor::try_read_sync(future).unwrap_or_else(|| {
        Err(Error::Device("this result is not ready without waiting: on WebGPU use the async call".into()))
    })
}
