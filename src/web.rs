//! Browser bindings (wasm32, feature `web`): a thin layer over [`crate::segment`]. Bytes and
//! plain data in, plain values out; every error becomes a JS `Error` with the core's message,
//! and nothing here panics.

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::Error;
use crate::checkpoint::{ByteSource, Checkpoint};
use crate::labels;
use crate::preprocess::RgbImage;
use crate::segment::point::{ClassEmbeddings, EncodedImage, MaskNamer, Naming, Prompt, PromptModel, Vocabulary};
use crate::segment::{EmbeddingCache, LabelMap, LabelShare, Model, Settings};

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

/// The CPU fallback's thread pool (the `threads` module only): `initThreadPool(n)` starts `n`
/// Web Workers sharing this module's memory, which the CPU kernels then spread over. Call it
/// once, in a worker of a cross-origin isolated page, before `WordMask.create("cpu")`.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the CPU kernels spread over: the pool's size in the `threads` module once
/// `initThreadPool` has run, 1 otherwise.
#[wasm_bindgen]
pub fn threads() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// `f()` on one of the pool's threads in the `threads` module, this worker waiting: every
/// parallel loop inside then splits its work among the pool's threads, the one running `f`
/// included, instead of this worker handing each loop to the pool and waiting for it (about 5 %
/// of the 2-thread image tower's time). Directly elsewhere.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "threads")]
    return rayon::scope(|_| f());
    #[cfg(not(feature = "threads"))]
    f()
}

/// The label grammar of the CLI (commas or newlines between classes, `|` between synonyms):
/// `[{name, synonyms}]`, or an error that names the problem.
#[wasm_bindgen(js_name = parseLabels)]
pub fn parse_labels(text: &str) -> Result<JsValue, JsValue> {
    to_js(&labels::parse(text).map_err(js_error)?)
}

/// The compute device of this page (created once) and, once loaded, the words model with its
/// cache of label embeddings, and the Segment Anything model of the Point mode with the
/// current image's encoding.
#[wasm_bindgen]
pub struct WordMask {
    device: Device,
    backend: String,
    model: Option<Model>,
    cache: EmbeddingCache,
    sam: Option<PromptModel>,
    /// The image the Point mode works on: its pixels (for naming), encoding and id.
    point_image: Option<(RgbImage, EncodedImage, u64)>,
    images_encoded: u64,
    namer: MaskNamer,
    /// Open-Vocabulary SAM's class embeddings for the current words (or its own classifier).
    classes: Option<ClassEmbeddings>,
}

