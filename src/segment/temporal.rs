//! Temporal consistency for video: each frame's class scores averaged with the frames before,
//! except where the picture changed, and objects that keep their id from frame to frame.
//!
//! A [`Video`] is the state a stream of frames carries; [`super::segment_frame`] is the one
//! entry that uses it (the CLI's `segment --video`, and the page's camera). Still images go
//! through [`super::segment`], which never reads it, and networks know nothing of it.
//!
//! **Smoothing.** The engine's scores, at its own resolution and before they become a label
//! map, are replaced by an exponential moving average over frames, `s_t = w s_{t-1} + (1 - w)
//! x_t`, with `w = S (1 - m)` per pixel: `S` in [0, 1] the strength (0 leaves every frame's
//! scores as they are, exactly), `m` in [0, 1] how much the picture changed there. Averaging the
//! scores rather than the labels keeps a flip for a pixel whose evidence moved, not for one whose
//! noise did: under noise of one level per frame, the average's noise is `sqrt((1 - S) / (1 +
//! S))` of it (0.42 at `S` = 0.7).
//!
//! **Motion reset, by cell differences.** The frame is cut into square cells (about 24 across
//! its short side, at least [`MIN_CELL`] pixels a side, so that sensor noise averages out over a
//! cell's pixels) and each cell's mean colour is compared with the colour the state remembers
//! for it (an average made with the same weights as the scores, so a slow drift adds up until
//! it counts). The largest of the three channels' differences, from [`MOTION_LOW`] to
//! [`MOTION_HIGH`] levels, takes `m` from 0 to 1, and a cell's `m` spreads to its eight
//! neighbours, since a network's patch sees past its edges. A per-pixel difference was chosen
//! over a global-motion estimate because the camera mode's scenes are mostly still cameras with
//! things moving in them, which one global shift cannot describe; a difference resets the
//! places that changed whatever moved them, a pan included, for about a hundred operations a
//! cell and no search.
//!
//! **Scene cut.** A frame whose colour histogram (4 levels a channel, 64 bins) differs from the
//! previous frame's by more than [`CUT_HISTOGRAM`] (total variation: the share of pixels that
//! would have to change bins), or in which more than [`CUT_CHANGED`] of the cells changed fully,
//! starts afresh: scores and objects. The cell rule alone would already reset every changed
//! pixel; the cut also ends every object (nothing of the last shot is the same thing) and keeps
//! cells that changed less than [`MOTION_HIGH`] from mixing two shots.
//!
//! **Words and sizes.** Other words or settings, or another frame or score size, start afresh
//! too, so the state never mixes classes or resolutions.
//!
//! **Objects.** Each word's 8-connected regions of at least [`TemporalOptions::min_area`] of the
//! frame are matched to the objects of the frames before by mask IoU (greedy, best pair first,
//! the same word only, at least [`TemporalOptions::min_iou`]). A region that matches nothing
//! becomes a candidate that gets an id once seen in [`TemporalOptions::birth`] frames in a row
//! (a speck of one frame never gets one); an object not seen keeps its id for
//! [`TemporalOptions::death`] − 1 frames and is forgotten at the `death`-th. Ids count up from 1
//! and are never given twice in one video.

use serde::Serialize;

use super::objects::{Object, RunMask};
use super::refine::regions;
use super::result::{ScoreMaps, Segmentation, Sticky};
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::preprocess::RgbImage;

/// The strength a video gets when none is asked for: the synthetic video's flicker falls by
/// more than half at it while the moving shapes' IoU holds (tests/native/video.rs prints both).
pub const VIDEO_STRENGTH: f32 = 0.7;
/// Cells across the frame's short side: about a network patch at 336 pixels (16 pixels there).
pub const CELLS_SHORT_SIDE: usize = 24;
/// Smallest cell side in pixels: 64 pixels averaged divide a pixel's noise by 8.
pub const MIN_CELL: usize = 8;
/// A cell whose colour moved by this many levels (of 255) or less keeps its past in full.
pub const MOTION_LOW: f32 = 10.0;
/// A cell whose colour moved by this many levels or more starts afresh.
pub const MOTION_HIGH: f32 = 30.0;
/// Histogram change (total variation, 0..1) above which a frame is a scene cut.
pub const CUT_HISTOGRAM: f32 = 0.5;
/// Share of cells changed by [`MOTION_HIGH`] or more above which a frame is a scene cut.
pub const CUT_CHANGED: f32 = 0.75;
/// Score points (of the finished scores, probabilities for most engines) by which another
/// class must beat the class a still pixel took the frame before to take it over.
pub const HYSTERESIS: f32 = 0.02;

