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

/// What the GPU device was granted (WebGPU's `GPUSupportedLimits` and features, as the device
/// reports them once open): the sizes that the chunked passes are planned from (see
/// [`buffer_budget`]). burn's runtime asks the adapter for its own maximums; a browser or a
/// test may grant less, down to WebGPU's defaults ([`GpuLimits::WEBGPU_DEFAULT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuLimits {
    /// The most bytes one storage buffer binding (one tensor, for a kernel) may span.
    pub max_storage_buffer_binding_size: u64,
    /// The most bytes one buffer may hold.
    pub max_buffer_size: u64,
    /// The most bytes of workgroup memory one kernel may use.
    pub max_compute_workgroup_storage_size: u32,
    /// Whether the device has `shader-f16`.
    pub shader_f16: bool,
}

impl GpuLimits {
    /// WebGPU's defaults, which every adapter grants: 128 MiB per binding, 256 MiB per buffer,
    /// 16 KiB of workgroup memory.
    pub const WEBGPU_DEFAULT: GpuLimits = GpuLimits {
        max_storage_buffer_binding_size: 128 << 20,
        max_buffer_size: 256 << 20,
        max_compute_workgroup_storage_size: 16 << 10,
        shader_f16: false,
    };

    /// The largest buffer one tensor may live in: one binding within one buffer (burn's
    /// allocator caps its pages there, and refuses a tensor beyond it).
    pub fn largest_buffer(&self) -> u64 {
        self.max_storage_buffer_binding_size.min(self.max_buffer_size)
    }

    /// The most bytes one intermediate of a chunked pass may take: half the largest buffer
    /// (so that an intermediate beside its inputs never nears the limit), at most 256 MiB
    /// (an attention chunk holds three at once: its scores, their bias and their softmax).
    pub fn intermediate_bytes(&self) -> usize {
        usize::try_from(self.largest_buffer() / 2).unwrap_or(usize::MAX).min(256 << 20)
    }
}

/// The limits of this process's GPU device, once it is open.
static GPU_LIMITS: std::sync::OnceLock<GpuLimits> = std::sync::OnceLock::new();

/// The limits the GPU device was granted; `None` before a GPU device is open (or without one).
pub fn gpu_limits() -> Option<GpuLimits> {
    GPU_LIMITS.get().copied()
}

#[cfg(feature = "wgpu")]
fn record_limits(setup: &burn::tensor::wgpu::WgpuSetup) {
    let limits = setup.device.limits();
    let _ = GPU_LIMITS.set(GpuLimits {
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        shader_f16: setup.device.features().contains(burn::tensor::wgpu::wgpu::Features::SHADER_F16),
    });
}

/// The most bytes one intermediate of a chunked pass (attention scores, an embedding table's
/// block) may take on `device`: on the GPU, [`GpuLimits::intermediate_bytes`] of the device's
/// limits (WebGPU's defaults until they are read); `None` on the CPU backend, which has no
/// buffer limit and keeps its own chunking.
pub fn buffer_budget(device: &Device) -> Option<usize> {
    on_gpu(device).then(|| gpu_limits().unwrap_or(GpuLimits::WEBGPU_DEFAULT).intermediate_bytes())
}

/// The largest buffer one tensor may live in on `device`: on the GPU
/// [`GpuLimits::largest_buffer`] of the device's limits (WebGPU's defaults until they are read);
/// `None` on the CPU backend.
pub fn largest_buffer(device: &Device) -> Option<usize> {
    on_gpu(device).then(|| {
        let limits = gpu_limits().unwrap_or(GpuLimits::WEBGPU_DEFAULT);
        usize::try_from(limits.largest_buffer()).unwrap_or(usize::MAX)
    })
}

#[cfg(feature = "wgpu")]
fn on_gpu(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_))
}

#[cfg(not(feature = "wgpu"))]
fn on_gpu(_device: &Device) -> bool {
    false
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
            let (mut device, setup) = Device::wgpu_options().init_with_setup().map_err(|e| {
                format!("no usable GPU adapter through wgpu ({e}); on a machine without a GPU install a Vulkan driver such as Mesa's llvmpipe, or use --backend cpu")
            })?;
            record_limits(&setup);
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
    let setup = browser_setup(precision).await?;
    record_limits(&setup);
    let mut device = Device::wgpu_options()
        .setup(setup)
        .init()
        .map_err(|e| Error::NoGpu(format!("WebGPU is not available: {e}")))?;
    configure(&mut device, precision, true)?;
    Ok(device)
}

/// The most bytes one buffer of ours needs: 512 MiB, the stitched scores of one segmentation
/// (`segment::slide::MAX_SCORE_VALUES` is this many bytes of f32). Everything else is planned
/// in chunks of at most 256 MiB ([`GpuLimits::intermediate_bytes`]); a token table larger than
/// that is uploaded in blocks of rows.
pub const LARGEST_BUFFER_NEEDED: u64 = 512 << 20;

