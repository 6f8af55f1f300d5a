//! From per-class scores to what a user sees: synonyms merged into their class, the label map
//! (0 = unlabelled or background, i = i-th label), and each label's share of the pixels.

use burn::tensor::Tensor;
use serde::Serialize;

use crate::labels::Label;

/// Name of the extra class that background words form (after the user's labels, so label
/// indices stay the user's).
pub const BACKGROUND: &str = "background";

/// Max over each class's names (SCLIP's merge); with `renormalise`, divided so the classes'
/// probabilities sum to 1 again. Extra rows after the names are kept as they are.
/// `[1, names (+extra), H, W] -> [1, classes (+extra), H, W]`
pub fn merge_synonyms(probs: Tensor<4>, class_of_name: &[usize], classes: usize, renormalise: bool) -> Tensor<4> {
    if class_of_name.len() == classes {
        return probs;
    }
    let [_, _, h, w] = probs.dims();
    let per_class = (0..classes)
        .map(|c| {
            // Names of one class are contiguous (ClassEmbeddings), and every class has one.
            let first = class_of_name.iter().position(|&x| x == c).unwrap_or(0);
            let last = class_of_name.iter().rposition(|&x| x == c).unwrap_or(first);
            probs.clone().slice([0..1, first..last + 1, 0..h, 0..w]).max_dim(1)
        })
        .collect();
    let merged = Tensor::cat(per_class, 1);
    let merged = if renormalise { merged.clone().div(merged.sum_dim(1)) } else { merged };
    let (names, rows) = (class_of_name.len(), probs.dims()[1]);
    if rows == names {
        return merged;
    }
    Tensor::cat(vec![merged, probs.slice([0..1, names..rows, 0..h, 0..w])], 1)
}

/// Label map from scores `[classes, H, W]` (host, row-major): `1 + argmax`, or 0 where the top
/// score is under `threshold` or the top class is one of `background`.
pub fn label_map(probs: &[f32], classes: usize, threshold: f32, background: &[usize]) -> Vec<u8> {
    let n = probs.len() / classes.max(1);
    (0..n)
        .map(|i| {
            let (best, p) =
                (0..classes).map(|c| (c, probs[c * n + i])).fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
            if p < threshold || background.contains(&best) { 0 } else { (best + 1) as u8 }
        })
        .collect()
}

/// A finished segmentation of one image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub width: usize,
    pub height: usize,
    /// The user's labels (without the background class).
    pub labels: Vec<String>,
    /// Whether `probs` has a last row for the background class.
    pub background: bool,
    /// `[labels (+1 background), height, width]`, row-major: the engine's scores (the dense
    /// engine's probabilities, GroupViT's group-label scores and background indicator).
    pub probs: Vec<f32>,
    /// `height * width` label indices.
    pub label_map: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelShare {
    pub label: String,
    /// Fraction of the image's pixels with this label.
    pub share: f32,
}

impl Segmentation {
    /// `probs` as an engine returns them for `labels`, with a last background row when
    /// `background`; pixels whose top score is under `threshold` stay unlabelled.
    pub fn new(
        width: usize,
        height: usize,
        labels: &[Label],
        background: bool,
        probs: Vec<f32>,
        threshold: f32,
    ) -> Self {
        let classes = labels.len() + usize::from(background);
        let background_class: Vec<usize> = if background { vec![labels.len()] } else { vec![] };
        let label_map = label_map(&probs, classes, threshold, &background_class);
        Segmentation {
            width,
            height,
            labels: labels.iter().map(|l| l.name.clone()).collect(),
            background,
            probs,
            label_map,
        }
    }

    /// Each pixel's highest class probability, quantised to 0..=255 (for display).
    pub fn confidence(&self) -> Vec<u8> {
        let n = self.label_map.len();
        (0..n)
            .map(|i| {
                let p = (0..self.num_classes()).map(|c| self.probs[c * n + i]).fold(0f32, f32::max);
                (p.clamp(0.0, 1.0) * 255.0).round() as u8
            })
            .collect()
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len() + usize::from(self.background)
    }

    /// Pixel share of each label, then of "unlabelled" (background and below threshold).
    pub fn shares(&self) -> (Vec<LabelShare>, f32) {
        let mut counts = vec![0usize; self.labels.len() + 1];
        for &l in &self.label_map {
            counts[l as usize] += 1;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_map_shares_and_confidence() {
        let labels = crate::labels::parse("cat, dog").unwrap();
        // 3 pixels, classes cat, dog, background: cat wins, dog wins weakly, background wins.
        let probs = vec![0.8, 0.3, 0.1, 0.1, 0.4, 0.2, 0.1, 0.3, 0.7];
        let seg = Segmentation::new(3, 1, &labels, true, probs.clone(), 0.35);
        assert_eq!(seg.label_map, vec![1, 2, 0]);
        let (shares, unlabelled) = seg.shares();
        assert_eq!(shares.iter().map(|s| s.share).collect::<Vec<_>>(), vec![1.0 / 3.0, 1.0 / 3.0]);
        assert!((unlabelled - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(seg.confidence(), vec![204, 102, 179]);
        // A higher threshold leaves the weak pixel unlabelled.
        assert_eq!(Segmentation::new(3, 1, &labels, true, probs, 0.5).label_map, vec![1, 0, 0]);
    }
}
