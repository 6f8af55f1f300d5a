//! Browser bindings (wasm32, feature `web`): a thin layer over [`crate::model::Model`]. Bytes
//! and plain data in, plain values out; every error becomes a JS `Error` with the core's
//! message, and nothing here panics.

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::device::to_vec_async;
use crate::labels;
use crate::loader::ComputeDtype;
use crate::model::{ImageSize, Model, SINGLE_TEMPLATE};
use crate::preprocess::RgbImage;
use crate::Error;

fn js_error(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The compute device of this page (created once) and, once loaded, the model.
#[wasm_bindgen]
pub struct WordMask {
    device: Device,
    backend: String,
    model: Option<Model>,
}

#[derive(Serialize)]
struct LabelScore {
    label: String,
    probability: f32,
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
        Ok(WordMask { device, backend, model: None })
    }

    /// The backend in use: "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Load a checkpoint from its `config.json` text and weight bytes.
    pub fn load(&mut self, config_json: &str, weights: &[u8], weights_name: &str, preprocessor_json: Option<String>) -> Result<(), JsValue> {
        let model = Model::from_bytes(config_json, weights, weights_name, preprocessor_json.as_deref(), &self.device, ComputeDtype::F32)
            .map_err(js_error)?;
        self.model = Some(model);
        Ok(())
    }

    fn model(&self) -> Result<&Model, JsValue> {
        self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))
    }

    /// L2-normalised text embeddings, rows concatenated.
    #[wasm_bindgen(js_name = embedText)]
    pub async fn embed_text(&self, texts: Vec<String>) -> Result<Vec<f32>, JsValue> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let emb = self.model()?.embed_texts(&refs).map_err(js_error)?;
        to_vec_async(emb).await.map_err(js_error)
    }

    /// Zero-shot label probabilities for an RGBA image (e.g. from a canvas).
    pub async fn classify(&self, rgba: &[u8], width: usize, height: usize, labels: &str) -> Result<JsValue, JsValue> {
        let model = self.model()?;
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let features = model.image_features(&image, ImageSize::default()).map_err(js_error)?;
        let text = model.embed_labels(&labels, SINGLE_TEMPLATE).map_err(js_error)?;
        let probs = to_vec_async(model.clip.classify(features.embeds, text)).await.map_err(js_error)?;
        let scores: Vec<LabelScore> =
            labels.into_iter().zip(probs).map(|(l, p)| LabelScore { label: l.name, probability: p }).collect();
        serde_wasm_bindgen::to_value(&scores).map_err(|e| js_sys::Error::new(&e.to_string()).into())
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
