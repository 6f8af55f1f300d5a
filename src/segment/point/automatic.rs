//! Segment Anything's automatic mask generation ("segment everything"), as the authors' own
//! `SamAutomaticMaskGenerator` (facebookresearch/segment-anything, `automatic_mask_generator.py`)
//! and transformers' `mask-generation` pipeline run it on the whole image (crop layers off):
//!
//! 1. a grid of `points_per_side²` one-point prompts, each decoded into its three candidate
//!    masks, `points_per_batch` prompts side by side on the device, the image encoded once;
//! 2. candidates whose predicted IoU is at most `pred_iou_thresh` are dropped;
//! 3. the stability score — the IoU of the mask thresholded at `+offset` and at `-offset` of
//!    the logits, at the image's own size — must exceed `stability_score_thresh`;
//! 4. the survivors, binarised at 0 with their boxes, go through greedy box non-maximum
//!    suppression at `box_nms_thresh`, best predicted IoU first.
//!
//! Open-Vocabulary SAM runs the same grid through its one-mask-token decoder. It predicts no
//! IoU, so step 2 does not apply and its candidates rank by stability score in step 4 (our
//! choice: the authors release no automatic mode for it); each kept mask is then named by the
//! model's own head, as a click there would be.
//!
//! Masks are kept as runs (segment-anything keeps RLEs), never as a stack of photo-sized
//! planes: memory grows with the masks' outlines, not with their number times the photo.

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{EncodedImage, PromptModel};
use crate::error::{Error, Result};
use crate::sam::Point;
use crate::segment::objects::RunMask;

/// The generator's settings, with segment-anything's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AutomaticOptions {
    /// Points along each side of the grid (`points_per_side`).
    pub points_per_side: usize,
    /// Prompts decoded side by side (`points_per_batch`): more is faster where memory allows.
    pub points_per_batch: usize,
    /// Keep a mask only if its predicted IoU is above this (`pred_iou_thresh`; 0 keeps all;
    /// Open-Vocabulary SAM predicts none, so it does not apply there).
    pub pred_iou_thresh: f32,
    /// Keep a mask only if its stability score is above this (`stability_score_thresh`; 0 keeps
    /// all).
    pub stability_score_thresh: f32,
    /// How far the logits' cut-off moves for the stability score (`stability_score_offset`).
    pub stability_score_offset: f32,
    /// Boxes overlapping a better mask's by more than this IoU are dropped (`box_nms_thresh`).
    pub box_nms_thresh: f32,
    /// Holes and islands of fewer pixels are filled and removed in each kept mask, and the
    /// masks changed so give way to unchanged ones they overlap (`min_mask_region_area`; 0:
    /// off).
    pub min_mask_region_area: usize,
}

impl Default for AutomaticOptions {
    fn default() -> Self {
        AutomaticOptions {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            min_mask_region_area: 0,
        }
    }
}

impl AutomaticOptions {
    /// The most points along a side: 64² prompts of three masks each.
    pub const MAX_POINTS_PER_SIDE: usize = 64;
    /// The most prompts decoded at once (each holds a copy of the image's embeddings).
    pub const MAX_POINTS_PER_BATCH: usize = 256;

    /// Refuse settings the generator cannot run with, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_POINTS_PER_SIDE).contains(&self.points_per_side) {
            return Err(Error::invalid(format!(
                "points per side must be 1 to {}; got {}",
                Self::MAX_POINTS_PER_SIDE,
                self.points_per_side
            )));
        }
        if !(1..=Self::MAX_POINTS_PER_BATCH).contains(&self.points_per_batch) {
            return Err(Error::invalid(format!(
                "points per batch must be 1 to {}; got {}",
                Self::MAX_POINTS_PER_BATCH,
                self.points_per_batch
            )));
        }
        for (name, value) in [
            ("the predicted IoU threshold", self.pred_iou_thresh),
            ("the stability score threshold", self.stability_score_thresh),
            ("the box NMS threshold", self.box_nms_thresh),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::invalid(format!("{name} must be between 0 and 1; got {value}")));
            }
        }
        if !(self.stability_score_offset.is_finite() && self.stability_score_offset >= 0.0) {
            return Err(Error::invalid(format!(
                "the stability score offset must be 0 or more; got {}",
                self.stability_score_offset
            )));
        }
        Ok(())
    }
}

