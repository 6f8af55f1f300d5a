//! Browser bindings (wasm32, feature `web`): a thin layer over [`crate::segment`]. Bytes and
//! plain data in, plain values out; every error becomes a JS `Error` with the core's message
//! and its `code` ([`Error::code`]), and nothing here panics.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::Error;
use crate::checkpoint::{ByteSource, Checkpoint};
use crate::labels;
use crate::preprocess::RgbImage;
use crate::segment::export::{
    COCO_FILE, COCO_RESULTS_FILE, Format, ImageInfo, Labelled, Part, coco, folder_coco, folder_lists, image_objects,
    image_part, objects_label_map,
};
use crate::segment::objects::{Object, RunMask, counts, id_masks, instance_map};
use crate::segment::point::{AutomaticOptions, NameRequest, Naming, Prompt, PromptSession, PromptTimings, WordsNamer};
use crate::segment::refine::region_objects_of;
use crate::segment::refine::{RefineOptions, sharpen};
use crate::segment::temporal::Video;
use crate::segment::{
    EmbeddingCache, Kind, LabelMap, LabelShare, Loaded, Model, Plan, Segmentation, Settings, Timings,
};

/// A JS `Error` with the core's message and, as `code`, the kind of failure (`Error::code`).
fn js_error(e: Error) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    // Setting a property of a fresh Error does not fail.
    let _ = js_sys::Reflect::set(&error, &"code".into(), &e.code().into());
    error.into()
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

/// A call into the core. In the `threads` module it runs on one of the pool's threads, this
/// worker waiting, driven to its end at once (the CPU backend's reads never wait): every
/// parallel loop inside then splits its work among the pool's threads, the one running it
/// included, instead of this worker handing each loop to the pool (about 5 % of the 2-thread
/// image tower's time). Elsewhere it is awaited.
#[cfg(feature = "threads")]
async fn run<T: Send>(call: impl Future<Output = crate::Result<T>> + Send) -> Result<T, JsValue> {
    rayon::scope(|_| crate::device::block_on(call)).map_err(js_error)
}

#[cfg(not(feature = "threads"))]
async fn run<T>(call: impl Future<Output = crate::Result<T>>) -> Result<T, JsValue> {
    call.await.map_err(js_error)
}

/// The label grammar of the CLI (commas or newlines between classes, `|` between synonyms):
/// `[{name, synonyms}]`, or an error that names the problem.
#[wasm_bindgen(js_name = parseLabels)]
pub fn parse_labels(text: &str) -> Result<JsValue, JsValue> {
    to_js(&labels::parse(text).map_err(js_error)?)
}

/// The compute device of this page (created once) and, once loaded, the words model with its
/// cache of label embeddings, and the Point mode's session (a Segment Anything or
/// Open-Vocabulary SAM model with the image it encoded).
#[wasm_bindgen]
pub struct WordMask {
    device: Device,
    backend: String,
    model: Option<Model>,
    cache: EmbeddingCache,
    session: Option<PromptSession>,
    /// What a camera's or a video's frames carry from one to the next (`segmentFrame`).
    video: Option<Video>,
}

/// What a `config.json` is for: `{role: "words" | "prompts", engine, preprocessor}`, where
/// `preprocessor` says whether the checkpoint's `preprocessor_config.json` is read.
#[derive(Serialize)]
struct Description {
    role: &'static str,
    engine: &'static str,
    preprocessor: bool,
}

/// A loaded model: its role and engine, the words engine's defaults, and whether a prompt
/// model names its own masks.
#[derive(Serialize)]
struct LoadedModel {
    role: &'static str,
    engine: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    defaults: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<bool>,
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
    timings: PromptTimings,
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
    engine: &'static str,
    method: String,
    timings: Timings,
}

/// A word and how many objects it has.
#[derive(Serialize)]
struct WordCount {
    label: String,
    count: usize,
}

/// Objects of a result (sharp edges, or every object): the list (`{id, label, class, score,
/// box, area}`), each word's count, and the milliseconds of the image's encoding and of the
/// masks; the map of ids goes beside them as a `Uint16Array` (`instances`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectsResult<'a> {
    objects: &'a [Object],
    counts: Vec<WordCount>,
    encode_ms: f64,
    masks_ms: f64,
}

