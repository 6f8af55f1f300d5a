//! Browser bindings (wasm32, feature `web`): a thin layer over [`crate::segment`]. Bytes and
//! plain data in, plain values out; every error becomes a JS `Error` with the core's message,
//! and nothing here panics.

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::Error;
use crate::labels;
use crate::preprocess::RgbImage;
use crate::segment::{EmbeddingCache, LabelShare, Model, Settings, segment_async};

fn js_error(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    // Maps as plain objects, so the page reads `defaults.threshold`, not `defaults.get(...)`.
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).map_err(|e| js_sys::Error::new(&e.to_string()).into())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The label grammar of the CLI (commas or newlines between classes, `|` between synonyms):
/// `[{name, synonyms}]`, or an error that names the problem.
#[wasm_bindgen(js_name = parseLabels)]
pub fn parse_labels(text: &str) -> Result<JsValue, JsValue> {
    to_js(&labels::parse(text).map_err(js_error)?)
}

/// The compute device of this page (created once) and, once loaded, the model with its cache
/// of label embeddings.
#[wasm_bindgen]
pub struct WordMask {
    device: Device,
    backend: String,
    model: Option<Model>,
    cache: EmbeddingCache,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SegmentResult {
    width: usize,
    height: usize,
    labels: Vec<LabelShare>,
    unlabelled: f32,
    #[serde(with = "serde_bytes_vec")]
    label_map: Vec<u8>,
    /// Top score per pixel, 0..=255.
    #[serde(with = "serde_bytes_vec")]
    confidence: Vec<u8>,
}

/// Serialise the label map as a `Uint8Array` rather than an array of numbers.
mod serde_bytes_vec {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

#[wasm_bindgen]
impl WordMask {
    /// Open the device: `"webgpu"` (falls back to the CPU if WebGPU is missing) or `"cpu"`.
    pub async fn create(backend: &str) -> Result<WordMask, JsValue> {
        let (device, backend) = match backend {
            "cpu" => (crate::device::cpu().map_err(js_error)?, "cpu".to_string()),
            "webgpu" | "wgpu" => match crate::device::webgpu().await {
                Ok(d) => (d, "webgpu".to_string()),
                Err(e) => {
                    web_sys_warn(&format!("{e}; using the CPU backend"));
                    (crate::device::cpu().map_err(js_error)?, "cpu".to_string())
                }
            },
            other => return Err(js_error(Error::invalid(format!("backend must be webgpu or cpu, got {other}")))),
        };
        Ok(WordMask { device, backend, model: None, cache: EmbeddingCache::default() })
    }

    /// The backend in use: "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Load a checkpoint from its `config.json` text and weight bytes.
    pub fn load(
        &mut self,
        config_json: &str,
        weights: &[u8],
        weights_name: &str,
        preprocessor_json: Option<String>,
    ) -> Result<(), JsValue> {
        let model = Model::from_bytes(config_json, weights, weights_name, preprocessor_json.as_deref(), &self.device)
            .map_err(js_error)?;
        self.model = Some(model);
        self.cache = EmbeddingCache::default();
        Ok(())
    }

    fn model(&self) -> Result<&Model, JsValue> {
        self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))
    }

    /// The loaded model's engine: "dense" (CLIP) or "groupvit"; empty before a model loads.
    #[wasm_bindgen(getter)]
    pub fn engine(&self) -> String {
        self.model.as_ref().map(|m| m.engine().to_string()).unwrap_or_default()
    }

    /// The loaded engine's settings when none are given (`{engine, templates, threshold,
    /// shortSide, window, stride, ...}`), for the page's controls.
    #[wasm_bindgen(getter)]
    pub fn defaults(&self) -> Result<JsValue, JsValue> {
        to_js(&self.model()?.defaults())
    }

    /// Segmentation of an RGBA image with the model's engine: `{width, height, labels: [{label,
    /// share}], unlabelled, labelMap: Uint8Array, confidence}` with the CLI's label-map values.
    /// `options` holds the CLI's settings in camelCase (`templates`, `shortSide`, `window`,
    /// `stride`, `threshold`, `background` (words), `method`, `refine`, `scoring`, ...); unset
    /// ones take the engine's defaults.
    pub async fn segment(
        &mut self,
        rgba: &[u8],
        width: usize,
        height: usize,
        labels: &str,
        options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let settings: Settings = if options.is_undefined() || options.is_null() {
            Settings::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| js_error(Error::invalid(format!("segment options: {e}"))))?
        };
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let model = self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))?;
        let seg = segment_async(model, &image, &labels, &settings, &mut self.cache).await.map_err(js_error)?;
        let (shares, unlabelled) = seg.shares();
        let confidence = seg.confidence();
        to_js(&SegmentResult { width, height, labels: shares, unlabelled, label_map: seg.label_map, confidence })
    }
}

fn web_sys_warn(message: &str) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(warn) = console.as_ref().and_then(|c| js_sys::Reflect::get(c, &"warn".into()).ok()) {
        if let Ok(f) = warn.dyn_into::<js_sys::Function>() {
            let _ = f.call1(console.as_ref().unwrap_or(&JsValue::NULL), &message.into());
        }
    }
}
