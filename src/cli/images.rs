//! Every image the command line reads: photos (PNG or JPEG, turned upright by their EXIF
//! orientation, as browsers show them) and label maps (8-bit grey or palette PNGs). Each passes
//! the one size guard, `preprocess::check_image_size`, on the size its header claims, before a
//! pixel is decoded; the decoders are held to what an image of that size needs, and a PNG's
//! colour profile and text are skipped unread (nothing here uses them, and a few megabytes of
//! compressed profile can inflate to gigabytes).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat};

use wordmask::preprocess::{MAX_PIXELS, MAX_SIDE, RgbImage, check_image_size};

/// What the PNG decoder may allocate for itself (a row, chunk data such as EXIF): its own
/// default. The picture's buffer is ours, sized by the guard.
const PNG_WORKING_BYTES: usize = 64 << 20;

/// A photo as 8-bit RGB, upright.
pub fn read_image(path: &str) -> Result<RgbImage> {
    let file = File::open(path).with_context(|| format!("cannot read image {path}"))?;
    // The format from the first bytes only (not the file name), so a text file named .png is
    // named for what it is.
    let reader = image::ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .with_context(|| format!("cannot read image {path}"))?;
    let (format, file) = (reader.format(), reader.into_inner());
    let (pixels, orientation) = match format {
        Some(ImageFormat::Png) => read_png_photo(path, file)?,
        Some(ImageFormat::Jpeg) => read_jpeg(path, file)?,
        _ => bail!("{path} is not a PNG or JPEG image"),
    };
    let mut pixels = DynamicImage::ImageRgb8(pixels);
    pixels.apply_orientation(orientation);
    let pixels = pixels.into_rgb8();
    let (w, h) = (pixels.width() as usize, pixels.height() as usize);
    RgbImage::new(w, h, pixels.into_raw()).with_context(|| format!("image {path}"))
}

/// An 8-bit single-channel or palette PNG's raw values (class indices, not colours), as
/// `(width, height, values)`.
pub fn read_label_png(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot open label {name}"))?;
    let mut reader = png_reader("label", &name, BufReader::new(file), png::Transformations::IDENTITY)?;
    let info = reader.info();
    let ok = info.bit_depth == png::BitDepth::Eight
        && matches!(info.color_type, png::ColorType::Grayscale | png::ColorType::Indexed);
    if !ok {
        bail!(
            "{name}: label maps must be 8-bit grey or palette PNGs, this one is {:?} {:?}",
            info.color_type,
            info.bit_depth
        );
    }
    let (w, h) = (info.width as usize, info.height as usize);
    // One byte a pixel and no padding between rows: the frame is the label map.
    let mut values = vec![0; w * h];
    reader.next_frame(&mut values).with_context(|| format!("cannot decode {name}"))?;
    Ok((w, h, values))
}

/// The size guard, on the size a header claims.
fn check_header(what: &str, path: &str, (width, height): (u32, u32)) -> Result<()> {
    check_image_size(width as usize, height as usize).with_context(|| format!("{what} {path}"))
}

/// A PNG decoder past the header, its size checked, its colour profile and text skipped.
fn png_reader(
    what: &str,
    path: &str,
    input: BufReader<File>,
    transformations: png::Transformations,
) -> Result<png::Reader<BufReader<File>>> {
    let mut decoder = png::Decoder::new_with_limits(input, png::Limits { bytes: PNG_WORKING_BYTES });
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(transformations);
    let reader = decoder.read_info().with_context(|| format!("cannot read {what} {path}"))?;
    check_header(what, path, reader.info().size())?;
    Ok(reader)
}

/// A PNG photo: palettes and bit depths under 8 expanded, 16-bit samples rounded to 8 bits
/// (`round(v * 255 / 65535)`, as the `image` crate and so the earlier reader did), alpha
/// dropped; with the orientation of its eXIf chunk.
fn read_png_photo(path: &str, input: BufReader<File>) -> Result<(image::RgbImage, Orientation)> {
    let mut reader = png_reader("image", path, input, png::Transformations::EXPAND)?;
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (width, height) = reader.info().size();
    let (colour, depth) = reader.output_color_type();
    let size = reader.output_buffer_size().with_context(|| format!("image {path} is too large"))?;
    let mut decoded = vec![0; size];
    reader.next_frame(&mut decoded).with_context(|| format!("cannot read image {path}"))?;
    let channels = colour.samples();
    let bytes = if depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let sample = |px: &[u8], c: usize| {
        if bytes == 2 { ((u32::from(u16::from_be_bytes([px[2 * c], px[2 * c + 1]])) + 128) / 257) as u8 } else { px[c] }
    };
    // Grey is repeated into the three channels; RGB(A) keeps its first three.
    let rgb_of = |px: &[u8]| if channels < 3 { [sample(px, 0); 3] } else { [0, 1, 2].map(|c| sample(px, c)) };
    let stride = channels * bytes;
    let pixels = width as usize * height as usize;
    let rgb = if stride >= 3 {
        // In place: pixel i is written at 3i, at or before where it was read (stride * i).
        for i in 0..pixels {
            let value = rgb_of(&decoded[i * stride..(i + 1) * stride]);
            decoded[3 * i..3 * i + 3].copy_from_slice(&value);
        }
        decoded.truncate(3 * pixels);
        decoded.shrink_to_fit();
        decoded
    } else {
        decoded.chunks_exact(stride).flat_map(rgb_of).collect()
    };
    let image = image::RgbImage::from_raw(width, height, rgb).context("decoded PNG size")?;
    Ok((image, orientation))
}

/// A JPEG photo as the `image` crate decodes it (zune-jpeg; CMYK converted to RGB), with the
/// orientation of its EXIF segment.
fn read_jpeg(path: &str, input: BufReader<File>) -> Result<(image::RgbImage, Orientation)> {
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(input).with_context(|| format!("cannot read image {path}"))?;
    check_header("image", path, decoder.dimensions())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE as u32);
    limits.max_image_height = Some(MAX_SIDE as u32);
    // The widest layout a JPEG decodes to is 8-bit RGBA.
    limits.max_alloc = Some(MAX_PIXELS as u64 * 4);
    decoder.set_limits(limits).with_context(|| format!("image {path}"))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder).with_context(|| format!("cannot read image {path}"))?;
    Ok((decoded.into_rgb8(), orientation))
}