/// `segment`'s answer for `seg`: `{width, height, labels, unlabelled, confidence, engine,
/// method, timings}` and the `labelMap` (`Uint8Array`, or `Uint16Array` above 255 labels).
fn segment_answer(seg: &Segmentation, plan: Plan, timings: Timings) -> Result<JsValue, JsValue> {
    let (shares, unlabelled) = seg.shares();
    let result = to_js(&SegmentResult {
        width: seg.width,
        height: seg.height,
        labels: shares,
        unlabelled,
        confidence: seg.confidence.clone(),
        engine: plan.engine,
        method: plan.method,
        timings,
    })?;
    let label_map: JsValue = match &seg.label_map {
        LabelMap::Narrow(v) => js_sys::Uint8Array::from(&v[..]).into(),
        LabelMap::Wide(v) => js_sys::Uint16Array::from(&v[..]).into(),
    };
    js_sys::Reflect::set(&result, &"labelMap".into(), &label_map)?;
    Ok(result)
}

/// `result.objects`, `result.counts`, ... and `result.instances` (the id map) on `result`.
fn attach_objects(
    result: &JsValue,
    objects: &[Object],
    counts: Vec<(String, usize)>,
    (width, height): (usize, usize),
    (encode_ms, masks_ms): (f64, f64),
) -> Result<(), JsValue> {
    let counts = counts.into_iter().map(|(label, count)| WordCount { label, count }).collect();
    let part = to_js(&ObjectsResult { objects, counts, encode_ms, masks_ms })?;
    for key in ["objects", "counts", "encodeMs", "masksMs"] {
        js_sys::Reflect::set(result, &key.into(), &js_sys::Reflect::get(&part, &key.into())?)?;
    }
    let ids = instance_map(objects, width, height);
    js_sys::Reflect::set(result, &"instances".into(), &js_sys::Uint16Array::from(&ids[..]).into())?;
    Ok(())
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
        Ok(WordMask { device, backend, model: None, cache: EmbeddingCache::default(), session: None, video: None })
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

    /// What a `config.json` is for, before its weights are fetched: `{role, engine,
    /// preprocessor}`, or an error naming the `model_type`s that are read.
    pub fn describe(config_json: &str) -> Result<JsValue, JsValue> {
        let kind = Kind::of_config(config_json).map_err(js_error)?;
        to_js(&Description { role: kind.role(), engine: kind.engine(), preprocessor: kind.reads_preprocessor() })
    }

    /// Load a checkpoint from its `config.json` text and weight bytes: a words model (replacing
    /// the last one) or a prompt model for the Point mode (beside the words model). A
    /// safetensors file stays where it is: each tensor is copied in on its own, so the wasm heap
    /// never holds the file. Returns `{role, engine, defaults}` for a words model and `{role,
    /// engine, names}` for a prompt model (`names`: it names its own masks).
    pub fn load(
        &mut self,
        config_json: &str,
        weights: js_sys::Uint8Array,
        weights_name: &str,
        preprocessor_json: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let loaded = with_checkpoint(weights, weights_name, |checkpoint| {
            Loaded::from_checkpoint(config_json, checkpoint, preprocessor_json.as_deref(), &self.device)
        })
        .map_err(js_error)?;
        self.install(loaded)
    }

    /// What a `config.json` describes with random weights in place of a checkpoint's, kept as
    /// [`WordMask::load`] keeps a loaded one (and answered the same): a real checkpoint's shapes
    /// without its download, to see what they need of this device (and for timing).
    #[wasm_bindgen(js_name = loadRandom)]
    pub fn load_random(&mut self, config_json: &str) -> Result<JsValue, JsValue> {
        let loaded = Loaded::random(config_json, &self.device).map_err(js_error)?;
        self.install(loaded)
    }

    /// What the GPU device was granted (`{maxStorageBufferBindingSize, maxBufferSize,
    /// maxComputeWorkgroupStorageSize, shaderF16}`), from which the chunked passes are planned;
    /// `null` on the CPU backend.
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> Result<JsValue, JsValue> {
        match crate::device::gpu_limits().filter(|_| self.backend == "webgpu") {
            Some(limits) => to_js(&limits),
            None => Ok(JsValue::NULL),
        }
    }
}

