//! From an engine's scores to what a user sees: the label map (0 = unlabelled or background,
//! i = i-th label), each pixel's confidence, each label's share of the pixels, and the
//! per-class scores when asked for.
//!
//! Engines return their scores at their working resolution (the resized image) with the steps
//! that turn each pixel's upsampled scores into class scores ([`PixelSteps`]). Everything at the
//! image's resolution is made from them band by band on the host: bilinear upsampling exactly as
//! torch's `interpolate(mode="bilinear", align_corners=False)`, then the per-pixel steps. Memory
//! therefore follows the output (a label and a confidence a pixel), not classes × pixels: a
//! 48-megapixel photo never holds a `[classes, 6000, 8000]` array.

use std::io::{Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use crate::labels::Label;
use crate::nn::BilinearGrid;

/// Name of the extra class that background words form (after the user's labels, so label
/// indices stay the user's).
pub const BACKGROUND: &str = "background";

/// Rows of the image finished at a time.
const BAND_PIXELS: usize = 1 << 18;

/// Which of a pixel's top scores the threshold reads when synonyms are merged and the merged
/// classes renormalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum ThresholdOn {
    /// The synonyms' maximum before renormalising, as the dense-CLIP papers' code thresholds
    /// (NACLIP's and SCLIP's `postprocess_result`).
    #[default]
    Merged,
    /// The renormalised probability (the classes of a pixel sum to 1).
    Renormalised,
}

/// How one pixel's upsampled engine rows become its class scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PixelSteps {
    /// `softmax(scale * x)` over all rows first (dense CLIP's probabilities).
    pub softmax_scale: Option<f32>,
    /// The class of each of the first rows (one row per name; a class's synonyms are
    /// contiguous). Rows after these are the engine's own and are kept as they are.
    pub class_of_name: Vec<usize>,
    pub classes: usize,
    /// Divide the merged classes by their sum (SCLIP's merge after a softmax).
    pub renormalise: bool,
    /// With `renormalise`, whether the threshold reads the top score before or after it.
    pub threshold_on: ThresholdOn,
    /// Fold the engine's last extra row into the last class (max): GroupViT's background
    /// threshold into the background words' class.
    pub fold_extra: bool,
    /// Classes that win under this share of the pixels that the background class does not win
    /// are dropped (their scores set to 0, so their pixels go to the next best class), as
    /// SCLIP's and SC-CLIP's `area_thd` (`postprocess_result`). The background class is the
    /// last with background words, else the first (the datasets' class 0). A second pass over
    /// the image: [`Segmentation::new`] counts the areas first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area_threshold: Option<f32>,
    /// The classes the area threshold dropped (empty: none), set by [`Segmentation::new`].
    #[serde(skip)]
    pub dropped: Vec<bool>,
}

impl PixelSteps {
    /// Rows out for `rows_in` rows in: the classes, then the extra rows (unless folded).
    pub fn rows_out(&self, rows_in: usize) -> usize {
        let extra = rows_in.saturating_sub(self.class_of_name.len());
        self.classes + if self.fold_extra { 0 } else { extra }
    }

    /// One pixel: `input` (`rows_in` values, overwritten) to `out` (`rows_out` values).
    /// Returns the top class score that the threshold reads ([`ThresholdOn`]).
    pub fn apply(&self, input: &mut [f32], out: &mut [f32]) -> f32 {
        if let Some(scale) = self.softmax_scale {
            let max = input.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
            let mut sum = 0.0;
            for v in input.iter_mut() {
                *v = (*v * scale - max).exp();
                sum += *v;
            }
            input.iter_mut().for_each(|v| *v /= sum);
        }
        let names = self.class_of_name.len();
        out[..self.classes].fill(f32::NEG_INFINITY);
        for (&class, &v) in self.class_of_name.iter().zip(input.iter()) {
            out[class] = out[class].max(v);
        }
        for (v, _) in out[..self.classes].iter_mut().zip(&self.dropped).filter(|(_, d)| **d) {
            *v = 0.0;
        }
        let top = |out: &[f32]| out[..self.classes].iter().fold(f32::MIN, |m, &v| m.max(v));
        let mut merged_top = None;
        if self.renormalise && names != self.classes {
            if self.threshold_on == ThresholdOn::Merged {
                merged_top = Some(top(out));
            }
            let sum: f32 = out[..self.classes].iter().sum();
            out[..self.classes].iter_mut().for_each(|v| *v /= sum);
        }
        let extra = &input[names.min(input.len())..];
        match (self.fold_extra, extra.last()) {
            (true, Some(&last)) => out[self.classes - 1] = out[self.classes - 1].max(last),
            _ => out[self.classes..self.classes + extra.len()].copy_from_slice(extra),
        }
        merged_top.unwrap_or_else(|| top(out))
    }
}

