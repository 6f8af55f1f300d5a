//! Sliding windows as mmsegmentation's `slide_inference` places them: a regular grid of
//! `window` crops with step `stride`, the last row and column shifted back inside the image,
//! and a single crop covering the whole image when it is smaller than the window.

/// One crop: `[y1, y2) x [x1, x2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub y1: usize,
    pub y2: usize,
    pub x1: usize,
    pub x2: usize,
}

/// Windows over an `h x w` image.
pub fn slide(h: usize, w: usize, window: (usize, usize), stride: (usize, usize)) -> Vec<Window> {
    let (wh, ww) = window;
    let (sh, sw) = stride;
    let grids = |img: usize, crop: usize, step: usize| (img + step).saturating_sub(crop + 1) / step + 1;
    let (hg, wg) = (grids(h, wh, sh), grids(w, ww, sw));
    let mut out = Vec::with_capacity(hg * wg);
    for hi in 0..hg {
        for wi in 0..wg {
            let y2 = (hi * sh + wh).min(h);
            let x2 = (wi * sw + ww).min(w);
            out.push(Window { y1: y2.saturating_sub(wh), y2, x1: x2.saturating_sub(ww), x2 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_matches_mmsegmentation() {
        // 336 x 504 with 224/112: max(336-224+111,0)//112+1 = 2 rows, (504-224+111)//112+1 = 4 cols.
        let w = slide(336, 504, (224, 224), (112, 112));
        assert_eq!(w.len(), 8);
        assert_eq!(w[0], Window { y1: 0, y2: 224, x1: 0, x2: 224 });
        assert_eq!(w[3], Window { y1: 0, y2: 224, x1: 280, x2: 504 });
        assert_eq!(w[7], Window { y1: 112, y2: 336, x1: 280, x2: 504 });
        // Every pixel is covered.
        let mut covered = vec![false; 336 * 504];
        for win in &w {
            for y in win.y1..win.y2 {
                for x in win.x1..win.x2 {
                    covered[y * 504 + x] = true;
                }
            }
        }
        assert!(covered.iter().all(|&c| c));
    }

    #[test]
    fn small_images_get_one_window() {
        assert_eq!(slide(100, 150, (224, 224), (112, 112)), vec![Window { y1: 0, y2: 100, x1: 0, x2: 150 }]);
    }
}