/// How a video is kept steady.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemporalOptions {
    /// Weight of the past in the scores' moving average, in [0, 1]; 0 turns smoothing off.
    pub strength: f32,
    /// Start afresh where the picture changed (off only to show what it prevents).
    pub motion_reset: bool,
    /// Start afresh at a scene cut (off only to show what it prevents).
    pub cut_reset: bool,
    /// Label hysteresis: score points by which another class must beat the class a still
    /// pixel took the frame before (less where the picture moved, none where it changed
    /// fully); 0 turns it off, and smoothing off (strength 0) turns it off too.
    pub hysteresis: f32,
    /// Frames in a row a region must be seen before it gets an id.
    pub birth: usize,
    /// Frames in a row an object may be missed; at this many it is forgotten.
    pub death: usize,
    /// Least mask IoU with an object of the frames before for a region to be that object.
    pub min_iou: f32,
    /// Least share of the frame a region covers to be tracked.
    pub min_area: f32,
}

impl Default for TemporalOptions {
    fn default() -> Self {
        TemporalOptions {
            strength: VIDEO_STRENGTH,
            motion_reset: true,
            cut_reset: true,
            hysteresis: HYSTERESIS,
            birth: 2,
            death: 3,
            min_iou: 0.3,
            min_area: 0.002,
        }
    }
}

impl TemporalOptions {
    /// The options with strength `s`, refused outside [0, 1].
    pub fn with_strength(strength: f32) -> Result<Self> {
        let options = TemporalOptions { strength, ..Self::default() };
        options.validate()?;
        Ok(options)
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(Error::invalid(format!("smoothing strength must be in [0, 1], got {}", self.strength)));
        }
        if !(0.0..=1.0).contains(&self.hysteresis) {
            return Err(Error::invalid(format!("label hysteresis must be in [0, 1], got {}", self.hysteresis)));
        }
        if !(self.min_iou > 0.0 && self.min_iou <= 1.0) {
            return Err(Error::invalid(format!("the objects' least IoU must be in (0, 1], got {}", self.min_iou)));
        }
        if !(0.0..=1.0).contains(&self.min_area) {
            return Err(Error::invalid(format!("the objects' least area must be in [0, 1], got {}", self.min_area)));
        }
        if self.birth == 0 || self.death == 0 {
            return Err(Error::invalid("an object's birth and death take at least one frame each"));
        }
        Ok(())
    }
}

/// Why a frame started afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    /// The video's first frame.
    First,
    /// Other words or settings than the frame before.
    Words,
    /// Another frame size (or score size) than the frame before.
    Size,
    /// A scene cut.
    Cut,
}

/// What one frame did to the video's state.
#[derive(Debug, Clone, Serialize)]
pub struct FrameReport {
    /// The frame's number in the video, from 1.
    pub frame: usize,
    /// Why it started afresh, if it did.
    pub reset: Option<Reset>,
    /// Share of cells whose colour changed by [`MOTION_HIGH`] or more.
    pub moving: f32,
    /// Histogram change from the frame before (total variation, 0..1).
    pub histogram_change: f32,
    /// The objects with an id, by id; their masks are the label map's regions.
    pub objects: Vec<Object>,
}

/// A frame cut into cells: each cell's mean colour.
struct Cells {
    side: usize,
    cols: usize,
    rows: usize,
    colours: Vec<[f32; 3]>,
}

impl Cells {
    fn of(frame: &RgbImage) -> Cells {
        let (w, h) = (frame.width, frame.height);
        let side = (w.min(h) / CELLS_SHORT_SIDE).max(MIN_CELL);
        let (cols, rows) = (w.div_ceil(side), h.div_ceil(side));
        let mut sums = vec![[0f32; 4]; cols * rows];
        for y in 0..h {
            let row = &frame.data[y * w * 3..(y + 1) * w * 3];
            for (x, p) in row.chunks_exact(3).enumerate() {
                let s = &mut sums[(y / side) * cols + x / side];
                for c in 0..3 {
                    s[c] += f32::from(p[c]);
                }
                s[3] += 1.0;
            }
        }
        let colours = sums.iter().map(|s| [s[0] / s[3], s[1] / s[3], s[2] / s[3]]).collect();
        Cells { side, cols, rows, colours }
    }
}

