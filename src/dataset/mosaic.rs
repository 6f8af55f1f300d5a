//! Mosaic-4, the Fusioner paper's synthetic benchmark (Ma et al., BMVC 2022,
//! arXiv:2210.15138): images "constructed by mosaicking the samples from FSS-1000" (its
//! abstract), four a mosaic as the name says; a model is asked for each class in turn. The
//! repository (chaofanma/Fusioner @ 01985ed) has no code for it, so the rest is chosen here and
//! written in docs/cli.md: a 2 x 2 grid of four different classes, the classes (FSS-1000's test classes as
//! HSNet lists them, `data/splits/fss/test.txt` sorted, or every class folder), how a mosaic is
//! drawn (four distinct classes uniformly, then one of each class's images uniformly, from one
//! seeded SplitMix64 stream, quadrants in drawing order: top left, top right, bottom left,
//! bottom right), the tile size (224, FSS-1000's own; other sizes resized by nearest
//! neighbour), the masks (grey of at least 128, as HSNet's `data/fss.py` reads them) and the
//! episodes (each mosaic's four classes, the other three tiles counting as background).

use crate::error::{Error, Result};
use crate::nn::Rng;
use crate::preprocess::RgbImage;

/// A tile's side: FSS-1000's images are 224 x 224.
pub const TILE: usize = 224;

/// One quadrant: an index into the class list and into that class's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub class: usize,
    pub image: usize,
}

/// `count` mosaics drawn from `seed`, given how many images each class has: four distinct
/// classes (among those with an image), then one image of each.
pub fn plan(images_per_class: &[usize], count: usize, seed: u64) -> Result<Vec<[Tile; 4]>> {
    let eligible: Vec<usize> = (0..images_per_class.len()).filter(|&c| images_per_class[c] > 0).collect();
    if eligible.len() < 4 {
        return Err(Error::invalid(format!(
            "Mosaic-4 needs four classes with images, found {} with any",
            eligible.len()
        )));
    }
    let mut rng = Rng::new(seed);
    Ok((0..count)
        .map(|_| {
            let mut classes: Vec<usize> = Vec::with_capacity(4);
            while classes.len() < 4 {
                let c = eligible[rng.below(eligible.len())];
                if !classes.contains(&c) {
                    classes.push(c);
                }
            }
            let tile = |c: usize, rng: &mut Rng| Tile { class: c, image: rng.below(images_per_class[c]) };
            let a = tile(classes[0], &mut rng);
            let b = tile(classes[1], &mut rng);
            let c = tile(classes[2], &mut rng);
            let d = tile(classes[3], &mut rng);
            [a, b, c, d]
        })
        .collect())
}

/// Grey as Pillow's `convert('L')` computes it (`libImaging/Convert.c`, `L24`).
pub fn grey(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Index of the source pixel for `dst` of `to` pixels taken from `from` (OpenCV's
/// `INTER_NEAREST`: `floor(dst * from / to)`).
fn nearest(dst: usize, from: usize, to: usize) -> usize {
    (dst * from / to).min(from - 1)
}

/// The mosaic of four tiles (image and foreground mask, each `width x height` of its own):
/// an image of `2 TILE x 2 TILE` and its label map, `q + 1` on quadrant `q`'s foreground and 0
/// elsewhere.
pub fn compose(tiles: &[(RgbImage, Vec<bool>); 4]) -> Result<(RgbImage, Vec<u8>)> {
    let side = 2 * TILE;
    let mut pixels = vec![0u8; side * side * 3];
    let mut labels = vec![0u8; side * side];
    for (q, (image, mask)) in tiles.iter().enumerate() {
        if mask.len() != image.width * image.height {
            return Err(Error::invalid(format!(
                "a Mosaic-4 tile's mask has {} pixels but its image is {}x{}",
                mask.len(),
                image.width,
                image.height
            )));
        }
        let (oy, ox) = ((q / 2) * TILE, (q % 2) * TILE);
        for y in 0..TILE {
            let sy = nearest(y, image.height, TILE);
            for x in 0..TILE {
                let sx = nearest(x, image.width, TILE);
                let (src, dst) = (sy * image.width + sx, (oy + y) * side + ox + x);
                pixels[dst * 3..dst * 3 + 3].copy_from_slice(&image.data[src * 3..src * 3 + 3]);
                if mask[src] {
                    labels[dst] = q as u8 + 1;
                }
            }
        }
    }
    Ok((RgbImage::new(side, side, pixels)?, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_and_draw_four_distinct_classes() {
        let images = [10, 10, 0, 10, 10, 10, 3];
        let a = plan(&images, 50, 7).unwrap();
        assert_eq!(a, plan(&images, 50, 7).unwrap());
        assert_ne!(a, plan(&images, 50, 8).unwrap());
        for m in &a {
            let mut c: Vec<usize> = m.iter().map(|t| t.class).collect();
            c.sort();
            c.dedup();
            assert_eq!(c.len(), 4, "{m:?}");
            assert!(m.iter().all(|t| t.class != 2 && t.image < images[t.class]));
        }
        assert!(plan(&[1, 1, 1, 0], 1, 0).is_err());
    }

    #[test]
    fn tiles_land_in_their_quadrants() {
        let tile = |v: u8, w: usize, h: usize| {
            (RgbImage::new(w, h, vec![v; w * h * 3]).unwrap(), (0..w * h).map(|i| i % w < w / 2).collect())
        };
        let tiles = [tile(10, 224, 224), tile(20, 112, 112), tile(30, 300, 200), tile(40, 224, 224)];
        let (image, labels) = compose(&tiles).unwrap();
        let at = |x: usize, y: usize| (image.data[(y * 448 + x) * 3], labels[y * 448 + x]);
        assert_eq!(at(0, 0), (10, 1));
        assert_eq!(at(223, 0), (10, 0));
        assert_eq!(at(224, 5), (20, 2));
        assert_eq!(at(400, 100), (20, 0));
        assert_eq!(at(5, 300), (30, 3));
        assert_eq!(at(447, 447), (40, 0));
        assert_eq!(grey(255, 255, 255), 255);
        assert_eq!(grey(0, 0, 0), 0);
    }
}