/// One mask the generator kept.
#[derive(Debug, Clone)]
pub struct AutoMask {
    pub mask: RunMask,
    /// The decoder's predicted IoU (Segment Anything; Open-Vocabulary SAM predicts none).
    pub iou: Option<f32>,
    pub stability: f32,
    /// `[x0, y0, x1, y1]`, both corners inside the mask's extent.
    pub bbox: [usize; 4],
    /// The grid point that prompted it, in the image's pixels.
    pub point: (f64, f64),
}

impl AutoMask {
    /// What ranks it: its predicted IoU, or its stability score for a model that predicts no
    /// IoU (Open-Vocabulary SAM).
    pub fn score(&self) -> f32 {
        // An empty mask's stability is 0/0: it ranks last.
        self.iou.unwrap_or(if self.stability.is_nan() { 0.0 } else { self.stability })
    }
}

/// The grid's points in the unit square, row by row (segment-anything's `build_point_grid`,
/// in single precision as torch computes it).
pub fn point_grid(n: usize) -> Vec<(f32, f32)> {
    let offset = 1.0 / (2 * n) as f32;
    let step = if n > 1 { ((1.0 - offset) - offset) / (n - 1) as f32 } else { 0.0 };
    // torch.linspace fills the first half from the start and the second from the end.
    let side: Vec<f32> = (0..n)
        .map(|i| if i < n / 2 { offset + step * i as f32 } else { (1.0 - offset) - step * (n - 1 - i) as f32 })
        .collect();
    side.iter().flat_map(|&y| side.iter().map(move |&x| (x, y))).collect()
}

/// `box_area`, as torchvision computes it (no pixel added).
fn area(b: &[usize; 4]) -> f32 {
    ((b[2] - b[0]) * (b[3] - b[1])) as f32
}

fn box_iou(a: &[usize; 4], b: &[usize; 4]) -> f32 {
    let (x0, y0) = (a[0].max(b[0]), a[1].max(b[1]));
    let (x1, y1) = (a[2].min(b[2]), a[3].min(b[3]));
    let inter = if x1 > x0 && y1 > y0 { ((x1 - x0) * (y1 - y0)) as f32 } else { 0.0 };
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Greedy non-maximum suppression (torchvision's `nms`): indices of the kept boxes, best score
/// first; a box is dropped when its IoU with a kept one exceeds `threshold`.
pub fn nms(boxes: &[[usize; 4]], scores: &[f32], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&k| box_iou(&boxes[k], &boxes[i]) <= threshold) {
            kept.push(i);
        }
    }
    kept
}

/// Candidates cropped and upsampled on the device at most this many at a time (each is one
/// plane of the model's input size on the host).
const PLANES_AT_ONCE: usize = 16;