/// The frame's colour histogram: 4 levels a channel, as shares.
fn histogram(frame: &RgbImage) -> Vec<f32> {
    let mut bins = vec![0f32; 64];
    for p in frame.data.chunks_exact(3) {
        bins[usize::from(p[0] >> 6) * 16 + usize::from(p[1] >> 6) * 4 + usize::from(p[2] >> 6)] += 1.0;
    }
    let n = (frame.width * frame.height).max(1) as f32;
    bins.iter_mut().for_each(|b| *b /= n);
    bins
}

/// What the video remembers of the frames before.
struct State {
    words: String,
    settings: String,
    size: [usize; 5],
    /// The scores' moving average, as the engine's `[rows, height, width]`.
    scores: Vec<f32>,
    /// Each cell's colour, averaged with the weights its scores got.
    colours: Vec<[f32; 3]>,
    /// The previous frame's histogram.
    histogram: Vec<f32>,
    /// The class each pixel of the previous frame took.
    winners: Option<Vec<u16>>,
}

/// What smoothing did to one frame, for [`Video::track`].
#[derive(Debug, Clone)]
pub(crate) struct Step {
    reset: Option<Reset>,
    moving: f32,
    histogram_change: f32,
    /// Per cell, the hysteresis margin (none after a reset or with smoothing off).
    margins: Option<(usize, usize, Vec<f32>)>,
}

/// One object followed over frames.
struct Track {
    /// 0 while a candidate.
    id: u32,
    class: usize,
    mask: RunMask,
    bbox: [usize; 4],
    seen: usize,
    missed: usize,
}

/// The state a stream of frames carries: the scores' moving average and the objects.
/// [`Video::default`] has the default options ([`VIDEO_STRENGTH`]).
#[derive(Default)]
pub struct Video {
    pub options: TemporalOptions,
    frame: usize,
    state: Option<State>,
    tracks: Vec<Track>,
    /// Ids given so far: the next is one more.
    ids_given: u32,
    /// With sharp edges, the previous frame's objects, whose boxes prompt the next frame.
    sharp_objects: Vec<Object>,
}

impl Video {
    pub fn new(options: TemporalOptions) -> Result<Video> {
        options.validate()?;
        Ok(Video { options, ..Video::default() })
    }

    /// Set the smoothing strength, refused outside [0, 1]; what the frames before left is kept
    /// (a camera's slider moves without starting afresh).
    pub fn set_strength(&mut self, strength: f32) -> Result<()> {
        let options = TemporalOptions { strength, ..self.options.clone() };
        options.validate()?;
        self.options = options;
        Ok(())
    }

    /// Forget the frames before (another model, or a stream that restarts); ids go on counting.
    pub fn reset(&mut self) {
        self.state = None;
        self.tracks.clear();
        self.sharp_objects.clear();
    }

    /// The previous frame's sharp objects, for the frame `step` smoothed: none after a reset.
    pub(crate) fn objects_before(&self, step: &Step) -> Vec<Object> {
        if step.reset.is_some() { Vec::new() } else { self.sharp_objects.clone() }
    }

    /// Keep the frame's sharp objects for the next frame's prompts.
    pub(crate) fn follow(&mut self, objects: Vec<Object>) {
        self.sharp_objects = objects;
    }

    /// Frames seen so far.
    pub fn frames(&self) -> usize {
        self.frame
    }