impl WordMask {
    /// Keep a loaded model: a words model replaces the last one, a prompt model goes beside it.
    fn install(&mut self, loaded: Loaded) -> Result<JsValue, JsValue> {
        let answer = match loaded {
            Loaded::Words(model) => {
                let (engine, defaults) = (model.engine(), Some(model.defaults()));
                self.model = Some(model);
                self.cache = EmbeddingCache::default();
                self.video = None;
                LoadedModel { role: "words", engine, defaults, names: None }
            }
            Loaded::Prompts(model) => {
                let (engine, names) = (model.engine(), Some(model.names_masks()));
                self.session = Some(PromptSession::new(model));
                LoadedModel { role: "prompts", engine, defaults: None, names }
            }
        };
        to_js(&answer)
    }
}

#[wasm_bindgen]
impl WordMask {
    /// The heavy pass of the Point mode, once per image: every later `prompt` uses it. Returns
    /// its milliseconds.
    pub async fn encode(&mut self, rgba: &[u8], width: usize, height: usize) -> Result<f64, JsValue> {
        let session = self.session()?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        run(session.encode(image)).await
    }

    fn session(&mut self) -> Result<&mut PromptSession, JsValue> {
        self.session.as_mut().ok_or_else(|| js_error(Error::invalid("no Segment Anything model is loaded")))
    }

    /// One prompt (`{points: [{x, y, positive}], box: [x0, y0, x1, y1]}`, image pixels) on the
    /// encoded image: `{width, height, mask, iou, area, timings}`, plus `label`, `probability`,
    /// `runnerUp` (and `classIndex`) when the mask is named: by the prompt model itself, or by
    /// the words model among `labels`.
    pub async fn prompt(&mut self, prompt: JsValue, labels: &str, options: JsValue) -> Result<JsValue, JsValue> {
        let prompt: Prompt =
            serde_wasm_bindgen::from_value(prompt).map_err(|e| js_error(Error::invalid(format!("prompt: {e}"))))?;
        let labels = match labels.trim() {
            "" => None,
            words => Some(labels::parse(words).map_err(js_error)?),
        };
        let settings = settings(options)?;
        let session =
            self.session.as_mut().ok_or_else(|| js_error(Error::invalid("no Segment Anything model is loaded")))?;
        let words = self.model.as_ref().map(|model| WordsNamer { model, settings: &settings, cache: &mut self.cache });
        let answer = run(session.prompt(&prompt, NameRequest { labels, vocabulary: None, words })).await?;
        let mask = answer.mask;
        to_js(&PromptResult {
            width: mask.width,
            height: mask.height,
            iou: mask.iou,
            area: mask.area,
            mask: mask.mask,
            naming: answer.naming,
            timings: answer.timings,
        })
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
            let values = crate::device::read(row).await.map_err(js_error)?;
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

    /// The loaded words model's engine ("dense", "groupvit", ...); empty before one loads.
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
        let data = burn::tensor::TensorData::new(pixels, [1, 3, size, size]);
        let tensor = burn::tensor::Tensor::<4>::from_data(data, &model.device());
        run(async { crate::device::read(model.network().embed_image(tensor)?.embeds).await }).await
    }

