//! Words → objects with sharp edges: the words' label map (any words engine) steers Segment
//! Anything, which draws the edges. Each connected region of a word becomes one prompt — its
//! box and its most confident pixel — decoded on the image encoded once; the mask takes the
//! region's word. Where masks overlap, the higher predicted IoU wins; pixels no mask covers keep
//! the words' label. Every mask is an [`Object`], so the result can be counted ("dog ×3").
//!
//! This is the refinement step of Trident (Shi et al., ICCV 2025: SAM turns the CLIP map's
//! regions into prompts and takes its masks) on the words' own map, without Trident's
//! sub-image splitting and feature aggregation, which need several passes of a larger CLIP; see
//! docs/engines.md.

use super::objects::{Object, RunMask};
use super::point::{Prompt, PromptSession};
use super::result::Segmentation;
use crate::error::{Error, Result};
use crate::preprocess::RgbImage;
use crate::segment::point::NameRequest;

/// The refiner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RefineOptions {
    /// Regions smaller than this share of the image are speckle, not objects: they prompt
    /// nothing and keep their words' label.
    pub min_region: f32,
    /// A mask is kept within its region's box grown by this share of the box's side on each
    /// side (at least 16 pixels): Segment Anything may also take a look-alike object elsewhere,
    /// which has a region, and a prompt, of its own.
    pub box_margin: f32,
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions { min_region: 0.001, box_margin: 0.25 }
    }
}

impl RefineOptions {
    /// `bbox` grown by the margin, within a `width x height` image.
    fn grown(&self, [x0, y0, x1, y1]: [usize; 4], width: usize, height: usize) -> [usize; 4] {
        let grow = |side: usize| ((side as f32 * self.box_margin).ceil() as usize).max(16);
        let (gx, gy) = (grow(x1 + 1 - x0), grow(y1 + 1 - y0));
        [x0.saturating_sub(gx), y0.saturating_sub(gy), (x1 + gx).min(width - 1), (y1 + gy).min(height - 1)]
    }
}

/// One connected region of one word in the label map.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The word's label (1-based, as the label map holds it).
    pub label: usize,
    pub area: usize,
    /// `[x0, y0, x1, y1]`, both corners inside.
    pub bbox: [usize; 4],
    /// Its most confident pixel `(x, y)`.
    pub peak: (usize, usize),
}

