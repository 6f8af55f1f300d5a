//! Augmented views and their frozen features, computed once and kept on disk.
//!
//! Each image gets `views` augmented views (a random resized crop, scale 0.5-1 and aspect
//! 3/4-4/3, half the time, otherwise the short side resized to the crop and a random crop, as
//! the repository's `RandomCropResize`; then a horizontal flip half the time), or one plain
//! view (the image resized to the crop) when `views` is 0. A view is stored as its image
//! tokens (f16: they are L2-normalised, so about 5e-4 relative error) and its label crop; the
//! file is reused while the backbone's weights files, every image and label file (path, size,
//! modification time), the crop, the statistics, the view count, the seed and the cache format
//! stay the same. The repository's other augmentations (colour jitter, noise, elastic and
//! affine transforms) are not applied.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use half::f16;
use serde::{Deserialize, Serialize};

use super::{Event, IGNORE, Rng, Samples};
use crate::error::{Error, Result};
use crate::fusioner::FusionerModel;
use crate::preprocess::{RgbImage, normalize};

/// The cache file's layout and the view recipe; a change to either makes old caches stale.
pub const FORMAT: u32 = 1;

/// Views whose features are computed per backbone pass.
const FEATURE_BATCH: usize = 8;

/// One cached view: image tokens `[gh*gw * proj]` and the label crop `[crop * crop]`.
#[derive(Debug, Clone)]
pub struct View {
    pub tokens: Vec<f32>,
    pub label: Vec<u8>,
}

/// Where each image's view comes from: `(x, y, w, h)` of the source region and a flip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
    pub flip: bool,
}

/// The region of view `k` of a `w x h` image (`k` = `None`: the whole image, unflipped).
pub fn region(w: usize, h: usize, crop: usize, rng: Option<&mut Rng>) -> Region {
    let whole = Region { x: 0, y: 0, w, h, flip: false };
    let Some(rng) = rng else { return whole };
    let flip_and = |rng: &mut Rng, r: Region| Region { flip: rng.unit() < 0.5, ..r };
    if rng.unit() < 0.5 {
        // RandomResizedCrop(scale=(0.5, 1), ratio=(3/4, 4/3)): ten tries, then the whole image.
        let area = (w * h) as f64;
        for _ in 0..10 {
            let target = area * (0.5 + 0.5 * rng.unit());
            let ratio = ((3f64 / 4.0).ln() + rng.unit() * ((4f64 / 3.0).ln() - (3f64 / 4.0).ln())).exp();
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let x = rng.below(w - cw + 1);
                let y = rng.below(h - ch + 1);
                return flip_and(rng, Region { x, y, w: cw, h: ch, flip: false });
            }
        }
        return flip_and(rng, whole);
    }
    // SmallestMaxSize(crop) then RandomCrop(crop): a square of the short side.
    let side = w.min(h);
    let _ = crop;
    let x = rng.below(w - side + 1);
    let y = rng.below(h - side + 1);
    flip_and(rng, Region { x, y, w: side, h: side, flip: false })
}

/// The region of `image` and `label` resized to `crop x crop` (bilinear pixels, nearest labels),
/// flipped when asked.
pub fn cut(image: &RgbImage, label: &[u8], r: Region, crop: usize) -> Result<(RgbImage, Vec<u8>)> {
    let mut data = Vec::with_capacity(r.w * r.h * 3);
    for y in r.y..r.y + r.h {
        let row = (y * image.width + r.x) * 3;
        data.extend_from_slice(&image.data[row..row + r.w * 3]);
    }
    let part = RgbImage::new(r.w, r.h, data)?;
    let mut pixels = if (r.w, r.h) == (crop, crop) { part } else { part.resize_bilinear(crop, crop) };
    let mut out = vec![IGNORE; crop * crop];
    for y in 0..crop {
        let sy = r.y + (y * r.h / crop).min(r.h - 1);
        for x in 0..crop {
            let sx = r.x + (x * r.w / crop).min(r.w - 1);
            out[y * crop + x] = label[sy * image.width + sx];
        }
    }
    if r.flip {
        for y in 0..crop {
            out[y * crop..(y + 1) * crop].reverse();
            let row = &mut pixels.data[y * crop * 3..(y + 1) * crop * 3];
            let flipped: Vec<u8> = row.chunks_exact(3).rev().flatten().copied().collect();
            row.copy_from_slice(&flipped);
        }
    }
    Ok((pixels, out))
}

