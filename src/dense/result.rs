//! From per-class probabilities to what a user sees: the label map (0 = unlabelled or
//! background, i = i-th label), and each label's share of the pixels.

use serde::Serialize;

use crate::labels::Label;

/// Name of the extra class that `--background` words form.
pub const BACKGROUND: &str = "background";

/// The user's labels plus, when `background` words are given, one more class holding them
/// (last, so label indices stay the user's).
pub fn with_background(labels: &[Label], background: &[String]) -> Vec<Label> {
    let mut all = labels.to_vec();
    if !background.is_empty() {
        all.push(Label { name: BACKGROUND.into(), synonyms: background.to_vec() });
    }
    all
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
    /// `[labels (+1 background), height, width]`, row-major: probabilities summing to 1 over
    /// the first axis (dense engine), or GroupViT's group-label scores and background indicator.
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
    /// `probs` as returned by the pipeline for `with_background(labels, background)`.
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
        let label_map = super::pipeline::label_map(&probs, classes, threshold, &background_class);
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
