//! Naming a mask with a words model (the Open-Vocabulary SAM paper's "SAM + CLIP" baseline):
//! the words model's dense score maps (the dense engine's windows, NACLIP by default) pooled
//! inside the mask and compared with each word's embedding: `softmax(logit_scale * mean
//! cosine)`, synonyms merged as in segmentation.

use super::{Candidate, Naming, ObjectMask};
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::preprocess::RgbImage;
use crate::segment::{EmbeddingCache, Model, Settings, Words};

/// The words model's maps of one image for one label set, kept while both stay the same, so
/// that each click only pools.
#[derive(Default)]
pub struct MaskNamer {
    key: Option<(u64, Vec<Vec<String>>, String)>,
    /// `[names, rh, rw]`, host.
    maps: Vec<f32>,
    dims: (usize, usize, usize),
    class_of_name: Vec<usize>,
    labels: Vec<String>,
    logit_scale: f32,
}

impl MaskNamer {
    /// The best word for `mask` on `image` (identified by `image_id`) and the runner-up,
    /// computing the maps when the image, the words or the settings changed.
    #[allow(clippy::too_many_arguments)]
    pub async fn name_mask(
        &mut self,
        model: &Model,
        image_id: u64,
        image: &RgbImage,
        labels: &[Label],
        settings: &Settings,
        cache: &mut EmbeddingCache,
        mask: &ObjectMask,
    ) -> Result<Naming> {
        // The words compete among themselves: the object was pointed at, so no background class.
        let settings = Settings { background: Some(Words(Vec::new())), threshold: None, ..settings.clone() };
        let engine = model.engine_for(&settings)?;
        let request = engine.request(&settings)?;
        let key = (
            image_id,
            labels.iter().map(|l| l.synonyms.clone()).collect(),
            serde_json::to_string(&request.plan).unwrap_or_default(),
        );
        if self.key.as_ref() != Some(&key) {
            let classes = cache.get(model, labels, &[], request.plan.templates.prompts())?;
            let named = engine.naming_maps(model.network(), &model.preprocessor, image, &classes, &request)?;
            let [_, k, rh, rw] = named.maps.dims();
            *self = MaskNamer {
                maps: crate::device::read(named.maps).await?,
                key: Some(key),
                dims: (k, rh, rw),
                class_of_name: classes.class_of_name,
                labels: labels.iter().map(|l| l.name.clone()).collect(),
                logit_scale: named.logit_scale,
            };
        }
        self.name(mask)
    }

    /// Each name's cosine averaged over the mask (its footprint on the resized grid,
    /// area-weighted), scaled, softmaxed, synonyms merged by their maximum and renormalised.
    fn name(&self, mask: &ObjectMask) -> Result<Naming> {
        let (k, rh, rw) = self.dims;
        if self.key.is_none() || k == 0 {
            return Err(Error::invalid("no words to name the mask with"));
        }
        let weights = footprint(mask, rw, rh);
        let total: f32 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::invalid("the mask is empty: nothing to name"));
        }
        let logits: Vec<f32> = (0..k)
            .map(|c| {
                let map = &self.maps[c * rh * rw..(c + 1) * rh * rw];
                map.iter().zip(&weights).map(|(v, w)| v * w).sum::<f32>() / total * self.logit_scale
            })
            .collect();
        let top = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut per_class = vec![0f32; self.labels.len()];
        for (name, &class) in self.class_of_name.iter().enumerate() {
            per_class[class] = per_class[class].max(exp[name] / sum);
        }
        let norm: f32 = per_class.iter().sum();
        let mut order: Vec<usize> = (0..per_class.len()).collect();
        order.sort_by(|&a, &b| per_class[b].total_cmp(&per_class[a]));
        let candidate = |i: usize| Candidate { label: self.labels[i].clone(), probability: per_class[i] / norm };
        Ok(Naming { best: candidate(order[0]), runner_up: order.get(1).map(|&i| candidate(i)), class_index: None })
    }
}

/// The share of each cell of a `w x h` grid that `mask` covers (the grid laid over the whole
/// image).
fn footprint(mask: &ObjectMask, w: usize, h: usize) -> Vec<f32> {
    let (mw, mh) = (mask.width, mask.height);
    let mut sums = vec![0f32; w * h];
    let mut counts = vec![0f32; w * h];
    for y in 0..mh {
        let gy = (y * h / mh).min(h - 1);
        for x in 0..mw {
            let gx = (x * w / mw).min(w - 1);
            counts[gy * w + gx] += 1.0;
            sums[gy * w + gx] += f32::from(mask.mask[y * mw + x]);
        }
    }
    sums.iter().zip(&counts).map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 }).collect()
}
