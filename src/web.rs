//! Browser bindings (wasm32, feature `web`): a thin layer over [`crate::model::Model`]. Bytes
//! and plain data in, plain values out; every error becomes a JS `Error` with the core's
//! message, and nothing here panics.

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::Error;
use crate::dense::pipeline::EmbeddingCache;
use crate::dense::result::{LabelShare, with_background};
use crate::device::to_vec_async;
use crate::labels;
use crate::loader::ComputeDtype;
use crate::model::{ImageSize, Model, SINGLE_TEMPLATE};
use crate::preprocess::RgbImage;
use crate::segment::{Settings, finish, scores};

fn js_error(e: Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
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

/// Options of `segment`: the CLI's settings (camelCase) plus threshold and background words;
/// unset ones take the engine's defaults.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SegmentOptions {
    #[serde(flatten)]
    settings: Settings,
    threshold: Option<f32>,
    background: Option<Vec<String>>,
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
    /// Top probability per pixel, 0..=255.
    #[serde(with = "serde_bytes_vec")]
    confidence: Vec<u8>,
}

/// Serialise the label map as a `Uint8Array` rather than an array of numbers.
mod serde_bytes_vec {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
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
        let model = Model::from_bytes(
            config_json,
            weights,
            weights_name,
            preprocessor_json.as_deref(),
            &self.device,
            ComputeDtype::F32,
        )
        .map_err(js_error)?;
        self.model = Some(model);
        self.cache = EmbeddingCache::default();
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

    /// Segmentation of an RGBA image with the model's engine: `{width, height, labels: [{label,
    /// share}], unlabelled, labelMap: Uint8Array, confidence}` with the CLI's label-map values.
    /// `options` may set templates, shortSide, window (0 = whole image), stride, threshold and
    /// background (words), for the dense engine method and refine ("pamr"), for GroupViT scoring
    /// ("repository" or "transformers"); unset options
    /// take the engine's defaults.
    pub async fn segment(
        &mut self,
        rgba: &[u8],
        width: usize,
        height: usize,
        labels: &str,
        options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let opts: SegmentOptions = if options.is_undefined() || options.is_null() {
            SegmentOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| js_error(Error::invalid(format!("segment options: {e}"))))?
        };
        let user_labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let model = self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))?;
        let engine = model.engine();
        let threshold = match opts.threshold {
            Some(t) if !(0.0..=1.0).contains(&t) => {
                return Err(js_error(Error::invalid(format!("threshold must be in [0, 1], got {t}"))));
            }
            Some(t) => t,
            None => opts.settings.default_threshold(engine).map_err(js_error)?,
        };
        let engine_opts = opts.settings.options(engine, threshold).map_err(js_error)?;
        let background = opts.background.clone().unwrap_or_else(|| Settings::default_background(engine));
        let all = with_background(&user_labels, &background);
        let classes = self.cache.get(model, &all, engine_opts.templates()).map_err(js_error)?;
        let has_words = !background.is_empty();
        let scores = scores(model, &image, &classes, has_words, &engine_opts).map_err(js_error)?;
        let scores = to_vec_async(scores).await.map_err(js_error)?;
        let seg = finish(&image, &user_labels, has_words, &engine_opts, scores, threshold);
        let (shares, unlabelled) = seg.shares();
        let confidence = seg.confidence();
        let result = SegmentResult { width, height, labels: shares, unlabelled, label_map: seg.label_map, confidence };
        serde_wasm_bindgen::to_value(&result).map_err(|e| js_sys::Error::new(&e.to_string()).into())
    }

    /// The loaded model's engine: "dense" (CLIP) or "groupvit"; empty before a model loads.
    #[wasm_bindgen(getter)]
    pub fn engine(&self) -> String {
        self.model.as_ref().map(|m| m.engine().to_string()).unwrap_or_default()
    }

    /// Zero-shot label probabilities for an RGBA image (e.g. from a canvas).
    pub async fn classify(&self, rgba: &[u8], width: usize, height: usize, labels: &str) -> Result<JsValue, JsValue> {
        let model = self.model()?;
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let features = model.embed_image(&image, ImageSize::default()).map_err(js_error)?;
        let text = model.embed_labels(&labels, SINGLE_TEMPLATE).map_err(js_error)?;
        let probs = to_vec_async(model.classify(features.embeds, text)).await.map_err(js_error)?;
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