/// Scores on the host at the engine's working resolution, `[rows, height, width]` row-major.
#[derive(Debug, Clone)]
pub struct ScoreMaps {
    pub rows: usize,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

impl ScoreMaps {
    /// From the device tensor `[rows, height, width]`.
    pub async fn read(maps: burn::tensor::Tensor<3>) -> crate::error::Result<Self> {
        let [rows, height, width] = maps.dims();
        Ok(ScoreMaps { rows, height, width, values: crate::device::read(maps).await? })
    }
}

/// The class scores of `maps` finished at `width x height`, `[classes, height, width]`
/// row-major: classes × pixels floats, for tests and small images.
pub fn full_scores(maps: &ScoreMaps, steps: &PixelSteps, width: usize, height: usize) -> Vec<f32> {
    let n = width * height;
    let finisher = Finisher::new(maps, steps, width, height);
    let classes = finisher.rows_out();
    let mut out = vec![0f32; classes * n];
    let (mut band, mut gates) = (Vec::new(), Vec::new());
    for (y0, y1) in finisher.bands() {
        finisher.band(y0, y1, &mut band, &mut gates);
        for (k, scores) in band.chunks_exact(classes).enumerate() {
            for (c, &v) in scores.iter().enumerate() {
                out[c * n + y0 * width + k] = v;
            }
        }
    }
    out
}

/// Upsampling `maps` to `width x height` and applying `steps`, a band of rows at a time.
struct Finisher<'a> {
    maps: &'a ScoreMaps,
    steps: &'a PixelSteps,
    grid: BilinearGrid,
    width: usize,
    height: usize,
}

impl<'a> Finisher<'a> {
    fn new(maps: &'a ScoreMaps, steps: &'a PixelSteps, width: usize, height: usize) -> Self {
        Finisher { maps, steps, grid: BilinearGrid::new((maps.width, maps.height), (width, height)), width, height }
    }

    fn rows_out(&self) -> usize {
        self.steps.rows_out(self.maps.rows)
    }

    /// Rows `y0..y1`, pixel-major: `[(y1 - y0) * width, rows_out]`, and each pixel's score
    /// that the threshold reads into `gates`.
    fn band(&self, y0: usize, y1: usize, out: &mut Vec<f32>, gates: &mut Vec<f32>) {
        let (rows, plane) = (self.maps.rows, self.maps.height * self.maps.width);
        let rows_out = self.rows_out();
        out.clear();
        out.resize((y1 - y0) * self.width * rows_out, 0.0);
        gates.clear();
        let mut pixel = vec![0f32; rows];
        for y in y0..y1 {
            for x in 0..self.width {
                let tap = self.grid.tap(x, y);
                for (p, map) in pixel.iter_mut().zip(self.maps.values.chunks_exact(plane)) {
                    *p = tap.sample(map);
                }
                let at = ((y - y0) * self.width + x) * rows_out;
                gates.push(self.steps.apply(&mut pixel, &mut out[at..at + rows_out]));
            }
        }
    }

    /// Band boundaries: about [`BAND_PIXELS`] pixels each.
    fn bands(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let height = self.height;
        let step = (BAND_PIXELS / self.width.max(1)).max(1);
        (0..height).step_by(step).map(move |y0| (y0, (y0 + step).min(height)))
    }
}

/// Label indices, one a pixel: 8-bit up to 255 labels, 16-bit beyond.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelMap {
    Narrow(Vec<u8>),
    Wide(Vec<u16>),
}

impl LabelMap {
    fn new(labels: usize, pixels: usize) -> Self {
        if labels <= u8::MAX as usize { LabelMap::Narrow(vec![0; pixels]) } else { LabelMap::Wide(vec![0; pixels]) }
    }

