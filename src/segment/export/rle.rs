//! COCO's run-length encoding of a mask, byte for byte as pycocotools writes it: runs counted
//! down the columns (Fortran order), starting with a run of zeros, then the counts as the
//! string of `maskApi.c`'s `rleToString` (cocodataset/cocoapi, commit 8c9bcc3,
//! `common/maskApi.c`): each count from the fourth on stored as its difference from the count
//! two before it, in 5-bit groups, least significant first, with a continuation bit, offset
//! into the ASCII range 48..=111. The way back too, for ground truth read from a COCO file:
//! the string's counts (`rleFrString`), uncompressed counts, and polygons rasterised as
//! `rleFrPoly` does (five times finer along the outline, then each column's crossings), so a
//! polygon gives exactly the pixels pycocotools gives it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::objects::RunMask;

/// A compressed RLE, as COCO's `segmentation` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]`.
    pub size: [usize; 2],
    pub counts: String,
}

/// The mask's runs down the columns: zeros, ones, zeros, ... (the first may be 0).
pub fn column_counts(mask: &RunMask) -> Vec<u32> {
    let (w, h) = (mask.width, mask.height);
    let plane = mask.to_plane();
    let mut counts = Vec::new();
    let (mut value, mut run) = (0u8, 0u32);
    for x in 0..w {
        for y in 0..h {
            let v = plane[y * w + x];
            if v != value {
                counts.push(run);
                (value, run) = (v, 0);
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// `rleToString`: the counts as pycocotools' string.
pub fn counts_to_string(counts: &[u32]) -> String {
    let mut out = String::with_capacity(counts.len() * 2);
    for (i, &count) in counts.iter().enumerate() {
        // `if(i>2)`: the first three counts are stored whole.
        let mut x = count as i64 - if i > 2 { counts[i - 2] as i64 } else { 0 };
        loop {
            let mut c = (x & 0x1f) as u8;
            x >>= 5;
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            out.push((c + 48) as char);
            if !more {
                break;
            }
        }
    }
    out
}

/// The mask as COCO's compressed RLE.
pub fn encode(mask: &RunMask) -> Rle {
    Rle { size: [mask.height, mask.width], counts: counts_to_string(&column_counts(mask)) }
}

/// `rleFrString`: the counts of a compressed RLE string, refused when a character is outside
/// 48..=111, a number runs past 64 bits or a count comes out negative.
pub fn string_to_counts(text: &str) -> Result<Vec<u32>> {
    let bytes = text.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let Some(&byte) = bytes.get(p) else {
                return Err(Error::invalid("the RLE string ends inside a number"));
            };
            if !(48..=111).contains(&byte) || k > 12 {
                return Err(Error::invalid(format!(
                    "the RLE string holds '{}' at character {}; COCO's counts are characters 0 to o",
                    byte as char,
                    p + 1
                )));
            }
            let c = (byte - 48) as i64;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x += counts[counts.len() - 2] as i64;
        }
        let count = u32::try_from(x).map_err(|_| Error::invalid(format!("the RLE string gives a count of {x}")))?;
        counts.push(count);
    }
    Ok(counts)
}

/// The row-major 0/1 plane, `height x width`, of counts down the columns (zeros first), which
/// must cover the image exactly.
pub fn counts_to_plane(counts: &[u32], height: usize, width: usize) -> Result<Vec<u8>> {
    let total: u64 = counts.iter().map(|&c| c as u64).sum();
    if total != (width * height) as u64 {
        return Err(Error::invalid(format!(
            "the RLE counts cover {total} pixels, but its size {height}x{width} has {}",
            width * height
        )));
    }
    let mut plane = vec![0u8; width * height];
    let (mut t, mut value) = (0usize, 0u8);
    for &count in counts {
        if value == 1 {
            for k in t..t + count as usize {
                plane[(k % height) * width + k / height] = 1;
            }
        }
        t += count as usize;
        value ^= 1;
    }
    Ok(plane)
}

/// `rleFrPoly`: the counts of one polygon `[x0, y0, x1, y1, ...]` on a `height x width` image,
/// as pycocotools rasterises it: the outline walked at five times the resolution, and each
/// column's boundary crossings taken back to pixel centres. Points may lie outside the image.
pub fn polygon_counts(xy: &[f64], height: usize, width: usize) -> Vec<u32> {
    const SCALE: f64 = 5.0;
    let k = xy.len() / 2;
    // `(int)(scale * v + .5)`: C's cast truncates towards zero.
    let up = |v: f64| (SCALE * v + 0.5) as i64;
    let mut x: Vec<i64> = (0..k).map(|j| up(xy[2 * j])).collect();
    let mut y: Vec<i64> = (0..k).map(|j| up(xy[2 * j + 1])).collect();
    if k > 0 {
        x.push(x[0]);
        y.push(y[0]);
    }
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let (dx, dy) = ((xe - xs).abs(), (ys - ye).abs());
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        let s = if dx >= dy {
            if dx == 0 { 0.0 } else { (ye - ys) as f64 / dx as f64 }
        } else {
            (xe - xs) as f64 / dy as f64
        };
        if dx >= dy {
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    // The points where the outline crosses from one column to the next, back at pixel scale.
    let (h, w) = (height as i64, width as i64);
    let mut starts: Vec<u64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
            continue;
        }
        let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
        let yd = ((yd + 0.5) / SCALE - 0.5).clamp(0.0, h as f64).ceil();
        starts.push((xd as i64 * h + yd as i64) as u64);
    }
    starts.push((h * w) as u64);
    starts.sort_unstable();
    // Differences between the sorted positions are the runs; a zero run merges its neighbours.
    let mut previous = 0u64;
    let runs: Vec<u64> = starts
        .iter()
        .map(|&t| {
            let run = t - previous;
            previous = t;
            run
        })
        .collect();
    let mut counts: Vec<u32> = vec![runs[0] as u32];
    let mut j = 1;
    while j < runs.len() {
        if runs[j] > 0 {
            counts.push(runs[j] as u32);
            j += 1;
        } else {
            j += 1;
            if j < runs.len() {
                *counts.last_mut().expect("one count at least") += runs[j] as u32;
                j += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polygons with pycocotools' own strings for them (`frPyObjects`, then `merge` for two
    /// parts), from cocoapi 2.0.11: corners on the grid, fractions, corners outside the image, a
    /// sliver that covers no pixel centre.
    #[test]
    fn polygons_fill_as_pycocotools_fills_them() {
        type Case<'a> = (&'a [&'a [f64]], usize, usize, &'a str, usize);
        let cases: [Case; 7] = [
            (&[&[2., 3., 10., 3., 10., 9., 2., 9.]], 12, 14, "k0660000000000000]1", 48),
            (&[&[0.4, 0.6, 7.3, 1.2, 5.5, 8.8]], 10, 9, ";192N1O2N2NLg0", 26),
            (&[&[-2., -1., 20., 0., 20., 20., 0., 18.]], 11, 13, "0_4", 143),
            (&[&[1., 1., 4., 1., 4., 4., 1., 4.], &[6.5, 6.5, 9.5, 6.5, 8., 9.9]], 12, 12, "=39000Z1OgN0m0", 13),
            (&[&[3.2, 0., 3.2, 7.7, 8.1, 4.1]], 9, 10, "k082N2N2N2O>", 21),
            (&[&[0., 0., 448., 0., 448., 336., 0., 336.]], 336, 448, "0PPc4", 150_528),
            (&[&[5., 5., 6., 5., 6., 6.]], 8, 8, "P2", 0),
        ];
        for (polygons, h, w, want, area) in cases {
            let mut union = vec![0u8; w * h];
            for p in polygons {
                let plane = counts_to_plane(&polygon_counts(p, h, w), h, w).unwrap();
                union.iter_mut().zip(plane).for_each(|(u, v)| *u |= v);
            }
            let mask = RunMask::from_plane(&union, w, h);
            assert_eq!(encode(&mask).counts, want, "{polygons:?}");
            assert_eq!(mask.area(), area);
            assert_eq!(counts_to_plane(&string_to_counts(want).unwrap(), h, w).unwrap(), union, "{want} decoded");
        }
    }

    #[test]
    fn bad_strings_and_counts_are_refused() {
        assert!(string_to_counts("5~").unwrap_err().to_string().contains("'~' at character 2"));
        assert!(string_to_counts("`").unwrap_err().to_string().contains("ends inside a number"));
        let err = counts_to_plane(&[3, 2], 2, 3).unwrap_err().to_string();
        assert!(err.contains("cover 5 pixels") && err.contains("2x3 has 6"), "{err}");
    }

    #[test]
    fn columns_are_counted_before_rows() {
        // 3 wide, 2 high: row-major [0 1 1 / 0 0 1] is column-major [0 0 | 1 0 | 1 1].
        let mask = RunMask::from_plane(&[0, 1, 1, 0, 0, 1], 3, 2);
        assert_eq!(column_counts(&mask), vec![2, 1, 1, 2]);
        assert_eq!(column_counts(&RunMask::empty(4, 3)), vec![12]);
    }

    #[test]
    fn large_and_falling_counts_take_several_characters() {
        // 0..=15 fit one character; 16 needs a continuation; a count below the one two
        // before it is stored as a negative difference.
        assert_eq!(counts_to_string(&[5]), "5");
        assert_eq!(counts_to_string(&[16]), "`0");
        assert_eq!(counts_to_string(&[1, 2, 3, 1]), "123O");
    }
}