/// One prompt's answer: the mask (`Uint8Array`, 1 inside), its predicted IoU (Segment Anything)
/// and its name: from Open-Vocabulary SAM itself, or, when words and a CLIP model are there,
/// from the CLIP model.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptResult {
    width: usize,
    height: usize,
    #[serde(with = "serde_bytes_vec")]
    mask: Vec<u8>,
    iou: Option<f32>,
    area: usize,
    #[serde(flatten)]
    naming: Option<Naming>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SegmentResult {
    width: usize,
    height: usize,
    labels: Vec<LabelShare>,
    unlabelled: f32,
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
    /// `precision` (WebGPU only): `"auto"` (the default: f16 where the adapter has
    /// `shader-f16`), `"f32"` or `"f16"`.
    pub async fn create(backend: &str, precision: Option<String>) -> Result<WordMask, JsValue> {
        let precision: crate::device::Precision = precision.as_deref().unwrap_or("auto").parse().map_err(js_error)?;
        let (device, backend) = match backend {
            "cpu" => (crate::device::cpu().map_err(js_error)?, "cpu".to_string()),
            "webgpu" | "wgpu" => match crate::device::webgpu(precision).await {
                Ok(d) => (d, "webgpu".to_string()),
                // An adapter without what was asked of it (f16) is the caller's to hear about.
                Err(e @ Error::InvalidInput(_)) => return Err(js_error(e)),
                Err(e) => {
                    web_sys_warn(&format!("{e}; using the CPU backend"));
                    (crate::device::cpu().map_err(js_error)?, "cpu".to_string())
                }
            },
            other => return Err(js_error(Error::invalid(format!("backend must be webgpu or cpu, got {other}")))),
        };
        Ok(WordMask {
            device,
            backend,
            model: None,
            cache: EmbeddingCache::default(),
            sam: None,
            point_image: None,
            images_encoded: 0,
            namer: MaskNamer::default(),
            classes: None,
        })
    }

    /// The backend in use: "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// What the device computes in: "f32" or "f16".
    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        crate::device::precision(&self.device).to_string()
    }

    /// The `model_type` of a `config.json` text ("" when absent).
    #[wasm_bindgen(js_name = modelType)]
    pub fn model_type(config_json: &str) -> Result<String, JsValue> {
        crate::network::model_type(config_json).map_err(js_error)
    }

    /// Load a Segment Anything checkpoint for the Point mode (beside the words model).
    #[wasm_bindgen(js_name = loadSam)]
    pub fn load_sam(
        &mut self,
        config_json: &str,
        weights: js_sys::Uint8Array,
        weights_name: &str,
        preprocessor_json: Option<String>,
    ) -> Result<(), JsValue> {
        let sam = with_checkpoint(weights, weights_name, |checkpoint| {
            PromptModel::from_checkpoint(config_json, checkpoint, preprocessor_json.as_deref(), &self.device)
        })
        .map_err(js_error)?;
        self.sam = Some(sam);
        self.point_image = None;
        self.classes = None;
        Ok(())
    }

    /// The heavy pass of the Point mode, once per image: every later `prompt` uses it.
    pub async fn encode(&mut self, rgba: &[u8], width: usize, height: usize) -> Result<(), JsValue> {
        let sam = self.sam.as_ref().ok_or_else(|| js_error(Error::invalid("no Segment Anything model is loaded")))?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let encoded = on_pool(|| sam.encode(&image)).map_err(js_error)?;
        encoded.wait_async().await.map_err(js_error)?;
        self.images_encoded += 1;
        self.point_image = Some((image, encoded, self.images_encoded));
        Ok(())
    }

    /// One prompt (`{points: [{x, y, positive}], box: [x0, y0, x1, y1]}`, image pixels) on the
    /// encoded image: `{width, height, mask, iou, area}`, plus `label`, `probability` and
    /// `runnerUp` when `labels` are given and the words model is a CLIP checkpoint.
    pub async fn prompt(&mut self, prompt: JsValue, labels: &str, options: JsValue) -> Result<JsValue, JsValue> {
        let prompt: Prompt =
            serde_wasm_bindgen::from_value(prompt).map_err(|e| js_error(Error::invalid(format!("prompt: {e}"))))?;
        let sam = self.sam.as_ref().ok_or_else(|| js_error(Error::invalid("no Segment Anything model is loaded")))?;
        let (image, encoded, image_id) =
            self.point_image.as_ref().ok_or_else(|| js_error(Error::invalid("encode an image first")))?;
        let mask = sam.segment_async(encoded, &prompt).await.map_err(js_error)?;
        let words = labels.trim();
        let naming = match (&self.model, words) {
            _ if sam.names_masks() => {
                let vocabulary = if !words.is_empty() {
                    Some(Vocabulary::Typed(labels::parse(words).map_err(js_error)?))
                } else {
                    sam.released_vocabulary().map(|_| Vocabulary::Released)
                };
                match vocabulary {
                    Some(vocabulary) => {
                        let classes = sam.prepare_classes(&vocabulary, &mut self.classes).map_err(js_error)?;
                        Some(sam.name_async(encoded, &mask, classes).await.map_err(js_error)?)
                    }
                    None => None,
                }
            }
            (Some(model), words) if !words.is_empty() && mask.area > 0 => {
                let labels = labels::parse(words).map_err(js_error)?;
                let settings = settings(options)?;
                let named =
                    self.namer.name_mask_async(model, *image_id, image, &labels, &settings, &mut self.cache, &mask);
                Some(named.await.map_err(js_error)?)
            }
            _ => None,
        };
        let (width, height, iou, area) = (mask.width, mask.height, mask.iou, mask.area);
        to_js(&PromptResult { width, height, mask: mask.mask, iou, area, naming })
    }

    /// Load a checkpoint from its `config.json` text and weight bytes. A safetensors file stays
    /// where it is: each tensor is copied in on its own, so the wasm heap never holds the file.
    pub fn load(
        &mut self,
        config_json: &str,
        weights: js_sys::Uint8Array,
        weights_name: &str,
        preprocessor_json: Option<String>,
    ) -> Result<(), JsValue> {
        let model = with_checkpoint(weights, weights_name, |checkpoint| {
            Model::from_checkpoint(config_json, checkpoint, preprocessor_json.as_deref(), &self.device)
        })
        .map_err(js_error)?;
        self.model = Some(model);
        self.cache = EmbeddingCache::default();
        Ok(())
    }

    fn model(&self) -> Result<&Model, JsValue> {
        self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))
    }

    /// Text embeddings computed since the last call, for the page to keep across visits:
    /// `[{templates, name, values: Float32Array}]`.
    #[wasm_bindgen(js_name = takeTextEmbeddings)]
    pub async fn take_text_embeddings(&mut self) -> Result<js_sys::Array, JsValue> {
        let out = js_sys::Array::new();
        for (templates, name, row) in self.cache.take_new() {
            let values = crate::device::to_vec_async(row).await.map_err(js_error)?;
            let entry = js_sys::Object::new();
            js_sys::Reflect::set(&entry, &"templates".into(), &templates.into())?;
            js_sys::Reflect::set(&entry, &"name".into(), &name.into())?;
            js_sys::Reflect::set(&entry, &"values".into(), &js_sys::Float32Array::from(&values[..]))?;
            out.push(&entry);
        }
        Ok(out)
    }

    /// Text embeddings kept from an earlier visit with this model (as `takeTextEmbeddings`
    /// gave them); rows of another width than the model's are skipped. Returns how many
    /// were taken.
    #[wasm_bindgen(js_name = addTextEmbeddings)]
    pub fn add_text_embeddings(&mut self, entries: js_sys::Array) -> Result<u32, JsValue> {
        let model = self.model()?;
        let (device, width) = (model.device(), model.network().text_width());
        let mut taken = Vec::new();
        for entry in entries.iter() {
            let field = |name: &str| js_sys::Reflect::get(&entry, &name.into()).ok();
            let (Some(templates), Some(name)) =
                (field("templates").and_then(|v| v.as_string()), field("name").and_then(|v| v.as_string()))
            else {
                continue;
            };
            let Some(values) = field("values").and_then(|v| v.dyn_into::<js_sys::Float32Array>().ok()) else {
                continue;
            };
            if values.length() as usize == width {
                let row = burn::tensor::Tensor::<2>::from_data(
                    burn::tensor::TensorData::new(values.to_vec(), [1, width]),
                    &device,
                );
                taken.push((templates, name, row));
            }
        }
        let count = taken.len() as u32;
        for (templates, name, row) in taken {
            self.cache.insert(templates, name, row);
        }
        Ok(count)
    }

    /// Names the text encoder has embedded since the model loaded (what the cache saved shows
    /// as names not embedded).
    #[wasm_bindgen(getter, js_name = namesEmbedded)]
    pub fn names_embedded(&self) -> u32 {
        self.cache.names_embedded as u32
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

    /// The words model's image embedding of normalised pixels, `[1, 3, size, size]` in CHW
    /// order, read back: what `tools/peer_bench.mjs` times against onnxruntime-web on the same
    /// checkpoint.
    #[wasm_bindgen(js_name = embedPixels)]
    pub async fn embed_pixels(&self, pixels: Vec<f32>, size: usize) -> Result<Vec<f32>, JsValue> {
        if size == 0 || pixels.len() != 3 * size * size {
            return Err(js_error(Error::invalid(format!(
                "embedPixels takes 3 x {size} x {size} floats, got {}",
                pixels.len()
            ))));
        }
        let model = self.model()?;
        let device = model.device();
        let tensor =
            burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(pixels, [1, 3, size, size]), &device);
        let embedding = on_pool(|| model.network().embed_image(tensor)).map_err(js_error)?;
        crate::device::to_vec_async(embedding.embeds).await.map_err(js_error)
    }

    /// Segmentation of an RGBA image with the model's engine: `{width, height, labels: [{label,
    /// share}], unlabelled, labelMap, confidence: Uint8Array}` with the CLI's label-map values:
    /// `labelMap` is a `Uint8Array` for up to 255 labels and a `Uint16Array` above.
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
        let settings = settings(options)?;
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let model = self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))?;
        // The threads module runs on the CPU alone, where reading back does not wait: the
        // whole segmentation runs on the pool.
        #[cfg(feature = "threads")]
        let seg = on_pool(|| crate::segment::segment(model, &image, &labels, &settings, &mut self.cache));
        #[cfg(not(feature = "threads"))]
        let seg = crate::segment::segment_async(model, &image, &labels, &settings, &mut self.cache).await;
        let seg = seg.map_err(js_error)?;
        let (shares, unlabelled) = seg.shares();
        let result = to_js(&SegmentResult { width, height, labels: shares, unlabelled, confidence: seg.confidence })?;
        let label_map: JsValue = match &seg.label_map {
            LabelMap::Narrow(v) => js_sys::Uint8Array::from(&v[..]).into(),
            LabelMap::Wide(v) => js_sys::Uint16Array::from(&v[..]).into(),
        };
        js_sys::Reflect::set(&result, &"labelMap".into(), &label_map)?;
        Ok(result)
    }
}

