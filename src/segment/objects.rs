//! Objects: the pieces a result is made of when it is counted — a word's connected regions
//! refined by Segment Anything, or the masks of automatic generation — each with its word, score,
//! box, area and mask, and an id that is its place in the list. The CLI's `--instances` PNG,
//! `--json`, the page's object list and `<word-mask>`'s `result` event all read [`Object`].

use serde::Serialize;

/// A binary mask as runs of set pixels, row-major: `(start, length)` with `start` the linear
/// index `y * width + x`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunMask {
    pub width: usize,
    pub height: usize,
    runs: Vec<(u32, u32)>,
}

impl RunMask {
    pub fn empty(width: usize, height: usize) -> Self {
        RunMask { width, height, runs: Vec::new() }
    }

    /// The runs of a `width x height` plane of 0/1 values.
    pub fn from_plane(plane: &[u8], width: usize, height: usize) -> Self {
        let mut mask = RunMask::empty(width, height);
        for y in 0..height {
            mask.push_row(y, plane[y * width..(y + 1) * width].iter().map(|&v| v != 0));
        }
        mask
    }

    /// The mask of the linear indices `pixels`, sorted.
    pub fn from_sorted(pixels: &[u32], width: usize, height: usize) -> Self {
        let mut mask = RunMask::empty(width, height);
        let mut k = 0;
        while k < pixels.len() {
            let start = pixels[k];
            let row_end = (start as usize / width + 1) * width;
            let mut n = 1;
            while k + n < pixels.len() && pixels[k + n] == start + n as u32 && (start as usize + n) < row_end {
                n += 1;
            }
            mask.runs.push((start, n as u32));
            k += n;
        }
        mask
    }