impl PromptModel {
    /// Every object in the encoded image, without prompts (segment-anything's automatic mask
    /// generator on the whole image): masks best first ([`AutoMask::score`]). `progress(done, total)`
    /// after each batch of prompts.
    pub async fn automatic(
        &self,
        encoded: &EncodedImage,
        options: &AutomaticOptions,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<AutoMask>> {
        options.validate()?;
        let (width, height) = encoded.original;
        let points: Vec<(f64, f64)> = point_grid(options.points_per_side)
            .into_iter()
            .map(|(x, y)| (f64::from(x * width as f32), f64::from(y * height as f32)))
            .collect();
        let (rw, rh) = encoded.resized;
        let offset = options.stability_score_offset;
        let mut found: Vec<AutoMask> = Vec::new();
        for (b, chunk) in points.chunks(options.points_per_batch).enumerate() {
            let prompts: Vec<Point> = chunk
                .iter()
                .map(|&(x, y)| {
                    let (x, y) = self.processor.to_input(x, y, encoded.original);
                    // The input's coordinates as torch holds them, in single precision.
                    Point { x: f64::from(x as f32), y: f64::from(y as f32), positive: true }
                })
                .collect();
            let (masks, iou) = self.engine.decode_points(self.network.as_ref(), encoded.features.as_ref(), &prompts)?;
            let [n, per, m, _] = masks.dims();
            let iou = match iou {
                Some(iou) => Some(crate::device::read(iou).await?),
                None => None,
            };
            let keep: Vec<usize> = (0..n * per)
                .filter(|&i| match &iou {
                    Some(iou) => options.pred_iou_thresh <= 0.0 || iou[i] > options.pred_iou_thresh,
                    None => true,
                })
                .collect();
            let flat = masks.reshape([n * per, m, m]);
            for part in keep.chunks(PLANES_AT_ONCE) {
                let rows: Vec<i64> = part.iter().map(|&i| i as i64).collect();
                let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [part.len()]), &self.device);
                let planes = self.processor.cropped(flat.clone().select(0, index), encoded.resized);
                let planes = crate::device::read(planes).await?;
                for (k, &i) in part.iter().enumerate() {
                    let plane = &planes[k * rw * rh..(k + 1) * rw * rh];
                    let (mask, stability) = self.measured(plane, encoded, offset);
                    // An empty mask's score is 0/0, which passes no threshold.
                    let stable = stability > options.stability_score_thresh;
                    if options.stability_score_thresh > 0.0 && !stable {
                        continue;
                    }
                    let bbox = mask.bbox();
                    let point = chunk[i / per];
                    found.push(AutoMask { mask, iou: iou.as_ref().map(|iou| iou[i]), stability, bbox, point });
                }
            }
            progress((b * options.points_per_batch + chunk.len()).min(points.len()), points.len());
        }
        let boxes: Vec<[usize; 4]> = found.iter().map(|m| m.bbox).collect();
        let scores: Vec<f32> = found.iter().map(AutoMask::score).collect();
        let kept = nms(&boxes, &scores, options.box_nms_thresh);
        let mut slots: Vec<Option<AutoMask>> = found.into_iter().map(Some).collect();
        let kept: Vec<AutoMask> = kept.into_iter().filter_map(|i| slots[i].take()).collect();
        Ok(if options.min_mask_region_area > 0 { without_small_regions(kept, options) } else { kept })
    }

    /// One candidate's logits (cropped to the resized image) brought to the image's size a row
    /// at a time: its mask at 0 and its stability score (`calculate_stability_score`).
    fn measured(&self, plane: &[f32], encoded: &EncodedImage, offset: f32) -> (RunMask, f32) {
        let (width, height) = encoded.original;
        let mut mask = RunMask::empty(width, height);
        let (mut high, mut low) = (0usize, 0usize);
        self.processor.upscale_rows(plane, encoded.resized, encoded.original, |y, row| {
            high += row.iter().filter(|&&v| v > offset).count();
            low += row.iter().filter(|&&v| v > -offset).count();
            mask.push_row(y, row.iter().map(|&v| v > 0.0));
        });
        let stability = if low == 0 { f32::NAN } else { high as f32 / low as f32 };
        (mask, stability)
    }
}

/// segment-anything's `postprocess_small_regions`: in each mask, holes and then islands under
/// the minimum area are filled and removed; masks so changed score 0 and unchanged ones 1 for a
/// second box NMS (at the box threshold, or 0.7, the crop threshold the authors' default takes,
/// if that is higher), which prefers the unchanged.
fn without_small_regions(masks: Vec<AutoMask>, options: &AutomaticOptions) -> Vec<AutoMask> {
    let area = options.min_mask_region_area;
    let mut cleaned: Vec<(RunMask, f32)> = Vec::with_capacity(masks.len());
    for m in &masks {
        let (w, h) = (m.mask.width, m.mask.height);
        let (filled, holes) = remove_small_regions(&m.mask.to_plane(), w, h, area, true);
        let (kept, islands) = remove_small_regions(&filled, w, h, area, false);
        let unchanged = !holes && !islands;
        cleaned.push((RunMask::from_plane(&kept, w, h), if unchanged { 1.0 } else { 0.0 }));
    }
    let boxes: Vec<[usize; 4]> = cleaned.iter().map(|(m, _)| m.bbox()).collect();
    let scores: Vec<f32> = cleaned.iter().map(|&(_, s)| s).collect();
    let order = nms(&boxes, &scores, options.box_nms_thresh.max(0.7));
    let mut slots: Vec<Option<AutoMask>> = masks.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| {
            let mut m = slots[i].take()?;
            if scores[i] == 0.0 {
                m.mask = std::mem::take(&mut cleaned[i].0);
                m.bbox = boxes[i];
            }
            Some(m)
        })
        .collect()
}