    pub fn len(&self) -> usize {
        match self {
            LabelMap::Narrow(v) => v.len(),
            LabelMap::Wide(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of pixel `i` (0 = unlabelled).
    pub fn get(&self, i: usize) -> usize {
        match self {
            LabelMap::Narrow(v) => v[i] as usize,
            LabelMap::Wide(v) => v[i] as usize,
        }
    }

    /// Give pixel `i` the label `label` (0 = unlabelled). A label the map's width cannot hold
    /// (above 255 in a narrow map, above 65,535 in a wide one) is a bug in the caller, which
    /// sizes the map by its labels: it panics rather than wrap into another class.
    pub fn set(&mut self, i: usize, label: usize) {
        match self {
            LabelMap::Narrow(v) => v[i] = u8::try_from(label).expect("label above 255 in an 8-bit label map"),
            LabelMap::Wide(v) => v[i] = u16::try_from(label).expect("label above 65,535 in a 16-bit label map"),
        }
    }

    /// Bits a label takes: 8 or 16.
    pub fn bits(&self) -> u32 {
        match self {
            LabelMap::Narrow(_) => 8,
            LabelMap::Wide(_) => 16,
        }
    }

    /// Every label, widened (tests and small images).
    pub fn to_vec(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

/// The classes that win at most `area` of the pixels that the class `exempt` does not win
/// (SCLIP's `area_thd`: each pixel's best class by its merged scores, then each class's count
/// against `area` times the count of all but `exempt`).
fn dropped_classes(
    maps: &ScoreMaps,
    steps: &PixelSteps,
    (width, height): (usize, usize),
    exempt: usize,
    area: f32,
) -> Vec<bool> {
    let steps = PixelSteps { area_threshold: None, dropped: Vec::new(), ..steps.clone() };
    let finisher = Finisher::new(maps, &steps, width, height);
    let (rows_out, classes) = (finisher.rows_out(), steps.classes);
    let mut counts = vec![0usize; classes];
    let (mut band, mut gates) = (Vec::new(), Vec::new());
    for (y0, y1) in finisher.bands() {
        finisher.band(y0, y1, &mut band, &mut gates);
        for scores in band.chunks_exact(rows_out) {
            let best =
                scores[..classes].iter().enumerate().fold((0, f32::MIN), |a, (c, &p)| if p > a.1 { (c, p) } else { a });
            counts[best.0] += 1;
        }
    }
    let total: usize = counts.iter().enumerate().filter(|(c, _)| *c != exempt).map(|(_, n)| n).sum();
    (0..classes).map(|c| c != exempt && (counts[c] as f32) <= area * total as f32).collect()
}

/// Label hysteresis for a video: the class each pixel took the frame before, and per cell of
/// the frame how many score points a rival must win by to take the pixel from it.
pub(crate) struct Sticky {
    pub previous: Vec<u16>,
    /// Cell side in pixels, cells across.
    pub side: usize,
    pub cols: usize,
    pub margins: Vec<f32>,
}

impl Sticky {
    fn margin(&self, x: usize, y: usize) -> f32 {
        self.margins[(y / self.side) * self.cols + x / self.side]
    }
}

/// A finished segmentation of one image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub width: usize,
    pub height: usize,
    /// The user's labels (without the background class).
    pub labels: Vec<String>,
    /// Whether the classes end with a background class (the background words' or the
    /// engine's own).
    pub background: bool,
    /// `height * width` label indices.
    pub label_map: LabelMap,
    /// Each pixel's highest class score, quantised to 0..=255 (for display).
    pub confidence: Vec<u8>,
    maps: ScoreMaps,
    steps: PixelSteps,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelShare {
    pub label: String,
    /// Fraction of the image's pixels with this label.
    pub share: f32,
}

impl Segmentation {
    /// The engine's scores `maps` for `labels` (with a last background class when
    /// `background`), finished at `width x height`: pixels whose top score is under
    /// `threshold` (the score that `steps.threshold_on` names), or whose top class is the
    /// background, stay unlabelled.
    pub fn new(
        width: usize,
        height: usize,
        labels: &[Label],
        background: bool,
        maps: ScoreMaps,
        steps: PixelSteps,
        threshold: f32,
    ) -> Self {
        Self::with_past(width, height, labels, background, maps, steps, threshold, None, None)
    }

    /// [`Segmentation::new`] for a video frame: where `sticky` remembers the class a pixel
    /// took the frame before, that class keeps the pixel unless another beats it by more than
    /// the pixel's margin. `winners`, when given (`width * height` long), gets each pixel's
    /// winning class, for the next frame.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_past(
        width: usize,
        height: usize,
        labels: &[Label],
        background: bool,
        maps: ScoreMaps,
        steps: PixelSteps,
        threshold: f32,
        sticky: Option<&Sticky>,
        mut winners: Option<&mut [u16]>,
    ) -> Self {
        let classes = labels.len() + usize::from(background);
        let mut label_map = LabelMap::new(labels.len(), width * height);
        let mut confidence = vec![0u8; width * height];
        let mut steps = steps;
        if let Some(area) = steps.area_threshold {
            steps.dropped =
                dropped_classes(&maps, &steps, (width, height), if background { classes - 1 } else { 0 }, area);
        }
        let finisher = Finisher::new(&maps, &steps, width, height);
        let rows_out = finisher.rows_out();
        debug_assert_eq!(rows_out, classes, "the engine's rows after its steps are the classes");
        let (mut band, mut gates) = (Vec::new(), Vec::new());
        for (y0, y1) in finisher.bands() {
            finisher.band(y0, y1, &mut band, &mut gates);
            for (k, (scores, &gate)) in band.chunks_exact(rows_out).zip(&gates).enumerate() {
                let i = y0 * width + k;
                let (mut best, mut top) = scores[..classes]
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (c, &p)| if p > a.1 { (c, p) } else { a });
                if let Some(sticky) = sticky {
                    let past = usize::from(sticky.previous[i]);
                    if past != best && past < classes && scores[past] >= top - sticky.margin(i % width, i / width) {
                        (best, top) = (past, scores[past]);
                    }
                }
                if let Some(winners) = winners.as_deref_mut() {
                    winners[i] = best as u16;
                }
                let unlabelled = gate < threshold || (background && best == classes - 1);
                label_map.set(i, if unlabelled { 0 } else { best + 1 });
                confidence[i] = (top.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        Segmentation {
            width,
            height,
            labels: labels.iter().map(|l| l.name.clone()).collect(),
            background,
            label_map,
            confidence,
            maps,
            steps,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len() + usize::from(self.background)
    }

    /// Pixel share of each label, then of "unlabelled" (background and below threshold).
    pub fn shares(&self) -> (Vec<LabelShare>, f32) {
        let mut counts = vec![0usize; self.labels.len() + 1];
        for i in 0..self.label_map.len() {
            counts[self.label_map.get(i)] += 1;
        }
        let n = self.label_map.len().max(1) as f32;
        let shares = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| LabelShare { label: l.clone(), share: counts[i + 1] as f32 / n })
            .collect();
        (shares, counts[0] as f32 / n)
    }

    /// The class scores at the image's resolution, `[classes, height, width]` row-major. This
    /// is classes × pixels floats: for tests and small images; [`Self::write_scores`] streams.
    pub fn scores(&self) -> Vec<f32> {
        full_scores(&self.maps, &self.steps, self.width, self.height)
    }

    /// The class scores at the image's resolution as little-endian `f32`, `[classes, height,
    /// width]`, written from `start` on (after a file header), a band at a time.
    pub fn write_scores<W: Write + Seek>(&self, out: &mut W, start: u64) -> std::io::Result<()> {
        let plane = (self.width * self.height * 4) as u64;
        let classes = self.num_classes();
        let finisher = Finisher::new(&self.maps, &self.steps, self.width, self.height);
        let (mut band, mut gates) = (Vec::new(), Vec::new());
        let mut bytes = Vec::new();
        for (y0, y1) in finisher.bands() {
            finisher.band(y0, y1, &mut band, &mut gates);
            for c in 0..classes {
                bytes.clear();
                bytes.extend(band.iter().skip(c).step_by(classes).flat_map(|v| v.to_le_bytes()));
                out.seek(SeekFrom::Start(start + c as u64 * plane + (y0 * self.width * 4) as u64))?;
                out.write_all(&bytes)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(classes: usize) -> PixelSteps {
        PixelSteps {
            softmax_scale: None,
            class_of_name: (0..classes).collect(),
            classes,
            renormalise: false,
            threshold_on: ThresholdOn::Merged,
            fold_extra: false,
            area_threshold: None,
            dropped: Vec::new(),
        }
    }

    #[test]
    fn label_map_shares_and_confidence() {
        let labels = crate::labels::parse("cat, dog").unwrap();
        // 3 pixels, classes cat, dog, background: cat wins, dog wins weakly, background wins.
        let maps =
            ScoreMaps { rows: 3, height: 1, width: 3, values: vec![0.8, 0.3, 0.1, 0.1, 0.4, 0.2, 0.1, 0.3, 0.7] };
        let seg = Segmentation::new(3, 1, &labels, true, maps.clone(), plain(3), 0.35);
        assert_eq!(seg.label_map, LabelMap::Narrow(vec![1, 2, 0]));
        let (shares, unlabelled) = seg.shares();
        assert_eq!(shares.iter().map(|s| s.share).collect::<Vec<_>>(), vec![1.0 / 3.0, 1.0 / 3.0]);
        assert!((unlabelled - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(seg.confidence, vec![204, 102, 179]);
        assert_eq!(seg.scores(), maps.values);
        // A higher threshold leaves the weak pixel unlabelled.
        assert_eq!(
            Segmentation::new(3, 1, &labels, true, maps, plain(3), 0.5).label_map,
            LabelMap::Narrow(vec![1, 0, 0])
        );
    }

    /// Upsampling follows torch's `interpolate(scale 2, bilinear, align_corners=False)` of
    /// `[[0, 1], [2, 3]]` (values computed by hand from its formula: source `(d + 0.5) / 2 - 0.5`
    /// clamped at 0).
    #[test]
    fn upsampling_is_torch_bilinear() {
        let maps = ScoreMaps { rows: 1, height: 2, width: 2, values: vec![0.0, 1.0, 2.0, 3.0] };
        let labels = crate::labels::parse("a").unwrap();
        let seg = Segmentation::new(4, 4, &labels, false, maps, plain(1), 0.0);
        let row = |y: usize| seg.scores()[y * 4..y * 4 + 4].to_vec();
        assert_eq!(row(0), vec![0.0, 0.25, 0.75, 1.0]);
        assert_eq!(row(1), vec![0.5, 0.75, 1.25, 1.5]);
        assert_eq!(row(3), vec![2.0, 2.25, 2.75, 3.0]);
    }

    /// Softmax, synonyms merged by max and renormalised; an engine row folded into background.
    #[test]
    fn pixel_steps() {
        let steps = PixelSteps {
            softmax_scale: Some(2.0),
            class_of_name: vec![0, 0, 1],
            classes: 2,
            renormalise: true,
            threshold_on: ThresholdOn::Renormalised,
            fold_extra: false,
            area_threshold: None,
            dropped: Vec::new(),
        };
        let mut input = vec![0.0, (2f32).ln() / 2.0, 0.0];
        let mut out = vec![0.0; 2];
        steps.apply(&mut input, &mut out);
        // softmax(2x) = [1, 2, 1] / 4; max per class = [2/4, 1/4]; renormalised = [2/3, 1/3].
        assert!((out[0] - 2.0 / 3.0).abs() < 1e-6 && (out[1] - 1.0 / 3.0).abs() < 1e-6, "{out:?}");
        let fold = PixelSteps {
            softmax_scale: None,
            class_of_name: vec![0, 1],
            classes: 2,
            renormalise: false,
            threshold_on: ThresholdOn::Merged,
            fold_extra: true,
            area_threshold: None,
            dropped: Vec::new(),
        };
        let mut out = vec![0.0; 2];
        fold.apply(&mut [0.2, 0.1, 0.6], &mut out);
        assert_eq!(out, vec![0.2, 0.6]);
        assert_eq!(fold.rows_out(3), 2);
        let keep = PixelSteps { fold_extra: false, ..fold };
        let mut out = vec![0.0; 3];
        keep.apply(&mut [0.2, 0.1, 0.6], &mut out);
        assert_eq!(out, vec![0.2, 0.1, 0.6]);
    }

    /// With synonyms, the papers' code thresholds the merged maximum before renormalising
    /// (NACLIP's and SCLIP's `postprocess_result`): a pixel whose best class holds 0.3 of the
    /// probability is under a threshold of 0.4 there, though renormalised it holds 0.43.
    #[test]
    fn threshold_reads_the_merged_or_the_renormalised_top() {
        let labels = crate::labels::parse("cat|kitten, dog, bird").unwrap();
        let maps = ScoreMaps { rows: 4, height: 1, width: 1, values: vec![0.3, 0.3, 0.2, 0.2] };
        let steps = |threshold_on| PixelSteps {
            softmax_scale: None,
            class_of_name: vec![0, 0, 1, 2],
            classes: 3,
            renormalise: true,
            threshold_on,
            fold_extra: false,
            area_threshold: None,
            dropped: Vec::new(),
        };
        let merged = Segmentation::new(1, 1, &labels, false, maps.clone(), steps(ThresholdOn::Merged), 0.4);
        let renormalised = Segmentation::new(1, 1, &labels, false, maps, steps(ThresholdOn::Renormalised), 0.4);
        assert_eq!((merged.label_map.get(0), renormalised.label_map.get(0)), (0, 1));
        // Either way the scores written out are renormalised.
        assert_eq!(merged.scores(), renormalised.scores());
        assert!((merged.scores()[0] - 3.0 / 7.0).abs() < 1e-6);
    }

    /// More than 255 labels give a 16-bit map; the last label's index survives.
    #[test]
    fn wide_label_maps() {
        let text: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let labels = crate::labels::parse(&text.join(",")).unwrap();
        let mut values = vec![0.0; 300];
        values[299] = 1.0;
        let maps = ScoreMaps { rows: 300, height: 1, width: 1, values };
        let seg = Segmentation::new(1, 1, &labels, false, maps, plain(300), 0.0);
        assert_eq!(seg.label_map.bits(), 16);
        assert_eq!(seg.label_map.get(0), 300);
    }
}