    /// Segmentation of an RGBA image with the model's engine: `{width, height, labels: [{label,
    /// share}], unlabelled, labelMap, confidence: Uint8Array, engine, method, timings}` with the
    /// CLI's label-map values: `labelMap` is a `Uint8Array` for up to 255 labels and a
    /// `Uint16Array` above; `timings` has each stage's milliseconds (`text`, `image`, `scores`,
    /// `finish`). `options` holds the CLI's settings in camelCase (`templates`, `shortSide`,
    /// `window`, `stride`, `threshold`, `background` (words), `method`, `refine`, `scoring`,
    /// ...); unset ones take the engine's defaults. `sharp`: sharp edges with the Segment
    /// Anything model loaded beside the words model — the label map follows its masks, and the
    /// result also holds `objects`, `counts`, `instances`, `encodeMs` and `masksMs`.
    pub async fn segment(
        &mut self,
        rgba: &[u8],
        width: usize,
        height: usize,
        labels: &str,
        options: JsValue,
        sharp: Option<bool>,
    ) -> Result<JsValue, JsValue> {
        let settings = settings(options)?;
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let model = self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))?;
        if sharp == Some(true) && self.session.is_none() {
            return Err(js_error(Error::invalid(
                "sharp edges need a Segment Anything model loaded beside the words model: load one in Point mode",
            )));
        }
        let out = run(crate::segment::segment(model, &image, &labels, &settings, &mut self.cache)).await?;
        let mut seg = out.segmentation;
        let sharpened = match (sharp, self.session.as_mut()) {
            (Some(true), Some(session)) => {
                Some(run(sharpen(&mut seg, &image, session, &RefineOptions::default())).await?)
            }
            _ => None,
        };
        let result = segment_answer(&seg, out.plan, out.timings)?;
        if let Some((objects, encode_ms, masks_ms)) = &sharpened {
            attach_objects(&result, objects, counts(objects, &seg.labels), (width, height), (*encode_ms, *masks_ms))?;
        }
        Ok(result)
    }

    /// One frame of a camera or a video: what `segment` gives for `rgba`, with the scores
    /// averaged over the frames before where the picture held still, by `smooth` in [0, 1] (0:
    /// each frame on its own; 0.7 is the CLI's default for video), and the words' objects
    /// followed: `objects` (`{id, label, class, score, box, area}`) keep their `id` from frame
    /// to frame, with `counts` per word and `instances` (the map of ids, a `Uint16Array`);
    /// `sharp`: sharp edges as `segment`'s, Segment Anything prompted by the previous frame's
    /// objects (`encodeMs`, `masksMs` its times); `reset` says why the frame started afresh (`"first"`, `"words"` for other words or
    /// settings, `"size"`, `"cut"` for a scene cut) or is null. Other words, settings or frame
    /// sizes start afresh by themselves; `resetVideo()` forgets the frames before (a new
    /// stream), and so does loading a words model. A still image is `segment`'s.
    #[wasm_bindgen(js_name = segmentFrame)]
    pub async fn segment_frame(
        &mut self,
        rgba: &[u8],
        width: usize,
        height: usize,
        labels: &str,
        options: JsValue,
        smooth: f32,
        sharp: Option<bool>,
    ) -> Result<JsValue, JsValue> {
        let settings = settings(options)?;
        let labels = labels::parse(labels).map_err(js_error)?;
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let model = self.model.as_ref().ok_or_else(|| js_error(Error::invalid("no model is loaded yet")))?;
        let video = self.video.get_or_insert_with(Video::default);
        video.set_strength(smooth).map_err(js_error)?;
        let out = match (sharp, self.session.as_mut()) {
            (Some(true), None) => {
                return Err(js_error(Error::invalid(
                    "sharp edges need a Segment Anything model loaded beside the words model: load one in Point mode",
                )));
            }
            (Some(true), Some(session)) => {
                let refine = RefineOptions::default();
                let frame = crate::segment::segment_frame_sharp(
                    model,
                    &image,
                    &labels,
                    &settings,
                    &mut self.cache,
                    video,
                    session,
                    &refine,
                );
                run(frame).await?
            }
            _ => run(crate::segment::segment_frame(model, &image, &labels, &settings, &mut self.cache, video)).await?,
        };
        let (seg, objects) = (&out.segmented.segmentation, &out.report.objects);
        let result = segment_answer(seg, out.segmented.plan, out.segmented.timings)?;
        let sharp_ms = out.sharp_ms.unwrap_or((0.0, 0.0));
        attach_objects(&result, objects, counts(objects, &seg.labels), (width, height), sharp_ms)?;
        js_sys::Reflect::set(&result, &"reset".into(), &to_js(&out.report.reset)?)?;
        Ok(result)
    }

    /// Forget the frames `segmentFrame` has seen (a new stream); object ids go on counting.
    #[wasm_bindgen(js_name = resetVideo)]
    pub fn reset_video(&mut self) {
        if let Some(video) = self.video.as_mut() {
            video.reset();
        }
    }

    /// Every object in an RGBA image, no prompt (Segment Anything's automatic masks), each
    /// named among `labels` by the words model when both are there: `{width, height, objects,
    /// counts, instances: Uint16Array, encodeMs, masksMs}`. `automatic` holds the generator's
    /// settings in camelCase (`pointsPerSide`, `pointsPerBatch`, `predIouThresh`,
    /// `stabilityScoreThresh`, `stabilityScoreOffset`, `boxNmsThresh`); `options` the words'.
    /// `progress(done, total)`, when given, after each batch of the grid's prompts (not in the
    /// threads module, whose worker waits on the pool).
    #[allow(clippy::too_many_arguments)]
    pub async fn everything(
        &mut self,
        rgba: &[u8],
        width: usize,
        height: usize,
        labels: &str,
        options: JsValue,
        automatic: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let automatic: AutomaticOptions = if automatic.is_undefined() || automatic.is_null() {
            AutomaticOptions::default()
        } else {
            serde_wasm_bindgen::from_value(automatic)
                .map_err(|e| js_error(Error::invalid(format!("automatic mask settings: {e}"))))?
        };
        automatic.validate().map_err(js_error)?;
        let settings = settings(options)?;
        let labels = match labels.trim() {
            "" => None,
            words => Some(labels::parse(words).map_err(js_error)?),
        };
        let image = RgbImage::from_rgba(width, height, rgba).map_err(js_error)?;
        let session = self.session.as_mut().ok_or_else(|| {
            js_error(Error::invalid("naming everything needs a Segment Anything model: load one in Point mode"))
        })?;
        let encode_ms = if session.holds(&image) { 0.0 } else { run(session.encode(image)).await? };
        let start = crate::clock::now_ms();
        let words = self.model.as_ref().map(|model| WordsNamer { model, settings: &settings, cache: &mut self.cache });
        let request = NameRequest { labels: labels.clone(), vocabulary: None, words };
        // The threads module runs the call on a pool thread while this worker waits: no JS
        // function can be called from there, and no message would leave before the end.
        #[cfg(feature = "threads")]
        let report = {
            drop(progress);
            |_: usize, _: usize| {}
        };
        #[cfg(not(feature = "threads"))]
        let report = |done: usize, total: usize| {
            if let Some(f) = &progress {
                // A failing listener is the page's problem, not the search's.
                let _ = f.call2(&JsValue::NULL, &JsValue::from(done as u32), &JsValue::from(total as u32));
            }
        };
        let objects = run(session.everything(&automatic, request, report)).await?;
        let masks_ms = crate::clock::now_ms() - start;
        let result = to_js(&serde_json::json!({"width": width, "height": height}))?;
        let counts = session.counts(&objects, labels.as_deref(), None);
        attach_objects(&result, &objects, counts, (width, height), (encode_ms, masks_ms))?;
        Ok(result)
    }
}

