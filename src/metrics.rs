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

/// The few-shot benchmarks' metric as the Fusioner repository computes it (chaofanma/Fusioner
/// @ 01985ed, `utils/metric.py` `Metric`, after HSNet's `common/evaluation.py`): each episode
/// adds its query's background and foreground intersection and union (pixels whose truth is
/// ignored left out of both) to the buffers of its class; mIoU is the mean foreground IoU over
/// the classes whose foreground union is not zero, FB-IoU the mean of the background and
/// foreground IoUs, each pooled over those classes. An episode whose truth has no pixel of its
/// class is not counted (`utils/utils.py` `update_metric`). The repository keeps the counts in
/// float32, exact below 2^24 pixels a buffer; here they are integers.
#[derive(Debug, Clone)]
pub struct EpisodeMetric {
    /// `[background, foreground]` per class value.
    intersection: Vec<[u64; 2]>,
    union: Vec<[u64; 2]>,
    /// Episodes counted, and skipped for an empty truth.
    pub counted: usize,
    pub skipped: usize,
}

/// What [`EpisodeMetric`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeScores {
    /// Mean foreground IoU over the classes counted; `None` before any episode counts.
    pub miou: Option<f64>,
    /// Mean of background and foreground IoU pooled over those classes.
    pub fb_iou: Option<f64>,
    /// Each class value's foreground IoU; `None` where its foreground union is zero.
    pub iou: Vec<Option<f64>>,
}

impl EpisodeMetric {
    /// Buffers for class values `0..classes`.
    pub fn new(classes: usize) -> Self {
        EpisodeMetric { intersection: vec![[0; 2]; classes], union: vec![[0; 2]; classes], counted: 0, skipped: 0 }
    }

    /// Add one episode of class value `class`: `foreground` the prediction per pixel, `truth`
    /// 1 (the class), 0 or [`IGNORE_INDEX`]. Returns whether it counted.
    pub fn add(&mut self, class: usize, foreground: &[bool], truth: &[u8]) -> crate::Result<bool> {
        if foreground.len() != truth.len() {
            return Err(crate::Error::invalid(format!(
                "prediction has {} pixels but the ground truth has {}",
                foreground.len(),
                truth.len()
            )));
        }
        if class >= self.union.len() {
            return Err(crate::Error::invalid(format!("class {class} is outside [0, {})", self.union.len())));
        }
        if !truth.contains(&1) {
            self.skipped += 1;
            return Ok(false);
        }
        let (mut inter, mut pred, mut gt) = ([0u64; 2], [0u64; 2], [0u64; 2]);
        for (&p, &g) in foreground.iter().zip(truth) {
            if g == IGNORE_INDEX {
                continue;
            }
            let (p, g) = (usize::from(p), usize::from(g == 1));
            pred[p] += 1;
            gt[g] += 1;
            if p == g {
                inter[p] += 1;
            }
        }
        for b in 0..2 {
            self.intersection[class][b] += inter[b];
            self.union[class][b] += pred[b] + gt[b] - inter[b];
        }
        self.counted += 1;
        Ok(true)
    }

    pub fn scores(&self) -> EpisodeScores {
        let iou: Vec<Option<f64>> = (0..self.union.len())
            .map(|c| (self.union[c][1] != 0).then(|| self.intersection[c][1] as f64 / self.union[c][1] as f64))
            .collect();
        let kept: Vec<usize> = (0..iou.len()).filter(|&c| iou[c].is_some()).collect();
        if kept.is_empty() {
            return EpisodeScores { miou: None, fb_iou: None, iou };
        }
        let miou = kept.iter().map(|&c| iou[c].unwrap_or(0.0)).sum::<f64>() / kept.len() as f64;
        let pooled = |b: usize| {
            let i: u64 = kept.iter().map(|&c| self.intersection[c][b]).sum();
            let u: u64 = kept.iter().map(|&c| self.union[c][b]).sum();
            i as f64 / u as f64
        };
        EpisodeScores { miou: Some(miou), fb_iou: Some((pooled(0) + pooled(1)) / 2.0), iou }
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

    /// Two episodes by hand: the metric pools per class, skips an empty truth and ignores 255.
    #[test]
    fn episodes_pool_per_class_as_the_repository_does() {
        let mut m = EpisodeMetric::new(3);
        // class 1: pred 1 1 0 0 | truth 1 0 1 255 -> fg inter 1, union 3; bg inter 0, union 2
        assert!(m.add(1, &[true, true, false, false], &[1, 0, 1, 255]).unwrap());
        // class 2: pred 0 1 | truth 0 1 -> fg 1/1, bg 1/1
        assert!(m.add(2, &[false, true], &[0, 1]).unwrap());
        // an empty truth is skipped
        assert!(!m.add(1, &[true], &[0]).unwrap());
        let s = m.scores();
        assert_eq!((m.counted, m.skipped), (2, 1));
        assert_eq!(s.iou, vec![None, Some(1.0 / 3.0), Some(1.0)]);
        assert!((s.miou.unwrap() - (1.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        // FB-IoU pools the counts: bg 1 / 3, fg 2 / 4 -- not the mean of per-class values.
        assert!((s.fb_iou.unwrap() - (1.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12, "{s:?}");
        assert!(m.add(3, &[true], &[1]).is_err());
        assert_eq!(EpisodeMetric::new(2).scores().miou, None);
    }
}