/// The page's weights file, read one range at a time.
struct JsBytes(js_sys::Uint8Array);

impl ByteSource for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }

    fn read(&self, start: usize, end: usize) -> Vec<u8> {
        self.0.subarray(start as u32, end as u32).to_vec()
    }
}

/// `load` over the checkpoint in `weights`: a safetensors file is read in place, tensor by
/// tensor; a PyTorch archive is copied in whole (its zip index wants the bytes at hand).
fn with_checkpoint<T>(
    weights: js_sys::Uint8Array,
    weights_name: &str,
    load: impl FnOnce(&Checkpoint<'_>) -> crate::Result<T>,
) -> crate::Result<T> {
    let first = weights.subarray(0, weights.length().min(9)).to_vec();
    if Checkpoint::is_safetensors(&first) {
        load(&Checkpoint::from_source(Box::new(JsBytes(weights)), weights_name)?)
    } else {
        let bytes = weights.to_vec();
        load(&Checkpoint::from_bytes(&bytes, weights_name)?)
    }
}

/// The page's options object as the core's settings (unset = the engine's defaults).
fn settings(options: JsValue) -> Result<Settings, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(Settings::default());
    }
    serde_wasm_bindgen::from_value(options).map_err(|e| js_error(Error::invalid(format!("options: {e}"))))
}

fn web_sys_warn(message: &str) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(warn) = console.as_ref().and_then(|c| js_sys::Reflect::get(c, &"warn".into()).ok()) {
        if let Ok(f) = warn.dyn_into::<js_sys::Function>() {
            let _ = f.call1(console.as_ref().unwrap_or(&JsValue::NULL), &message.into());
        }
    }
}