/// What `exportImage` is asked, beside its typed arrays.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest {
    /// The words as typed (the label grammar): the categories, in their order.
    labels: String,
    /// Any of "coco", "yolo", "labelme", "voc".
    formats: Vec<Format>,
    width: usize,
    height: usize,
    /// The image's file name, as the files name it (and their names: its stem).
    file_name: String,
    /// Its COCO id (its place in the folder's sorted list, from 1).
    #[serde(default)]
    image_id: Option<u64>,
    /// LabelMe's `imagePath` (default: the file name, the JSON beside the image).
    #[serde(default)]
    image_path: Option<String>,
    #[serde(default)]
    polygons: bool,
    #[serde(default)]
    min_area: usize,
    /// The objects (absent: the words' own regions of `labelMap`), each drawn by its own mask
    /// or by its `id` in `instances`.
    #[serde(default)]
    objects: Option<Vec<ObjectIn>>,
}

/// An object as the page holds it: its word by index or by name, and its score.
#[derive(Deserialize)]
struct ObjectIn {
    #[serde(default)]
    id: Option<u16>,
    #[serde(default)]
    class: Option<usize>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    score: Option<f32>,
}

/// One file of an export: its path in the folder layout, its format and its bytes.
#[derive(Serialize)]
struct ExportFile {
    path: String,
    format: Format,
    #[serde(with = "serde_bytes_vec")]
    bytes: Vec<u8>,
}

fn label_map_of(value: &JsValue, pixels: usize) -> Result<Option<LabelMap>, JsValue> {
    let map = if value.is_undefined() || value.is_null() {
        return Ok(None);
    } else if let Some(v) = value.dyn_ref::<js_sys::Uint8Array>() {
        LabelMap::Narrow(v.to_vec())
    } else if let Some(v) = value.dyn_ref::<js_sys::Uint16Array>() {
        LabelMap::Wide(v.to_vec())
    } else {
        return Err(js_error(Error::invalid("labelMap must be a Uint8Array or a Uint16Array")));
    };
    if map.len() != pixels {
        return Err(js_error(Error::invalid(format!("labelMap has {} values for {pixels} pixels", map.len()))));
    }
    Ok(Some(map))
}

