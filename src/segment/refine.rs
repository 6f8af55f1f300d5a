//! Words → objects with sharp edges: the words' label map (any words engine) steers Segment
//! Anything, which draws the edges. Each connected region of a word becomes one prompt — its
//! box and its most confident pixel — decoded on the image encoded once; the mask takes the
//! region's word. Where masks overlap, the higher predicted IoU wins (for Open-Vocabulary SAM,
//! which predicts none, the words' mean confidence in the region); pixels no mask covers keep
//! the words' label. Every mask is an [`Object`], so the result can be counted ("dog ×3").
//!
//! This follows the refinement stage of Trident (Shi et al., ICCV 2025; YuHengsss/Trident,
//! `seg_utils/utils.py` `sam_refinement`): 8-connected regions per class, a box and the peak
//! pixel as prompts, one mask each. What differs, and why, is in docs/engines.md.

use super::objects::{Object, RunMask};
use super::point::{Prompt, PromptSession};
use super::result::{LabelMap, Segmentation};
use crate::error::{Error, Result};
use crate::preprocess::RgbImage;

/// The refiner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RefineOptions {
    /// Regions smaller than this share of the image are speckle, not objects: they prompt
    /// nothing and keep their words' label.
    pub min_region: f32,
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions { min_region: 0.001 }
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
    /// Its pixels' linear indices, in no order.
    pub pixels: Vec<u32>,
}

/// The 8-connected regions of each label (0, unlabelled, excluded) of a `width x height` map,
/// in order of their first pixel (as Trident's `measure.label(..., connectivity=2)`);
/// `confidence` picks each region's peak.
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
        let mut region =
            Region { label, area: 0, bbox: [usize::MAX, usize::MAX, 0, 0], peak: (0, 0), pixels: Vec::new() };
        let mut best = None;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            region.area += 1;
            region.pixels.push(i as u32);
            let b = &mut region.bbox;
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            if best.is_none_or(|(c, j)| (confidence[i], std::cmp::Reverse(i)) > (c, std::cmp::Reverse(j))) {
                best = Some((confidence[i], i));
            }
            for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                    continue;
                }
                let j = ny as usize * width + nx as usize;
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

/// The words' own objects, without Segment Anything: every 8-connected region of each word
/// (however small, so that a word's objects together are exactly its pixels), in the order of
/// their first pixel, scored by the mean of their pixels' top probability.
pub fn region_objects(seg: &Segmentation) -> Vec<Object> {
    region_objects_of(&seg.label_map, &seg.confidence, &seg.labels, seg.width, seg.height)
}

/// [`region_objects`] of a label map and its confidence as plain data (what the page keeps of
/// a result): `names` are the words, label `k` of the map is `names[k - 1]`.
pub fn region_objects_of(
    map: &LabelMap,
    confidence: &[u8],
    names: &[String],
    width: usize,
    height: usize,
) -> Vec<Object> {
    let object = |(k, mut region): (usize, Region)| {
        region.pixels.sort_unstable();
        let sum: u64 = region.pixels.iter().map(|&i| confidence[i as usize] as u64).sum();
        Object {
            id: k as u32 + 1,
            // A label the words do not name (plain data from the page) is no word's.
            label: names.get(region.label - 1).cloned(),
            class: (region.label <= names.len()).then_some(region.label - 1),
            score: sum as f32 / (255.0 * region.area as f32),
            bbox: region.bbox,
            area: region.area,
            point: None,
            mask: RunMask::from_sorted(&region.pixels, width, height),
        }
    };
    regions(|i| map.get(i), confidence, width, height).into_iter().enumerate().map(object).collect()
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
    refine_following(seg, session, options, &[]).await
}

