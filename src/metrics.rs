//! Semantic segmentation metrics as mmsegmentation's `IoUMetric` computes them: one confusion
//! matrix accumulated over the whole split (not a mean of per-image scores), pixels labelled
//! with the ignore index left out, per-class IoU = TP / (TP + FP + FN), mIoU the mean over the
//! classes whose IoU is defined (a class absent from the ground truth and never predicted has
//! none).

use serde::Serialize;

/// Ground-truth value of pixels that do not count.
pub const IGNORE_INDEX: u8 = 255;

#[derive(Debug, Clone)]
pub struct ConfusionMatrix {
    classes: usize,
    /// `counts[gt * classes + pred]`
    counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    /// Mean IoU over classes with a defined IoU, in [0, 1].
    pub miou: f64,
    /// Per-class IoU; `None` where the class is neither in the ground truth nor predicted.
    pub iou: Vec<Option<f64>>,
    /// Correct pixels / counted pixels.
    pub pixel_accuracy: f64,
    /// Pixels that counted (not ignored).
    pub pixels: u64,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix { classes, counts: vec![0; classes * classes] }
    }

    /// Add one image. `gt` values at or above `classes` (other than the ignore index) are
    /// counted as ignored too, as mmsegmentation does.
    pub fn add(&mut self, prediction: &[u8], gt: &[u8]) -> crate::Result<()> {
        if prediction.len() != gt.len() {
            return Err(crate::Error::invalid(format!(
                "prediction has {} pixels but the ground truth has {}",
                prediction.len(),
                gt.len()
            )));
        }
        for (&p, &g) in prediction.iter().zip(gt) {
            let (p, g) = (p as usize, g as usize);
            if g == IGNORE_INDEX as usize || g >= self.classes {
                continue;
            }
            if p >= self.classes {
                return Err(crate::Error::invalid(format!("predicted class {p} is outside [0, {})", self.classes)));
            }
            self.counts[g * self.classes + p] += 1;
        }
        Ok(())
    }

    pub fn scores(&self) -> Scores {
        let c = self.classes;
        let at = |g: usize, p: usize| self.counts[g * c + p];
        let iou: Vec<Option<f64>> = (0..c)
            .map(|k| {
                let tp = at(k, k);
                let gt: u64 = (0..c).map(|p| at(k, p)).sum();
                let pred: u64 = (0..c).map(|g| at(g, k)).sum();
                let union = gt + pred - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect();
        let defined: Vec<f64> = iou.iter().flatten().copied().collect();
        let pixels: u64 = self.counts.iter().sum();
        let correct: u64 = (0..c).map(|k| at(k, k)).sum();
        Scores {
            miou: if defined.is_empty() { 0.0 } else { defined.iter().sum::<f64>() / defined.len() as f64 },
            iou,
            pixel_accuracy: if pixels == 0 { 0.0 } else { correct as f64 / pixels as f64 },
            pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_matrix() {
        // 3 classes. gt:   0 0 1 1 2 255
        //            pred: 0 1 1 1 0 2
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 1, 1, 1, 0, 2], &[0, 0, 1, 1, 2, 255]).unwrap();
        let s = m.scores();
        // class 0: tp 1, fn 1 (gt0->1), fp 1 (gt2->0): 1/3. class 1: tp 2, fp 1: 2/3. class 2: tp 0, fn 1: 0.
        let want = [1.0 / 3.0, 2.0 / 3.0, 0.0];
        for (got, want) in s.iou.iter().zip(want) {
            assert!((got.unwrap() - want).abs() < 1e-12, "{got:?} vs {want}");
        }
        assert!((s.miou - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.pixels, 5);
        assert!((s.pixel_accuracy - 3.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_are_left_out_of_the_mean_and_images_accumulate() {
        let mut m = ConfusionMatrix::new(4);
        m.add(&[0, 0], &[0, 0]).unwrap();
        m.add(&[1, 0], &[1, 1]).unwrap();
        let s = m.scores();
        assert_eq!(s.iou[2], None);
        assert_eq!(s.iou[3], None);
        // class 0: tp 2, fp 1 -> 2/3; class 1: tp 1, fn 1 -> 1/2 (pooled over both images).
        assert!((s.miou - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12, "{s:?}");
        // A perfect prediction scores 1 however the classes are spread.
        let mut m = ConfusionMatrix::new(3);
        m.add(&[2, 0, 1, 2], &[2, 0, 1, 2]).unwrap();
        assert_eq!(m.scores().miou, 1.0);
        assert!(m.add(&[5], &[0]).is_err());
        assert!(m.add(&[0], &[0, 1]).is_err());
    }
}
