//! COCO's run-length encoding of a mask, byte for byte as pycocotools writes it: runs counted
//! down the columns (Fortran order), starting with a run of zeros, then the counts as the
//! string of `maskApi.c`'s `rleToString` (cocodataset/cocoapi, commit 8c9bcc3,
//! `common/maskApi.c`): each count from the fourth on stored as its difference from the count
//! two before it, in 5-bit groups, least significant first, with a continuation bit, offset
//! into the ASCII range 48..=111.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