    /// Smooth `maps`, the engine's scores of `frame` for `labels` under `settings` (as their
    /// debug text: anything that changes them starts afresh), in place.
    pub(crate) fn smooth(&mut self, frame: &RgbImage, labels: &[Label], settings: &str, maps: &mut ScoreMaps) -> Step {
        self.frame += 1;
        let words = format!("{labels:?}");
        let size = [frame.width, frame.height, maps.rows, maps.height, maps.width];
        let cells = Cells::of(frame);
        let histogram = histogram(frame);
        let mut step = Step { reset: None, moving: 0.0, histogram_change: 0.0, margins: None };
        let fresh = || State {
            words: words.clone(),
            settings: settings.to_string(),
            size,
            scores: maps.values.clone(),
            colours: cells.colours.clone(),
            histogram: histogram.clone(),
            winners: None,
        };
        let reset = match &self.state {
            None => Some(Reset::First),
            Some(s) if s.words != words || s.settings != settings => Some(Reset::Words),
            Some(s) if s.size != size => Some(Reset::Size),
            Some(_) => None,
        };
        if let Some(reset) = reset {
            step.reset = Some(reset);
            self.state = Some(fresh());
            return step;
        }
        let Some(state) = self.state.as_mut() else { return step };
        // How far each cell moved from what the state remembers.
        let moved: Vec<f32> = cells
            .colours
            .iter()
            .zip(&state.colours)
            .map(|(a, b)| (0..3).map(|c| (a[c] - b[c]).abs()).fold(0.0, f32::max))
            .collect();
        step.moving = moved.iter().filter(|&&d| d >= MOTION_HIGH).count() as f32 / moved.len().max(1) as f32;
        step.histogram_change = 0.5 * histogram.iter().zip(&state.histogram).map(|(a, b)| (a - b).abs()).sum::<f32>();
        if self.options.cut_reset && (step.histogram_change > CUT_HISTOGRAM || step.moving > CUT_CHANGED) {
            step.reset = Some(Reset::Cut);
            *state = fresh();
            return step;
        }
        // The past's weight in each cell: the strength, less where the cell or a neighbour moved.
        let (cols, rows) = (cells.cols, cells.rows);
        let change = |d: f32| ((d - MOTION_LOW) / (MOTION_HIGH - MOTION_LOW)).clamp(0.0, 1.0);
        let weights: Vec<f32> = (0..rows * cols)
            .map(|k| {
                let (cx, cy) = (k % cols, k / cols);
                let mut m: f32 = 0.0;
                if self.options.motion_reset {
                    for ny in cy.saturating_sub(1)..(cy + 2).min(rows) {
                        for nx in cx.saturating_sub(1)..(cx + 2).min(cols) {
                            m = m.max(change(moved[ny * cols + nx]));
                        }
                    }
                }
                self.options.strength * (1.0 - m)
            })
            .collect();
        for ((kept, now), &w) in state.colours.iter_mut().zip(&cells.colours).zip(&weights) {
            for c in 0..3 {
                kept[c] = w * kept[c] + (1.0 - w) * now[c];
            }
        }
        // Each score pixel takes the weight of the cell its centre falls in.
        let (mw, mh) = (maps.width, maps.height);
        let plane = mw * mh;
        let cell_of = |n: usize, of: usize, frame: usize| ((2 * n + 1) * frame / (2 * of)) / cells.side;
        let columns: Vec<usize> = (0..mw).map(|x| cell_of(x, mw, frame.width).min(cols - 1)).collect();
        for y in 0..mh {
            let cy = cell_of(y, mh, frame.height).min(rows - 1);
            for (x, &cx) in columns.iter().enumerate() {
                let w = weights[cy * cols + cx];
                let p = y * mw + x;
                for r in 0..maps.rows {
                    let i = r * plane + p;
                    let s = w * state.scores[i] + (1.0 - w) * maps.values[i];
                    state.scores[i] = s;
                    maps.values[i] = s;
                }
            }
        }
        state.histogram = histogram;
        if self.options.strength > 0.0 && self.options.hysteresis > 0.0 {
            let margins = weights.iter().map(|w| self.options.hysteresis * w / self.options.strength).collect();
            step.margins = Some((cells.side, cols, margins));
        }
        step
    }

    /// The hysteresis for the frame `step` smoothed: the previous frame's classes, with the
    /// step's margins.
    pub(crate) fn sticky(&mut self, step: &Step) -> Option<Sticky> {
        let (side, cols, margins) = step.margins.clone()?;
        let previous = self.state.as_mut()?.winners.take()?;
        Some(Sticky { previous, side, cols, margins })
    }

    /// Keep the classes the frame's pixels took, for the next frame's hysteresis.
    pub(crate) fn remember(&mut self, winners: Vec<u16>) {
        if let Some(state) = self.state.as_mut() {
            state.winners = Some(winners);
        }
    }