/// What identifies a cache file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub version: u32,
    pub backbone: String,
    pub samples: Vec<String>,
    pub views: usize,
    pub seed: u64,
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    key: CacheKey,
    grid: (usize, usize),
    proj: usize,
    /// Class values present in each image's full label map.
    presence: Vec<Vec<u8>>,
}

/// Cached views of a dataset.
pub struct FeatureCache {
    file: File,
    header: Header,
    per_image: usize,
}

impl FeatureCache {
    /// Views per image.
    pub fn views(&self) -> usize {
        self.per_image
    }

    pub fn grid(&self) -> (usize, usize) {
        self.header.grid
    }

    /// Class values present in each image.
    pub fn presence(&self) -> &[Vec<u8>] {
        &self.header.presence
    }

    fn record_size(&self) -> usize {
        let (gh, gw) = self.header.grid;
        gh * gw * self.header.proj * 2 + self.header.key.crop * self.header.key.crop
    }

    /// Open the cache in `dir` if it was made for `key`, else compute every view.
    pub fn open_or_build(
        dir: &Path,
        key: CacheKey,
        model: &FusionerModel,
        samples: &dyn Samples,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Self> {
        let io =
            |what: &str, p: &Path, e: std::io::Error| Error::invalid(format!("cannot {what} {}: {e}", p.display()));
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let (meta, data) = (dir.join("features.json"), dir.join("features.bin"));
        let per_image = key.views.max(1);
        let total = key.samples.len() * per_image;
        if let Ok(text) = std::fs::read_to_string(&meta)
            && let Ok(header) = serde_json::from_str::<Header>(&text)
            && header.key == key
            && let Ok(file) = File::open(&data)
        {
            let cache = FeatureCache { file, header, per_image };
            let expected = (cache.record_size() * total) as u64;
            if cache.file.metadata().map(|m| m.len()).ok() == Some(expected) {
                progress(Event::Caching { done: total, total, cached: true });
                return Ok(cache);
            }
        }
        // The old header goes first: a run stopped while writing leaves no header that could
        // vouch for the new data.
        std::fs::remove_file(&meta).ok();
        let partial = dir.join("features.bin.partial");
        let mut out = BufWriter::new(File::create(&partial).map_err(|e| io("create", &partial, e))?);
        let crop = key.crop;
        let mut presence = Vec::with_capacity(samples.len());
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut batch: Vec<f32> = Vec::new();
        let mut shape = None;
        let mut done = 0;
        let mut flush = |batch: &mut Vec<f32>, pending: &mut Vec<Vec<u8>>, out: &mut BufWriter<File>| -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let b = pending.len();
            let pixels = Tensor::<4>::from_data(
                TensorData::new(std::mem::take(batch), [b, 3, crop, crop]),
                &crate::network::Network::device(model),
            );
            let (tokens, grid) = model.image_tokens(pixels)?;
            let [_, n, p] = tokens.dims();
            shape = Some((grid, p));
            let values = super::host(tokens)?;
            for (i, label) in pending.drain(..).enumerate() {
                let bytes: Vec<u8> =
                    values[i * n * p..(i + 1) * n * p].iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
                out.write_all(&bytes).and_then(|_| out.write_all(&label)).map_err(|e| io("write", &partial, e))?;
            }
            done += b;
            progress(Event::Caching { done, total, cached: false });
            Ok(())
        };
        for i in 0..samples.len() {
            let (image, label) = samples.load(i)?;
            if label.len() != image.width * image.height {
                return Err(Error::invalid(format!(
                    "{}: the label map has {} values for a {}x{} image",
                    samples.name(i),
                    label.len(),
                    image.width,
                    image.height
                )));
            }
            let mut present = [false; 256];
            label.iter().for_each(|&v| present[v as usize] = true);
            presence.push((0..=254u8).filter(|&v| present[v as usize]).collect());
            for v in 0..per_image {
                let mut rng = Rng::new(key.seed ^ ((i as u64) << 20) ^ (v as u64).wrapping_mul(0x2545_f491));
                let r = region(image.width, image.height, crop, (key.views > 0).then_some(&mut rng));
                let (pixels, crop_label) = cut(&image, &label, r, crop)?;
                batch.extend(normalize(&pixels, key.mean, key.std));
                pending.push(crop_label);
                if pending.len() == FEATURE_BATCH {
                    flush(&mut batch, &mut pending, &mut out)?;
                }
            }
        }
        flush(&mut batch, &mut pending, &mut out)?;
        out.flush().map_err(|e| io("write", &partial, e))?;
        drop(out);
        std::fs::rename(&partial, &data).map_err(|e| io("write", &data, e))?;
        let (grid, proj) = shape.ok_or_else(|| Error::invalid("the dataset has no images"))?;
        let header = Header { key, grid, proj, presence };
        std::fs::write(&meta, serde_json::to_string(&header).unwrap_or_default()).map_err(|e| io("write", &meta, e))?;
        let file = File::open(&data).map_err(|e| io("open", &data, e))?;
        Ok(FeatureCache { file, header, per_image })
    }