/// The 8-connected components of the pixels where `on` holds, numbered 1, 2, ... in the order
/// of their first pixel row by row (as OpenCV's `connectedComponentsWithStats` numbers them):
/// each pixel's component (0 where `on` does not hold) and each component's size.
fn components(on: impl Fn(usize) -> bool, width: usize, height: usize) -> (Vec<u32>, Vec<usize>) {
    let mut label = vec![0u32; width * height];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..width * height {
        if label[start] != 0 || !on(start) {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        label[start] = id;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                    continue;
                }
                let j = ny as usize * width + nx as usize;
                if label[j] == 0 && on(j) {
                    label[j] = id;
                    stack.push(j);
                }
            }
        }
        sizes.push(size);
    }
    (label, sizes)
}

/// segment-anything's `remove_small_regions` on a `width x height` mask (1 inside): `holes`
/// fills the 8-connected pieces outside the mask under `area` pixels, else the pieces of the
/// mask under `area` are removed (the largest stays if all are). Returns the mask and whether it
/// changed.
pub fn remove_small_regions(mask: &[u8], width: usize, height: usize, area: usize, holes: bool) -> (Vec<u8>, bool) {
    let (label, sizes) = components(|i| (mask[i] != 0) != holes, width, height);
    let small: Vec<bool> = sizes.iter().map(|&s| s < area).collect();
    if !small.iter().any(|&s| s) {
        return (mask.to_vec(), false);
    }
    let out = if holes {
        // The mask and its small holes.
        label.iter().map(|&l| u8::from(l == 0 || small[l as usize - 1])).collect()
    } else {
        let largest = (0..sizes.len()).fold(0, |b, k| if sizes[k] > sizes[b] { k } else { b });
        let all_small = small.iter().all(|&s| s);
        label
            .iter()
            .map(|&l| u8::from(l != 0 && (!small[l as usize - 1] || (all_small && l as usize - 1 == largest))))
            .collect()
    };
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_row_by_row_and_centred_in_its_cells() {
        let grid = point_grid(4);
        assert_eq!(grid.len(), 16);
        assert_eq!(grid[0], (0.125, 0.125));
        assert_eq!(grid[1], (0.375, 0.125));
        assert_eq!(grid[4], (0.125, 0.375));
        assert_eq!(grid[15], (0.875, 0.875));
        assert_eq!(point_grid(1), vec![(0.5, 0.5)]);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes = [[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 6]];
        let scores = [0.8, 0.9, 0.5, 0.95];
        // IoU of the first two 0.81; of the last with the first 0.6, with the second 45/96.
        assert_eq!(nms(&boxes, &scores, 0.7), vec![3, 1, 2]);
        assert_eq!(nms(&boxes, &scores, 0.4), vec![3, 2]);
        assert_eq!(nms(&boxes, &scores, 0.9), vec![3, 1, 0, 2]);
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let bad = |o: AutomaticOptions| o.validate().unwrap_err().to_string();
        assert!(bad(AutomaticOptions { points_per_side: 0, ..Default::default() }).contains("points per side"));
        assert!(bad(AutomaticOptions { points_per_batch: 0, ..Default::default() }).contains("points per batch"));
        assert!(bad(AutomaticOptions { box_nms_thresh: 1.5, ..Default::default() }).contains("box NMS"));
        assert!(bad(AutomaticOptions { stability_score_offset: -1.0, ..Default::default() }).contains("offset"));
        AutomaticOptions::default().validate().unwrap();
    }
}