    /// Follow the objects of `seg`, the frame's finished segmentation.
    pub(crate) fn track(&mut self, seg: &Segmentation, step: Step) -> FrameReport {
        if step.reset.is_some() {
            self.tracks.clear();
        }
        let (w, h) = (seg.width, seg.height);
        let least = ((self.options.min_area * (w * h) as f32).ceil() as usize).max(1);
        let found: Vec<(usize, RunMask, [usize; 4], f32)> = regions(|i| seg.label_map.get(i), &seg.confidence, w, h)
            .into_iter()
            .filter(|r| r.area >= least)
            .map(|mut r| {
                r.pixels.sort_unstable();
                let sum: u64 = r.pixels.iter().map(|&i| u64::from(seg.confidence[i as usize])).sum();
                let score = sum as f32 / (255.0 * r.area as f32);
                (r.label - 1, RunMask::from_sorted(&r.pixels, w, h), r.bbox, score)
            })
            .collect();
        // Every pair of one word whose boxes meet, best IoU first.
        let meet = |a: &[usize; 4], b: &[usize; 4]| a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3];
        let mut pairs = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (r, (class, mask, bbox, _)) in found.iter().enumerate() {
                if *class != track.class || !meet(&track.bbox, bbox) {
                    continue;
                }
                let inter = track.mask.intersection_area(mask);
                let iou = inter as f32 / (track.mask.area() + mask.area() - inter).max(1) as f32;
                // A region that holds most of the object is the object, merged with something
                // of its word that touches it (their IoU alone would lose the id).
                let holds = 2 * inter >= track.mask.area();
                if iou >= self.options.min_iou || holds {
                    pairs.push((iou, t, r));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let (mut track_of, mut taken) = (vec![None; found.len()], vec![false; self.tracks.len()]);
        for (_, t, r) in pairs {
            if !taken[t] && track_of[r].is_none() {
                taken[t] = true;
                track_of[r] = Some(t);
            }
        }
        for (track, &matched) in self.tracks.iter_mut().zip(&taken) {
            if !matched {
                track.missed += 1;
            }
        }
        let mut objects = Vec::new();
        for (r, (class, mask, bbox, score)) in found.into_iter().enumerate() {
            let t = match track_of[r] {
                Some(t) => t,
                None => {
                    self.tracks.push(Track { id: 0, class, mask: RunMask::empty(w, h), bbox, seen: 0, missed: 0 });
                    self.tracks.len() - 1
                }
            };
            let track = &mut self.tracks[t];
            track.mask = mask.clone();
            track.bbox = bbox;
            track.seen += 1;
            track.missed = 0;
            if track.id == 0 && track.seen >= self.options.birth {
                self.ids_given += 1;
                track.id = self.ids_given;
            }
            if track.id > 0 {
                let label = seg.labels.get(class).cloned();
                objects.push(Object::of_mask(track.id, Some(class), label, score, mask));
            }
        }
        // A candidate missed once, or an object missed `death` times, is forgotten.
        let death = self.options.death;
        self.tracks.retain(|t| t.missed == 0 || (t.id > 0 && t.missed < death));
        objects.sort_by_key(|o| o.id);
        FrameReport {
            frame: self.frame,
            reset: step.reset,
            moving: step.moving,
            histogram_change: step.histogram_change,
            objects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> RgbImage {
        let data = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| f(x, y)).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    fn maps(values: Vec<f32>, w: usize, h: usize) -> ScoreMaps {
        ScoreMaps { rows: values.len() / (w * h), height: h, width: w, values }
    }

    /// Strength 0 leaves the scores exactly as they were; a still picture averages them.
    #[test]
    fn still_pixels_average_and_strength_zero_is_off() {
        let labels = crate::labels::parse("a").unwrap();
        let grey = frame(32, 32, |_, _| [100, 100, 100]);
        for (strength, expected) in [(0.0, 0.0), (0.5, 0.5)] {
            let mut video = Video::new(TemporalOptions::with_strength(strength).unwrap()).unwrap();
            let mut first = maps(vec![1.0; 4], 2, 2);
            assert_eq!(video.smooth(&grey, &labels, "", &mut first).reset, Some(Reset::First));
            let mut second = maps(vec![0.0; 4], 2, 2);
            assert_eq!(video.smooth(&grey, &labels, "", &mut second).reset, None);
            assert_eq!(second.values, vec![expected; 4]);
        }
    }

    /// Where a cell's colour changed, its pixels (and its neighbours') start afresh; far from
    /// it the past is kept. Off, the change is averaged in everywhere.
    #[test]
    fn motion_resets_where_the_picture_changed() {
        let labels = crate::labels::parse("a").unwrap();
        let (w, h) = (64, 64); // cells of 8: 8 x 8 cells
        let before = frame(w, h, |_, _| [0, 0, 255]);
        let after = frame(w, h, |x, y| if x < 8 && y < 8 { [255, 0, 0] } else { [0, 0, 255] });
        for motion_reset in [true, false] {
            let options = TemporalOptions { strength: 0.8, motion_reset, ..TemporalOptions::default() };
            let mut video = Video::new(options).unwrap();
            video.smooth(&before, &labels, "", &mut maps(vec![1.0; 64 * 64], w, h));
            let mut now = maps(vec![0.0; 64 * 64], w, h);
            let step = video.smooth(&after, &labels, "", &mut now);
            assert_eq!(step.reset, None);
            let at = |x: usize, y: usize| now.values[y * w + x];
            if motion_reset {
                assert_eq!((at(3, 3), at(12, 12)), (0.0, 0.0), "the cell and its neighbour start afresh");
            } else {
                assert!((at(3, 3) - 0.8).abs() < 1e-6);
            }
            assert!((at(40, 40) - 0.8).abs() < 1e-6, "a still cell keeps its past");
        }
    }

    /// Another picture altogether is a cut; other words and sizes start afresh too.
    #[test]
    fn cuts_words_and_sizes_start_afresh() {
        let labels = crate::labels::parse("a").unwrap();
        let blue = frame(32, 32, |_, _| [0, 0, 255]);
        let red = frame(32, 32, |_, _| [255, 0, 0]);
        let mut video = Video::new(TemporalOptions::default()).unwrap();
        video.smooth(&blue, &labels, "", &mut maps(vec![1.0; 4], 2, 2));
        let step = video.smooth(&red, &labels, "", &mut maps(vec![0.0; 4], 2, 2));
        assert_eq!(step.reset, Some(Reset::Cut));
        assert!(step.histogram_change > 0.99, "{}", step.histogram_change);
        let other = crate::labels::parse("b").unwrap();
        assert_eq!(video.smooth(&red, &other, "", &mut maps(vec![0.0; 4], 2, 2)).reset, Some(Reset::Words));
        assert_eq!(video.smooth(&red, &other, "x", &mut maps(vec![0.0; 4], 2, 2)).reset, Some(Reset::Words));
        assert_eq!(video.smooth(&red, &other, "x", &mut maps(vec![0.0; 9], 3, 3)).reset, Some(Reset::Size));
        let mut off = Video::new(TemporalOptions { cut_reset: false, ..TemporalOptions::default() }).unwrap();
        off.smooth(&blue, &labels, "", &mut maps(vec![1.0; 4], 2, 2));
        assert_eq!(off.smooth(&red, &labels, "", &mut maps(vec![0.0; 4], 2, 2)).reset, None);
    }

    /// The finishing steps of two words' scores taken as they are.
    fn plain_steps() -> super::super::result::PixelSteps {
        super::super::result::PixelSteps {
            softmax_scale: None,
            class_of_name: vec![0, 1],
            classes: 2,
            renormalise: false,
            threshold_on: super::super::result::ThresholdOn::Merged,
            fold_extra: false,
            area_threshold: None,
            dropped: Vec::new(),
        }
    }

    /// A 20 x 20 segmentation of two words, with squares `(x, y, side, word)` on unlabelled
    /// ground.
    fn squares(list: &[(usize, usize, usize, usize)]) -> Segmentation {
        let n = 20;
        let mut values = vec![0f32; 2 * n * n];
        for &(x0, y0, side, word) in list {
            for y in y0..y0 + side {
                for x in x0..x0 + side {
                    values[(word - 1) * n * n + y * n + x] = 1.0;
                }
            }
        }
        let labels = crate::labels::parse("a, b").unwrap();
        Segmentation::new(n, n, &labels, false, maps(values, n, n), plain_steps(), 0.5)
    }

    /// Ids come after two frames, follow a moving square, survive two missed frames, and are
    /// not given again once forgotten; a one-frame speck never gets one.
    #[test]
    fn objects_keep_their_ids_with_hysteresis() {
        let mut video = Video::new(TemporalOptions::default()).unwrap();
        let step = |reset| Step { reset, moving: 0.0, histogram_change: 0.0, margins: None };
        let mut ids = |list: &[(usize, usize, usize, usize)], reset| {
            let report = video.track(&squares(list), step(reset));
            report.objects.iter().map(|o| (o.id, o.class.unwrap_or(9))).collect::<Vec<_>>()
        };
        assert_eq!(ids(&[(2, 2, 6, 1)], Some(Reset::First)), vec![]);
        assert_eq!(ids(&[(3, 2, 6, 1), (12, 12, 5, 2)], None), vec![(1, 0)]);
        assert_eq!(ids(&[(4, 3, 6, 1), (12, 12, 5, 2), (18, 0, 1, 1)], None), vec![(1, 0), (2, 1)]);
        // The square is gone for two frames (a word of the other class in its place does not
        // take its id), then back: the same id.
        assert_eq!(ids(&[(12, 12, 5, 2), (4, 3, 6, 2)], None), vec![(2, 1)]);
        assert_eq!(ids(&[(12, 12, 5, 2)], None), vec![(2, 1)]);
        assert_eq!(ids(&[(5, 3, 6, 1), (12, 12, 5, 2)], None), vec![(1, 0), (2, 1)]);
        // Three frames away: forgotten, and back it is a new object with a new id.
        for _ in 0..3 {
            assert_eq!(ids(&[(12, 12, 5, 2)], None), vec![(2, 1)]);
        }
        assert_eq!(ids(&[(5, 3, 6, 1), (12, 12, 5, 2)], None), vec![(2, 1)]);
        assert_eq!(ids(&[(5, 3, 6, 1), (12, 12, 5, 2)], None), vec![(2, 1), (3, 0)]);
        // A cut ends every object.
        assert_eq!(ids(&[(5, 3, 6, 1), (12, 12, 5, 2)], Some(Reset::Cut)), vec![]);
    }

    /// A still pixel keeps its word until another beats it by more than the margin; with no
    /// hysteresis it changes at the first lead.
    #[test]
    fn labels_hold_until_another_word_leads_by_the_margin() {
        let labels = crate::labels::parse("a, b").unwrap();
        let grey = frame(32, 32, |_, _| [100, 100, 100]);
        let words = |hysteresis: f32, frames: &[[f32; 2]]| -> Vec<usize> {
            let options = TemporalOptions { strength: 0.1, hysteresis, ..TemporalOptions::default() };
            let mut video = Video::new(options).unwrap();
            frames
                .iter()
                .map(|&[a, b]| {
                    let mut scores = maps(vec![a, b], 1, 1);
                    let step = video.smooth(&grey, &labels, "", &mut scores);
                    let sticky = video.sticky(&step);
                    let mut winners = vec![0u16; 32 * 32];
                    let seg = Segmentation::with_past(
                        32,
                        32,
                        &labels,
                        false,
                        scores,
                        plain_steps(),
                        0.0,
                        sticky.as_ref(),
                        Some(&mut winners),
                    );
                    video.remember(winners);
                    seg.label_map.get(0)
                })
                .collect()
        };
        // Smoothed: (0.6, 0.4), then (0.42, 0.58): b leads by 0.16, then (0.222, 0.778).
        let frames = [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]];
        assert_eq!(words(0.2, &frames), vec![1, 1, 2], "a lead of 0.16 is under the margin of 0.2");
        assert_eq!(words(0.0, &frames), vec![1, 2, 2], "without hysteresis the first lead wins");
        assert_eq!(words(0.1, &frames), vec![1, 2, 2], "a lead of 0.16 is over a margin of 0.1");
    }

    #[test]
    fn strength_outside_zero_to_one_is_refused() {
        for s in [-0.1, 1.5, f32::NAN] {
            let error = TemporalOptions::with_strength(s).unwrap_err().to_string();
            assert!(error.contains("smoothing strength must be in [0, 1]"), "{error}");
        }
    }
}
