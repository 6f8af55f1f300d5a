//! Pascal VOC's segmentation PNGs: `SegmentationClass` (each pixel its word's index, 0 for
//! none) and `SegmentationObject` (each pixel its object's id), 8-bit with VOC's colour map as
//! the palette, as VOCdevkit writes them; more than 255 words or objects take 16-bit grey
//! PNGs, which a palette cannot colour. `labelmap.txt` names the classes with their colours in
//! the layout CVAT reads beside VOC masks (`label:r,g,b::`).

use super::Labelled;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::segment::LabelMap;
use crate::segment::objects::instance_map;

/// VOC's colour of index `i` (VOCdevkit's `VOClabelcolormap.m`: the bits of `i` spread over the
/// high bits of red, green and blue).
pub fn colour(i: usize) -> [u8; 3] {
    let mut rgb = [0u8; 3];
    let mut c = i;
    for shift in (0..8).rev() {
        for (k, channel) in rgb.iter_mut().enumerate() {
            *channel |= (((c >> k) & 1) as u8) << shift;
        }
        c >>= 3;
    }
    rgb
}

fn encode(width: usize, height: usize, pixels: Pixels) -> Result<Vec<u8>> {
    let failed = |e: png::EncodingError| Error::Io(format!("cannot encode a PNG: {e}"));
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    let data = match pixels {
        Pixels::Indexed(data) => {
            encoder.set_color(png::ColorType::Indexed);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_palette((0..256).flat_map(colour).collect::<Vec<u8>>());
            data
        }
        Pixels::Wide(data) => {
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Sixteen);
            data.iter().flat_map(|v| v.to_be_bytes()).collect()
        }
    };
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&data).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(bytes)
}

enum Pixels {
    Indexed(Vec<u8>),
    Wide(Vec<u16>),
}

/// `SegmentationClass`: the label map, 0 for no word.
pub fn class_png(map: &LabelMap, width: usize, height: usize) -> Result<Vec<u8>> {
    match map {
        LabelMap::Narrow(v) => encode(width, height, Pixels::Indexed(v.clone())),
        LabelMap::Wide(v) => encode(width, height, Pixels::Wide(v.clone())),
    }
}

/// `SegmentationObject`: the objects' ids (smaller objects on top where they overlap), 0 for
/// none.
pub fn object_png(image: &Labelled) -> Result<Vec<u8>> {
    if image.objects.len() > u16::MAX as usize {
        return Err(Error::invalid(format!(
            "{}: {} objects, but a 16-bit PNG holds at most 65,535 ids; leave small ones out (--min-area)",
            image.file_name,
            image.objects.len()
        )));
    }
    let map = instance_map(image.objects, image.width, image.height);
    if image.objects.len() <= u8::MAX as usize {
        encode(image.width, image.height, Pixels::Indexed(map.iter().map(|&v| v as u8).collect()))
    } else {
        encode(image.width, image.height, Pixels::Wide(map))
    }
}

/// `labelmap.txt`: `background` for index 0, then each word with its colour.
pub fn labelmap(labels: &[Label]) -> String {
    let mut out = String::from("# label:color_rgb:parts:actions\nbackground:0,0,0::\n");
    for (i, label) in labels.iter().enumerate() {
        let [r, g, b] = colour(i + 1);
        out.push_str(&format!("{}:{r},{g},{b}::\n", label.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 65,535, the most a 16-bit PNG holds, is written and read back as it is.
    #[test]
    fn sixteen_bit_class_maps_hold_every_index() {
        let values: Vec<u16> = vec![0, 1, 255, 256, 2048, 40_000, 65_534, 65_535];
        let bytes = class_png(&LabelMap::Wide(values.clone()), 4, 2).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert_eq!(reader.info().bit_depth, png::BitDepth::Sixteen);
        let back: Vec<u16> = pixels.chunks(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
        assert_eq!(back, values);
    }

    #[test]
    fn the_colour_map_is_vocs() {
        // VOC's aeroplane, bicycle and person.
        assert_eq!([colour(1), colour(2), colour(15)], [[128, 0, 0], [0, 128, 0], [192, 128, 128]]);
    }
}