/// One image's files in the `formats` asked (the core's writers, as `wordmask segment --images`
/// writes them): `[{path, format, bytes: Uint8Array}]`, paths in the CLI's layout
/// (`coco/<stem>.json`, `yolo/labels/<stem>.txt`, `labelme/<stem>.json`,
/// `voc/SegmentationClass/<stem>.png`, `voc/SegmentationObject/<stem>.png`). `request`:
/// `{labels, formats, width, height, fileName, imageId?, imagePath?, polygons?, minArea?,
/// objects?: [{id?, class?, label?, score?}]}`. `labelMap` (Uint8Array or Uint16Array) and
/// `confidence` are a words result's; without `objects` the objects are its words' connected
/// regions, as the CLI's without `--sam`. Object k's mask is `masks[k]` (a Uint8Array, 1
/// inside) when given, else the pixels of `instances` equal to its `id`.
#[wasm_bindgen(js_name = exportImage)]
pub fn export_image(
    request: JsValue,
    label_map: JsValue,
    confidence: Option<Vec<u8>>,
    instances: Option<Vec<u16>>,
    masks: Option<js_sys::Array>,
) -> Result<JsValue, JsValue> {
    let request: ExportRequest =
        serde_wasm_bindgen::from_value(request).map_err(|e| js_error(Error::invalid(format!("export: {e}"))))?;
    let labels = labels::parse(&request.labels).map_err(js_error)?;
    let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let (width, height) = (request.width, request.height);
    let bad = |what: &str| js_error(Error::invalid(format!("export: {what}")));
    let pixels = width.checked_mul(height).filter(|&p| p > 0).ok_or_else(|| bad("the image has no pixels"))?;
    let objects = match &request.objects {
        None => None,
        Some(list) => {
            if instances.as_ref().is_some_and(|ids| ids.len() != pixels) {
                return Err(bad("instances must have one id a pixel"));
            }
            let mut by_id = instances.as_deref().map(|ids| id_masks(ids, width, height)).unwrap_or_default();
            let mut out = Vec::with_capacity(list.len());
            for (k, o) in list.iter().enumerate() {
                let own = masks.as_ref().map(|m| m.get(k as u32)).and_then(|m| m.dyn_into::<js_sys::Uint8Array>().ok());
                let mask = match (own, o.id) {
                    (Some(plane), _) if plane.length() as usize == pixels => {
                        RunMask::from_plane(&plane.to_vec(), width, height)
                    }
                    (Some(_), _) => return Err(bad(&format!("object {}'s mask must have one value a pixel", k + 1))),
                    (None, Some(id)) => by_id.remove(&id).unwrap_or_else(|| RunMask::empty(width, height)),
                    (None, None) => return Err(bad(&format!("object {} has neither a mask nor an id", k + 1))),
                };
                // A class past the words (a classifier's own) names nothing here.
                let class = match o.class {
                    Some(c) => (c < names.len()).then_some(c),
                    None => o.label.as_ref().and_then(|l| names.iter().position(|n| n == l)),
                };
                let label = class.and_then(|c| names.get(c).cloned());
                out.push(Object::of_mask(k as u32 + 1, class, label, o.score.unwrap_or(0.0), mask));
            }
            Some(out)
        }
    };
    let confidence = confidence.unwrap_or_default();
    let mut map = match label_map_of(&label_map, pixels)? {
        Some(map) => map,
        None => match &objects {
            Some(objects) => objects_label_map(objects, labels.len(), width, height),
            None => return Err(bad("a result without objects needs its labelMap")),
        },
    };
    if objects.is_none() && confidence.len() != pixels {
        return Err(bad("the words' regions need the result's confidence, one value a pixel"));
    }
    let objects = image_objects(&mut map, &confidence, &names, (width, height), objects, request.min_area);
    let stem = std::path::Path::new(&request.file_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let labelled = Labelled { file_name: &request.file_name, width, height, objects: &objects };
    let image_path = request.image_path.clone().unwrap_or_else(|| request.file_name.clone());
    let info = ImageInfo {
        image_id: request.image_id.unwrap_or(1),
        labels: &labels,
        polygons: request.polygons,
        image_path: &image_path,
    };
    let mut files = Vec::new();
    for part in Part::of(&request.formats) {
        let bytes = image_part(part, &labelled, &map, &info).map_err(js_error)?;
        files.push(ExportFile { path: part.path(&stem), format: part.format(), bytes });
    }
    to_js(&files)
}

/// The files of a whole folder beside its images' (`exportImage`'s): `[{path, format, bytes}]`
/// for `yolo/data.yaml` (`yoloPath`: the dataset's folder as it names it, default "."),
/// `voc/labelmap.txt`, and `coco.json` and `coco_results.json`, merged from `cocoParts` (each
/// image's COCO file as text, the `coco/<stem>.json` of `exportImage`). `request`: `{labels,
/// formats, yoloPath?}`.
#[wasm_bindgen(js_name = exportFolder)]
pub fn export_folder(request: JsValue, coco_parts: Vec<String>) -> Result<JsValue, JsValue> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FolderRequest {
        labels: String,
        formats: Vec<Format>,
        #[serde(default)]
        yolo_path: Option<String>,
    }
    let request: FolderRequest =
        serde_wasm_bindgen::from_value(request).map_err(|e| js_error(Error::invalid(format!("export: {e}"))))?;
    let labels = labels::parse(&request.labels).map_err(js_error)?;
    let mut files: Vec<ExportFile> =
        folder_lists(&request.formats, &labels, request.yolo_path.as_deref().unwrap_or("."))
            .into_iter()
            .map(|(path, bytes)| {
                let format = if path.starts_with("yolo") { Format::Yolo } else { Format::Voc };
                ExportFile { path, format, bytes }
            })
            .collect();
    if request.formats.contains(&Format::Coco) {
        let parts = coco_parts
            .iter()
            .enumerate()
            .map(|(k, text)| {
                serde_json::from_str::<coco::CocoFile>(text)
                    .map_err(|e| js_error(Error::invalid(format!("COCO part {} is not a COCO file: {e}", k + 1))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let merged = folder_coco(&parts, &labels).map_err(js_error)?;
        files.push(ExportFile {
            path: COCO_FILE.into(),
            format: Format::Coco,
            bytes: serde_json::to_vec(&merged).map_err(|e| js_error(Error::invalid(e.to_string())))?,
        });
        files.push(ExportFile {
            path: COCO_RESULTS_FILE.into(),
            format: Format::Coco,
            bytes: serde_json::to_vec(&coco::results(&merged)).map_err(|e| js_error(Error::invalid(e.to_string())))?,
        });
    }
    to_js(&files)
}

/// The words' own objects of a result (every 8-connected region of each word, as the exports
/// take them without sharp edges): `{objects, counts, instances: Uint16Array}` as `segment`'s
/// with `sharp`, from its `labelMap` and `confidence` and the words as typed.
#[wasm_bindgen(js_name = wordObjects)]
pub fn word_objects(
    labels: &str,
    label_map: JsValue,
    confidence: Vec<u8>,
    width: usize,
    height: usize,
) -> Result<JsValue, JsValue> {
    let labels = labels::parse(labels).map_err(js_error)?;
    let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
    let pixels =
        width.checked_mul(height).ok_or_else(|| js_error(Error::invalid("wordObjects: the image is too large")))?;
    let map =
        label_map_of(&label_map, pixels)?.ok_or_else(|| js_error(Error::invalid("wordObjects needs a labelMap")))?;
    if confidence.len() != pixels {
        return Err(js_error(Error::invalid("wordObjects needs the confidence, one value a pixel")));
    }
    let objects = region_objects_of(&map, &confidence, &names, width, height);
    let result = to_js(&serde_json::json!({"width": width, "height": height}))?;
    attach_objects(&result, &objects, counts(&objects, &names), (width, height), (0.0, 0.0))?;
    Ok(result)
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
    let warn = console.as_ref().and_then(|c| js_sys::Reflect::get(c, &"warn".into()).ok());
    if let Some(f) = warn.and_then(|w| w.dyn_into::<js_sys::Function>().ok()) {
        let _ = f.call1(console.as_ref().unwrap_or(&JsValue::NULL), &message.into());
    }
}