    /// Appends row `y` (rows in order), one flag per pixel.
    pub fn push_row(&mut self, y: usize, row: impl Iterator<Item = bool>) {
        let base = (y * self.width) as u32;
        let mut open: Option<u32> = None;
        for (x, on) in row.enumerate() {
            match (on, open) {
                (true, None) => open = Some(x as u32),
                (false, Some(start)) => {
                    self.runs.push((base + start, x as u32 - start));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            self.runs.push((base + start, self.width as u32 - start));
        }
    }

    /// Appends a run of `len` set pixels from linear index `start`, after every run so far and
    /// within one row.
    pub fn push_run(&mut self, start: usize, len: usize) {
        debug_assert!(len > 0 && start % self.width + len <= self.width);
        self.runs.push((start as u32, len as u32));
    }

    /// Pixels set in both masks (of one size).
    pub fn intersection_area(&self, other: &RunMask) -> usize {
        let (mut i, mut j, mut total) = (0, 0, 0);
        while i < self.runs.len() && j < other.runs.len() {
            let (a0, an) = self.runs[i];
            let (b0, bn) = other.runs[j];
            let (a1, b1) = (a0 + an, b0 + bn);
            total += a1.min(b1).saturating_sub(a0.max(b0)) as usize;
            if a1 <= b1 { i += 1 } else { j += 1 }
        }
        total
    }

    /// Set pixels.
    pub fn area(&self) -> usize {
        self.runs.iter().map(|&(_, n)| n as usize).sum()
    }

    /// `(start, length)` runs, row-major, none crossing a row.
    pub fn runs(&self) -> &[(u32, u32)] {
        &self.runs
    }

    /// The mask as `height * width` values, 1 inside.
    pub fn to_plane(&self) -> Vec<u8> {
        let mut plane = vec![0u8; self.width * self.height];
        for &(start, n) in &self.runs {
            plane[start as usize..(start + n) as usize].fill(1);
        }
        plane
    }

    /// The smallest box `[x0, y0, x1, y1]` holding every set pixel, both corners inside
    /// (segment-anything's `batched_mask_to_box`); `[0, 0, 0, 0]` when empty.
    pub fn bbox(&self) -> [usize; 4] {
        let w = self.width;
        let mut b = [usize::MAX, usize::MAX, 0, 0];
        for &(start, n) in &self.runs {
            let (y, x) = (start as usize / w, start as usize % w);
            b = [b[0].min(x), b[1].min(y), b[2].max(x + n as usize - 1), b[3].max(y)];
        }
        if self.runs.is_empty() { [0; 4] } else { b }
    }
}

/// One object of a result.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    /// 1, 2, ... in the result's order: the instance map's pixel value.
    pub id: u32,
    /// Its word, when it has one.
    pub label: Option<String>,
    /// The word's index among the typed words (or among the classifier's classes, when an
    /// Open-Vocabulary SAM named it from those).
    pub class: Option<usize>,
    /// How sure the model is of the mask (Segment Anything's predicted IoU, Open-Vocabulary
    /// SAM's stability score for automatic masks, or the words' mean probability inside it).
    pub score: f32,
    /// `[x0, y0, x1, y1]`, both corners inside.
    #[serde(rename = "box")]
    pub bbox: [usize; 4],
    pub area: usize,
    /// The point that prompted it, in the image's pixels (automatic masks: its grid point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<[f64; 2]>,
    #[serde(skip)]
    pub mask: RunMask,
}

impl Object {
    /// An object of `mask`, its box and area read off the mask.
    pub fn of_mask(id: u32, class: Option<usize>, label: Option<String>, score: f32, mask: RunMask) -> Object {
        Object { id, label, class, score, bbox: mask.bbox(), area: mask.area(), point: None, mask }
    }
}

/// Each id's mask in a map of ids (0: none): [`instance_map`] undone, for objects that do not
/// overlap (the words' regions, sharp edges), which is how the page keeps them.
pub fn id_masks(ids: &[u16], width: usize, height: usize) -> std::collections::BTreeMap<u16, RunMask> {
    let mut masks = std::collections::BTreeMap::new();
    for y in 0..height {
        let row = &ids[y * width..(y + 1) * width];
        let mut x = 0;
        while x < width {
            let id = row[x];
            let run = row[x..].iter().take_while(|&&v| v == id).count();
            if id > 0 {
                masks.entry(id).or_insert_with(|| RunMask::empty(width, height)).push_run(y * width + x, run);
            }
            x += run;
        }
    }
    masks
}

/// The objects as one map of ids (0: none), the largest painted first so that smaller objects
/// stay visible on top of the ones they sit on.
pub fn instance_map(objects: &[Object], width: usize, height: usize) -> Vec<u16> {
    let mut map = vec![0u16; width * height];
    let mut order: Vec<&Object> = objects.iter().collect();
    order.sort_by(|a, b| b.area.cmp(&a.area).then(a.id.cmp(&b.id)));
    for object in order {
        for &(start, n) in object.mask.runs() {
            map[start as usize..(start + n) as usize].fill(object.id as u16);
        }
    }
    map
}

/// How many objects each word has, in the words' order (words with none included).
pub fn counts(objects: &[Object], labels: &[String]) -> Vec<(String, usize)> {
    labels.iter().enumerate().map(|(i, l)| (l.clone(), objects.iter().filter(|o| o.class == Some(i)).count())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_and_give_the_inclusive_box() {
        let (w, h) = (5, 4);
        let mut plane = vec![0u8; w * h];
        for (x, y) in [(1, 1), (2, 1), (4, 1), (0, 2), (1, 2), (3, 3)] {
            plane[y * w + x] = 1;
        }
        let mask = RunMask::from_plane(&plane, w, h);
        assert_eq!(mask.to_plane(), plane);
        assert_eq!(mask.area(), 6);
        assert_eq!(mask.bbox(), [0, 1, 4, 3]);
        assert_eq!(RunMask::empty(w, h).bbox(), [0; 4]);
    }

    #[test]
    fn intersections_count_shared_pixels() {
        let a = RunMask::from_plane(&[1, 1, 0, 1, 1, 1, 1, 0], 4, 2);
        let b = RunMask::from_plane(&[0, 1, 1, 1, 1, 0, 1, 1], 4, 2);
        assert_eq!(a.intersection_area(&b), 4);
        assert_eq!(b.intersection_area(&a), 4);
        assert_eq!(a.intersection_area(&RunMask::empty(4, 2)), 0);
        // Runs break at each row's end.
        assert_eq!(RunMask::from_sorted(&[0, 1, 3, 4, 5, 6], 4, 2), a);
    }

    #[test]
    fn id_masks_undo_the_instance_map() {
        let ids = [0, 2, 2, 1, 1, 1, 0, 2];
        let masks = id_masks(&ids, 4, 2);
        assert_eq!(masks.len(), 2);
        assert_eq!(masks[&1].to_plane(), [0, 0, 0, 1, 1, 1, 0, 0]);
        assert_eq!(masks[&2].to_plane(), [0, 1, 1, 0, 0, 0, 0, 1]);
        let object = Object::of_mask(1, Some(0), None, 0.5, masks[&2].clone());
        assert_eq!((object.area, object.bbox), (3, [1, 0, 3, 1]));
    }

    #[test]
    fn smaller_objects_stay_on_top_in_the_instance_map() {
        let (w, h) = (4, 2);
        let object = |id: u32, plane: &[u8]| Object::of_mask(id, Some(0), None, 1.0, RunMask::from_plane(plane, w, h));
        let big = object(1, &[1, 1, 1, 1, 1, 1, 1, 1]);
        let small = object(2, &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(instance_map(&[small.clone(), big.clone()], w, h), vec![1, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(instance_map(&[big, small], w, h), vec![1, 2, 1, 1, 1, 1, 1, 1]);
    }
}