/// [`refine`] for a video frame, with `before` the previous frame's objects: a region that
/// overlaps one of them (of its word; the largest overlap, each object once) is prompted with
/// that object's box moved by how far the region's centre moved from the object's, instead of
/// its own box. The previous frame's mask follows the object's edges where the words' region is
/// coarse, so its box keeps Segment Anything's mask steady from frame to frame; the region's
/// peak stays the point, and a region that overlaps none is prompted as on a still image.
pub async fn refine_following(
    seg: &mut Segmentation,
    session: &mut PromptSession,
    options: &RefineOptions,
    before: &[Object],
) -> Result<Vec<Object>> {
    let (width, height) = (seg.width, seg.height);
    let min_area = (options.min_region * (width * height) as f32).ceil().max(1.0) as usize;
    let map = &seg.label_map;
    let found: Vec<Region> =
        regions(|i| map.get(i), &seg.confidence, width, height).into_iter().filter(|r| r.area >= min_area).collect();
    // Each region's mask keeps the parts that touch the region (Segment Anything may also
    // take a look-alike object elsewhere, which has a region and a prompt of its own); a region
    // whose mask misses it stays as the words drew it, below any mask.
    let mut kept_masks: Vec<(RunMask, f32)> = Vec::with_capacity(found.len());
    let mut seen = vec![false; width * height];
    let boxes = followed_boxes(&found, before, width, height);
    for (region, bbox) in found.iter().zip(boxes) {
        let [x0, y0, x1, y1] = bbox;
        let prompt = Prompt {
            points: vec![super::point::Click { x: region.peak.0 as f64, y: region.peak.1 as f64, positive: true }],
            bbox: Some([x0 as f64, y0 as f64, (x1 + 1) as f64, (y1 + 1) as f64]),
        };
        let mask = session.mask(&prompt).await?;
        let seeds: Vec<u32> = region.pixels.iter().copied().filter(|&i| mask.mask[i as usize] == 1).collect();
        let (mut pixels, score) = if seeds.is_empty() {
            (region.pixels.clone(), f32::MIN)
        } else {
            // Open-Vocabulary SAM predicts no IoU: its masks rank by the words' mean confidence
            // in the region.
            let words = || region.pixels.iter().map(|&i| f32::from(seg.confidence[i as usize])).sum::<f32>();
            let score = mask.iou.unwrap_or_else(|| words() / (255.0 * region.area as f32));
            (flood(&mask.mask, seeds, width, height, &mut seen), score)
        };
        pixels.sort_unstable();
        kept_masks.push((RunMask::from_sorted(&pixels, width, height), score));
    }
    let clipped = kept_masks;
    // Each pixel goes to the covering mask of highest predicted IoU (the earlier region on a
    // tie).
    let mut owner: Vec<u32> = vec![0; width * height];
    let mut best: Vec<f32> = vec![f32::NEG_INFINITY; width * height];
    for (k, (mask, score)) in clipped.iter().enumerate() {
        for &(start, n) in mask.runs() {
            for i in start as usize..(start + n) as usize {
                if *score > best[i] {
                    owner[i] = k as u32 + 1;
                    best[i] = *score;
                }
            }
        }
    }
    for (i, &o) in owner.iter().enumerate() {
        if o > 0 {
            seg.label_map.set(i, found[o as usize - 1].label);
        }
    }
    // One object may be several regions of its word (the words' map broke a thin part into
    // pieces, and each piece's mask is the whole part): regions of one word whose masks share a
    // tenth of the smaller one are one object.
    let mut parent: Vec<usize> = (0..found.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..found.len() {
        for j in i + 1..found.len() {
            let (a, b) = (&clipped[i].0, &clipped[j].0);
            let smaller = a.area().min(b.area());
            if found[i].label == found[j].label && smaller > 0 && 10 * a.intersection_area(b) >= smaller {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    let mut group = vec![usize::MAX; found.len()];
    let mut objects: Vec<Object> = Vec::new();
    for k in 0..found.len() {
        let r = root(&mut parent, k);
        if group[r] == usize::MAX {
            group[r] = objects.len();
            let label = found[r].label;
            objects.push(Object {
                id: 0,
                label: Some(seg.labels[label - 1].clone()),
                class: Some(label - 1),
                score: f32::MIN,
                bbox: [0; 4],
                area: 0,
                point: None,
                mask: RunMask::empty(width, height),
            });
        }
        group[k] = group[r];
        let object = &mut objects[group[k]];
        object.score = object.score.max(clipped[k].1);
    }
    for y in 0..height {
        let row = &owner[y * width..(y + 1) * width];
        let mut x = 0;
        while x < width {
            let g = |o: u32| if o == 0 { usize::MAX } else { group[o as usize - 1] };
            let run = row[x..].iter().take_while(|&&o| g(o) == g(row[x])).count();
            if row[x] > 0 {
                objects[g(row[x])].mask.push_run(y * width + x, run);
            }
            x += run;
        }
    }
    objects.retain(|o| o.mask.area() > 0);
    for (k, object) in objects.iter_mut().enumerate() {
        object.id = k as u32 + 1;
        object.area = object.mask.area();
        object.bbox = object.mask.bbox();
        if object.score == f32::MIN {
            object.score = 0.0; // no mask: the words' own region
        }
    }
    Ok(objects)
}

/// Each region's prompt box: its own, or that of the object of `before` it follows (same word,
/// the most shared pixels, each object followed by one region), moved by the shift of the
/// centres and kept inside the `width x height` frame.
fn followed_boxes(found: &[Region], before: &[Object], width: usize, height: usize) -> Vec<[usize; 4]> {
    let centre = |pixels: &mut dyn Iterator<Item = usize>| {
        let (mut n, mut sx, mut sy) = (0f64, 0f64, 0f64);
        for i in pixels {
            n += 1.0;
            sx += (i % width) as f64;
            sy += (i / width) as f64;
        }
        (n > 0.0).then(|| (sx / n, sy / n))
    };
    // Every (shared pixels, region, object) of one word, most shared first.
    let mut pairs = Vec::new();
    for (o, object) in before.iter().enumerate() {
        if object.mask.area() == 0 || (object.mask.width, object.mask.height) != (width, height) {
            continue;
        }
        let plane = object.mask.to_plane();
        for (r, region) in found.iter().enumerate() {
            if object.class != Some(region.label - 1) {
                continue;
            }
            let shared = region.pixels.iter().filter(|&&i| plane[i as usize] == 1).count();
            if shared > 0 {
                pairs.push((shared, r, o));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut boxes: Vec<[usize; 4]> = found.iter().map(|r| r.bbox).collect();
    let (mut region_taken, mut object_taken) = (vec![false; found.len()], vec![false; before.len()]);
    for (_, r, o) in pairs {
        if region_taken[r] || object_taken[o] {
            continue;
        }
        (region_taken[r], object_taken[o]) = (true, true);
        let object = &before[o];
        let now = centre(&mut found[r].pixels.iter().map(|&i| i as usize));
        let then = centre(&mut object.mask.runs().iter().flat_map(|&(s, n)| s as usize..(s + n) as usize));
        let (Some(now), Some(then)) = (now, then) else { continue };
        let (dx, dy) = ((now.0 - then.0).round() as isize, (now.1 - then.1).round() as isize);
        let shift = |v: usize, d: isize, most: usize| (v as isize + d).clamp(0, most as isize - 1) as usize;
        let [x0, y0, x1, y1] = object.bbox;
        boxes[r] = [shift(x0, dx, width), shift(y0, dy, height), shift(x1, dx, width), shift(y1, dy, height)];
    }
    boxes
}

/// The 8-connected pixels of `mask` (1 inside) reachable from `seeds`; `seen` is all false on
/// entry and again on return.
fn flood(mask: &[u8], seeds: Vec<u32>, width: usize, height: usize, seen: &mut [bool]) -> Vec<u32> {
    let mut stack = seeds;
    let mut out = Vec::new();
    for &i in &stack {
        seen[i as usize] = true;
    }
    while let Some(i) = stack.pop() {
        out.push(i);
        let (x, y) = ((i as usize % width) as isize, (i as usize / width) as isize);
        for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
            let (nx, ny) = (x + dx, y + dy);
            if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                continue;
            }
            let j = ny as usize * width + nx as usize;
            if mask[j] == 1 && !seen[j] {
                seen[j] = true;
                stack.push(j as u32);
            }
        }
    }
    for &i in &out {
        seen[i as usize] = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square's pixels `[x0, x1] x [y0, y1]` (both inside) in a `w`-wide frame, sorted.
    fn square(x0: usize, x1: usize, y0: usize, y1: usize, w: usize) -> Vec<u32> {
        (y0..=y1).flat_map(|y| (x0..=x1).map(move |x| (y * w + x) as u32)).collect()
    }

    fn region(label: usize, pixels: Vec<u32>, w: usize) -> Region {
        let xs = pixels.iter().map(|&i| i as usize % w);
        let ys = pixels.iter().map(|&i| i as usize / w);
        let bbox = [xs.clone().min().unwrap(), ys.clone().min().unwrap(), xs.max().unwrap(), ys.max().unwrap()];
        Region { label, area: pixels.len(), bbox, peak: (bbox[0], bbox[1]), pixels }
    }

    /// A region that overlaps an object of the frame before, of its word, is prompted with that
    /// object's box moved by the centres' shift; other words, regions that overlap nothing, and a
    /// second region on an object already followed keep their own boxes.
    #[test]
    fn the_previous_frames_objects_prompt_the_regions_that_follow_them() {
        let (w, h) = (24, 20);
        let mask = RunMask::from_sorted(&square(2, 5, 2, 5, w), w, h);
        let before = vec![Object::of_mask(1, Some(0), Some("a".into()), 1.0, mask)];
        // The word's coarse region moved right by 3 and down by 2 (centres 3.5 -> 6.5, 3.5 -> 5.5).
        let follows = region(1, square(4, 9, 3, 8, w), w);
        let other_word = region(2, square(3, 4, 3, 4, w), w);
        let elsewhere = region(1, square(15, 20, 10, 15, w), w);
        let smaller_overlap = region(1, square(2, 3, 2, 2, w), w);
        let found = [follows, other_word, elsewhere, smaller_overlap];
        let boxes = followed_boxes(&found, &before, w, h);
        assert_eq!(boxes, vec![[5, 4, 8, 7], [3, 3, 4, 4], [15, 10, 20, 15], [2, 2, 3, 2]]);
        // Moved past the frame's edge, the box stays inside it.
        let at_edge = region(1, square(19, 23, 15, 19, w), w);
        let far = RunMask::from_sorted(&square(16, 21, 12, 17, w), w, h);
        let before = vec![Object::of_mask(1, Some(0), Some("a".into()), 1.0, far)];
        assert_eq!(followed_boxes(&[at_edge], &before, w, h), vec![[19, 15, 23, 19]]);
        // Without objects before, every region keeps its own box.
        assert_eq!(followed_boxes(&found, &[], w, h), found.iter().map(|r| r.bbox).collect::<Vec<_>>());
    }

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
        type Summary = (usize, usize, [usize; 4], (usize, usize));
        let summary: Vec<Summary> = found.iter().map(|r| (r.label, r.area, r.bbox, r.peak)).collect();
        assert_eq!(
            summary,
            vec![
                (1, 2, [0, 0, 1, 0], (1, 0)),
                (2, 3, [3, 0, 4, 1], (3, 0)),
                (1, 1, [0, 2, 0, 2], (0, 2)),
                (1, 2, [2, 2, 3, 2], (3, 2)),
            ]
        );
        // Pixels touching at a corner are one region.
        let diagonal = regions(|i| [1, 0, 0, 1][i], &[0; 4], 2, 2);
        assert_eq!(diagonal.iter().map(|r| r.area).collect::<Vec<_>>(), vec![2]);
    }
}