/// The 4-connected regions of each label (0, unlabelled, excluded) of a `width x height` map,
/// in order of their first pixel; `confidence` picks each region's peak.
pub fn regions(label_at: impl Fn(usize) -> usize, confidence: &[u8], width: usize, height: usize) -> Vec<Region> {
    let mut seen = vec![false; width * height];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..width * height {
        let label = label_at(start);
        if seen[start] || label == 0 {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut region = Region { label, area: 0, bbox: [usize::MAX, usize::MAX, 0, 0], peak: (0, 0) };
        let mut best = None;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            region.area += 1;
            let b = &mut region.bbox;
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            if best.is_none_or(|(c, j)| (confidence[i], std::cmp::Reverse(i)) > (c, std::cmp::Reverse(j))) {
                best = Some((confidence[i], i));
            }
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then(|| i + 1),
                (y > 0).then(|| i - width),
                (y + 1 < height).then(|| i + width),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && label_at(j) == label {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        let peak = best.map_or(0, |(_, i)| i);
        region.peak = (peak % width, peak / width);
        found.push(region);
    }
    found
}

/// Sharpen `seg`, the words' segmentation of `image`, with a Segment Anything `session`: the
/// image is encoded once (unless the session holds it already), and the label map follows the
/// masks' edges afterwards. Returns the objects, in the regions' order, each holding the pixels
/// it won, and the milliseconds of the encoding and of the prompts.
pub async fn sharpen(
    seg: &mut Segmentation,
    image: &RgbImage,
    session: &mut PromptSession,
    options: &RefineOptions,
) -> Result<(Vec<Object>, f64, f64)> {
    if (image.width, image.height) != (seg.width, seg.height) {
        return Err(Error::invalid(format!(
            "the segmentation is {}x{} but the image {}x{}",
            seg.width, seg.height, image.width, image.height
        )));
    }
    if session.model().names_masks() {
        return Err(Error::invalid(
            "sharp edges take a Segment Anything checkpoint (SAM or SlimSAM) beside the words model; \
             this one is an Open-Vocabulary SAM, which is used on its own in Point mode",
        ));
    }
    let encode = if session.holds(image) { 0.0 } else { session.encode(image.clone()).await? };
    let mut clock = crate::clock::Stopwatch::start();
    let objects = refine(seg, session, options).await?;
    Ok((objects, encode, clock.lap()))
}

/// [`sharpen`] on the image the session encoded.
pub async fn refine(
    seg: &mut Segmentation,
    session: &mut PromptSession,
    options: &RefineOptions,
) -> Result<Vec<Object>> {
    let (width, height) = (seg.width, seg.height);
    let min_area = (options.min_region * (width * height) as f32).ceil().max(1.0) as usize;
    let map = &seg.label_map;
    let found: Vec<Region> =
        regions(|i| map.get(i), &seg.confidence, width, height).into_iter().filter(|r| r.area >= min_area).collect();
    let mut masks = Vec::with_capacity(found.len());
    for region in &found {
        let [x0, y0, x1, y1] = region.bbox;
        let prompt = Prompt {
            points: vec![super::point::Click { x: region.peak.0 as f64, y: region.peak.1 as f64, positive: true }],
            bbox: Some([x0 as f64, y0 as f64, (x1 + 1) as f64, (y1 + 1) as f64]),
        };
        let answer = session.prompt(&prompt, NameRequest::default()).await?;
        masks.push(answer.mask);
    }
    // Each pixel goes to the covering mask of highest predicted IoU (the earlier region on a
    // tie); an empty mask leaves its region as the words drew it.
    let mut owner: Vec<u32> = vec![0; width * height];
    let mut best: Vec<f32> = vec![f32::NEG_INFINITY; width * height];
    for (k, (region, mask)) in found.iter().zip(&masks).enumerate() {
        let score = mask.iou.unwrap_or(1.0);
        let id = k as u32 + 1;
        if mask.area == 0 {
            let [x0, y0, x1, y1] = region.bbox;
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let i = y * width + x;
                    if seg.label_map.get(i) == region.label && owner[i] == 0 {
                        owner[i] = id;
                        best[i] = f32::NEG_INFINITY;
                    }
                }
            }
            continue;
        }
        let [gx0, gy0, gx1, gy1] = options.grown(region.bbox, width, height);
        for y in gy0..=gy1 {
            for x in gx0..=gx1 {
                let i = y * width + x;
                if mask.mask[i] == 1 && score > best[i] {
                    owner[i] = id;
                    best[i] = score;
                }
            }
        }
    }
    let mut objects: Vec<Object> = found
        .iter()
        .zip(&masks)
        .enumerate()
        .map(|(k, (region, mask))| Object {
            id: k as u32 + 1,
            label: Some(seg.labels[region.label - 1].clone()),
            class: Some(region.label - 1),
            score: mask.iou.unwrap_or(1.0),
            bbox: [0; 4],
            area: 0,
            mask: RunMask::empty(width, height),
        })
        .collect();
    for y in 0..height {
        let row = &owner[y * width..(y + 1) * width];
        let mut x = 0;
        while x < width {
            let run = row[x..].iter().take_while(|&&o| o == row[x]).count();
            if row[x] > 0 {
                objects[row[x] as usize - 1].mask.push_run(y * width + x, run);
            }
            x += run;
        }
    }
    for (i, &o) in owner.iter().enumerate() {
        if o > 0 {
            seg.label_map.set(i, found[o as usize - 1].label);
        }
    }
    objects.retain(|o| o.mask.area() > 0);
    for (k, object) in objects.iter_mut().enumerate() {
        object.id = k as u32 + 1;
        object.area = object.mask.area();
        object.bbox = object.mask.bbox();
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_connected_pieces_of_one_label_with_their_peak() {
        let (w, h) = (5, 3);
        #[rustfmt::skip]
        let map = [
            1, 1, 0, 2, 2,
            0, 0, 0, 0, 2,
            1, 0, 1, 1, 0,
        ];
        let mut confidence = vec![0u8; w * h];
        confidence[1] = 9;
        confidence[13] = 7;
        let found = regions(|i| map[i], &confidence, w, h);
        let summary: Vec<(usize, usize, [usize; 4], (usize, usize))> =
            found.iter().map(|r| (r.label, r.area, r.bbox, r.peak)).collect();
        assert_eq!(
            summary,
            vec![
                (1, 2, [0, 0, 1, 0], (1, 0)),
                (2, 3, [3, 0, 4, 1], (3, 0)),
                (1, 1, [0, 2, 0, 2], (0, 2)),
                (1, 2, [2, 2, 3, 2], (3, 2)),
            ]
        );
    }
}