    /// View `view` of image `sample`.
    pub fn get(&mut self, sample: usize, view: usize) -> Result<View> {
        let size = self.record_size();
        let at = ((sample * self.per_image + view) * size) as u64;
        let mut bytes = vec![0u8; size];
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::invalid(format!("cannot read the feature cache: {e}")))?;
        let n = size - self.header.key.crop * self.header.key.crop;
        let tokens = bytes[..n].chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
        Ok(View { tokens, label: bytes[n..].to_vec() })
    }

    /// Where a cache for an output folder lives by default.
    pub fn default_dir(out: &Path) -> PathBuf {
        out.join("cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_view_flips_pixels_and_labels_together() {
        // 4x4, each pixel's red channel and label are its column.
        let (w, h) = (4, 4);
        let data: Vec<u8> = (0..w * h).flat_map(|i| [(i % w) as u8 * 10, 0, 0]).collect();
        let image = RgbImage::new(w, h, data).unwrap();
        let label: Vec<u8> = (0..w * h).map(|i| (i % w) as u8).collect();
        let (pixels, labels) = cut(&image, &label, Region { x: 0, y: 0, w, h, flip: true }, 4).unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(labels[y * w + x] as usize, w - 1 - x);
                assert_eq!(pixels.data[(y * w + x) * 3] as usize, (w - 1 - x) * 10, "pixel ({x}, {y})");
            }
        }
        // A region is cut where it says, then resized to the crop (nearest labels).
        let (_, labels) = cut(&image, &label, Region { x: 2, y: 1, w: 2, h: 2, flip: false }, 4).unwrap();
        assert_eq!(&labels[..4], &[2, 2, 3, 3]);
    }

    #[test]
    fn random_regions_stay_inside_the_image() {
        let mut rng = Rng::new(7);
        let (mut crops, mut flips) = (0, 0);
        for _ in 0..2000 {
            let (w, h) = (1 + rng.below(300), 1 + rng.below(300));
            let r = region(w, h, 224, Some(&mut rng));
            assert!(r.w > 0 && r.h > 0 && r.x + r.w <= w && r.y + r.h <= h, "{r:?} in {w}x{h}");
            crops += usize::from((r.w, r.h) != (w.min(h), w.min(h)) && (r.w, r.h) != (w, h));
            flips += usize::from(r.flip);
        }
        // Both kinds of crop and both orientations occur.
        assert!(crops > 500 && (800..1200).contains(&flips), "{crops} resized crops, {flips} flips");
    }
}