/// The limits to ask of an adapter that offers `offered`: its own, but no more buffer than
/// [`LARGEST_BUFFER_NEEDED`]. The rest stays the adapter's: burn's runtime sizes its workgroups
/// and dispatches from the adapter's limits, so the device must have them.
#[cfg(feature = "wgpu")]
pub fn wanted_limits(offered: &burn::tensor::wgpu::wgpu::Limits) -> burn::tensor::wgpu::wgpu::Limits {
    let mut wanted = offered.clone();
    wanted.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size.min(LARGEST_BUFFER_NEEDED);
    wanted.max_buffer_size = offered.max_buffer_size.min(LARGEST_BUFFER_NEEDED);
    wanted
}

/// The features to ask of an adapter that offers `offered`: its own (burn's runtime picks
/// its kernels from them), but not mappable primary buffers, which WebGPU does not have, and
/// not `shader-f16` where `precision` is f32.
#[cfg(feature = "wgpu")]
pub fn wanted_features(
    offered: burn::tensor::wgpu::wgpu::Features,
    precision: Precision,
) -> burn::tensor::wgpu::wgpu::Features {
    use burn::tensor::wgpu::wgpu::Features;
    let mut unwanted = Features::MAPPABLE_PRIMARY_BUFFERS;
    if precision == Precision::F32 {
        unwanted |= Features::SHADER_F16;
    }
    offered.difference(unwanted)
}

/// The browser's WebGPU adapter (high performance preferred) and a device with
/// [`wanted_limits`] and the adapter's features, as burn's runtime would ask for them
/// (mappable primary buffers aside, which WebGPU does not have), less `shader-f16` when
/// `precision` is f32 and nothing will compute in half precision.
#[cfg(all(feature = "wgpu", target_family = "wasm"))]
async fn browser_setup(precision: Precision) -> Result<burn::tensor::wgpu::WgpuSetup> {
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let options =
        wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
    let adapter = instance
        .request_adapter(&options)
        .await
        .map_err(|e| Error::NoGpu(format!("WebGPU is not available: no adapter ({e})")))?;
    let descriptor = wgpu::DeviceDescriptor {
        label: Some("wordmask"),
        required_features: wanted_features(adapter.features(), precision),
        required_limits: wanted_limits(&adapter.limits()),
        memory_hints: wgpu::MemoryHints::MemoryUsage,
        ..Default::default()
    };
    let (device, queue) = adapter
        .request_device(&descriptor)
        .await
        .map_err(|e| Error::NoGpu(format!("WebGPU is not available: the adapter refused a device ({e})")))?;
    Ok(burn::tensor::wgpu::WgpuSetup { instance, adapter, device, queue, backend: wgpu::Backend::BrowserWebGpu })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A device asks an adapter for no more buffer than the largest one we make (512 MiB of
    /// scores), and for everything else the adapter offers; an adapter that offers less keeps
    /// its own.
    #[cfg(feature = "wgpu")]
    #[test]
    fn a_device_asks_for_what_is_needed() {
        use burn::tensor::wgpu::wgpu::Limits;
        let large = Limits {
            max_storage_buffer_binding_size: 4 << 30,
            max_buffer_size: 8 << 30,
            max_compute_workgroup_storage_size: 32 << 10,
            ..Limits::defaults()
        };
        let wanted = wanted_limits(&large);
        assert_eq!(wanted.max_storage_buffer_binding_size, 512 << 20);
        assert_eq!(wanted.max_buffer_size, 512 << 20);
        assert_eq!(wanted.max_compute_workgroup_storage_size, 32 << 10);
        let small = Limits::defaults();
        assert_eq!(wanted_limits(&small).max_storage_buffer_binding_size, 128 << 20);
        assert_eq!(wanted_limits(&small).max_buffer_size, 256 << 20);
    }

    /// An f32 device does without `shader-f16`; `auto` and `f16` keep it where it is offered.
    #[cfg(feature = "wgpu")]
    #[test]
    fn f16_is_asked_for_only_where_it_may_be_used() {
        use burn::tensor::wgpu::wgpu::Features;
        let offered = Features::SHADER_F16 | Features::MAPPABLE_PRIMARY_BUFFERS | Features::TIMESTAMP_QUERY;
        assert_eq!(wanted_features(offered, Precision::F32), Features::TIMESTAMP_QUERY);
        for precision in [Precision::Auto, Precision::F16] {
            assert_eq!(wanted_features(offered, precision), Features::SHADER_F16 | Features::TIMESTAMP_QUERY);
        }
        assert_eq!(wanted_features(Features::empty(), Precision::Auto), Features::empty());
    }

    /// Intermediates take half the largest buffer, at most 256 MiB; the CPU backend has no
    /// budget.
    #[test]
    fn budgets_follow_the_limits() {
        assert_eq!(GpuLimits::WEBGPU_DEFAULT.intermediate_bytes(), 64 << 20);
        let wide = GpuLimits { max_storage_buffer_binding_size: 1 << 30, ..GpuLimits::WEBGPU_DEFAULT };
        assert_eq!(wide.largest_buffer(), 256 << 20, "one binding within one buffer");
        assert_eq!(wide.intermediate_bytes(), 128 << 20);
        let huge = GpuLimits { max_storage_buffer_binding_size: 4 << 30, max_buffer_size: 4 << 30, ..wide };
        assert_eq!(huge.intermediate_bytes(), 256 << 20);
        #[cfg(feature = "cpu")]
        assert_eq!(buffer_budget(&Device::flex()), None);
    }
}
