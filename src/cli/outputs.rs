//! Files `wordmask segment` and `sam` write: the label PNG (8- or 16-bit), the overlay with a
//! legend, the `.npy` score array and a mask PNG. Each is named and checked before any work
//! ([`LABELS`], [`OVERLAY`], [`SCORES`], [`MASK`] with `wordmask::files::check_outputs`) and
//! written whole or not at all (`wordmask::files::write_atomic`).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use font8x8::UnicodeFonts;
use image::{GrayImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage as Canvas};

use wordmask::files::{Output, write_atomic};
use wordmask::preprocess::RgbImage;
use wordmask::segment::{LabelMap, Segmentation};

/// A label map: class indices, which a lossy format would change.
pub fn labels<'a>(option: &'static str, path: &'a Path) -> Output<'a> {
    let why = "a lossy format such as JPEG would change the class indices";
    Output { option, path, extensions: &["png"], what: "a label map", why }
}

/// The photo with coloured masks and a legend.
pub fn overlay<'a>(option: &'static str, path: &'a Path) -> Output<'a> {
    Output { option, path, extensions: &["png", "jpg", "jpeg"], what: "an overlay", why: "" }
}

/// Per-class scores.
pub fn scores<'a>(option: &'static str, path: &'a Path) -> Output<'a> {
    Output { option, path, extensions: &["npy"], what: "the scores", why: "a NumPy array" }
}

/// One object's mask, 0 or 255.
pub fn mask<'a>(option: &'static str, path: &'a Path) -> Output<'a> {
    let why = "a lossy format such as JPEG would blur the mask's edge";
    Output { option, path, extensions: &["png"], what: "a mask", why }
}

/// An image encoded by `write` into `path`, whole or not at all.
pub fn save(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> image::ImageResult<()>,
) -> Result<()> {
    Ok(write_atomic(path, |out| write(out).map_err(std::io::Error::other))?)
}

/// Distinct colours for labels 1.. (0, unlabelled, is left uncoloured).
const PALETTE: [[u8; 3]; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [255, 225, 25],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
];

pub fn colour(label: usize) -> [u8; 3] {
    PALETTE[(label - 1) % PALETTE.len()]
}

/// Label indices as a grey PNG: pixel value i = i-th label, 0 = unlabelled. 8-bit up to 255
/// labels, 16-bit beyond.
pub fn write_labels_png(seg: &Segmentation, path: &Path) -> Result<()> {
    let (w, h) = (seg.width as u32, seg.height as u32);
    match &seg.label_map {
        LabelMap::Narrow(map) => {
            let image = GrayImage::from_raw(w, h, map.clone()).context("label map size")?;
            save(path, |out| image.write_to(out, ImageFormat::Png))
        }
        LabelMap::Wide(map) => {
            let image = ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(w, h, map.clone()).context("label map size")?;
            save(path, |out| image.write_to(out, ImageFormat::Png))
        }
    }
}

/// `float32` array of shape `[classes, height, width]` in NumPy's `.npy` format (version 1.0),
/// computed and written a band of rows at a time.
pub fn write_npy(seg: &Segmentation, path: &Path) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        seg.num_classes(),
        seg.height,
        seg.width
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    Ok(write_atomic(path, |file| {
        file.write_all(b"\x93NUMPY\x01\x00")?;
        file.write_all(&(header.len() as u16).to_le_bytes())?;
        file.write_all(header.as_bytes())?;
        seg.write_scores(file, 10 + header.len() as u64)
    })?)
}

fn draw_text(canvas: &mut Canvas, x0: u32, y0: u32, text: &str, scale: u32, colour: [u8; 3]) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (x0 + (i as u32 * 8 + col) * scale + dx, y0 + row as u32 * scale + dy);
                        if x < canvas.width() && y < canvas.height() {
                            canvas.put_pixel(x, y, Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}

/// The photo with each label's colour blended in (`opacity`), and a legend strip below it
/// listing every label with its colour and pixel share.
pub fn write_overlay(seg: &Segmentation, photo: &RgbImage, opacity: f32, path: &Path) -> Result<()> {
    let (w, h) = (seg.width as u32, seg.height as u32);
    let (shares, unlabelled) = seg.shares();
    let scale = (w / 320).clamp(1, 3);
    let line = 12 * scale;
    let legend_h = line * (shares.len() as u32 + 1) + 8;
    let mut canvas = Canvas::from_pixel(w.max(180 * scale), h + legend_h, Rgb([255, 255, 255]));
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let p = &photo.data[i * 3..i * 3 + 3];
            let label = seg.label_map.get(i);
            let px = if label == 0 {
                [p[0], p[1], p[2]]
            } else {
                let c = colour(label);
                std::array::from_fn(|k| (p[k] as f32 * (1.0 - opacity) + c[k] as f32 * opacity).round() as u8)
            };
            canvas.put_pixel(x, y, Rgb(px));
        }
    }
    let mut y = h + 4;
    for (i, s) in shares.iter().enumerate() {
        for dy in 0..8 * scale {
            for dx in 0..8 * scale {
                canvas.put_pixel(4 + dx, y + dy, Rgb(colour(i + 1)));
            }
        }
        draw_text(&mut canvas, 8 + 10 * scale, y, &format!("{} {:.1}%", s.label, s.share * 100.0), scale, [0, 0, 0]);
        y += line;
    }
    draw_text(&mut canvas, 8 + 10 * scale, y, &format!("unlabelled {:.1}%", unlabelled * 100.0), scale, [90, 90, 90]);
    let format = ImageFormat::from_path(path).unwrap_or(ImageFormat::Png);
    save(path, |out| canvas.write_to(out, format))
}
