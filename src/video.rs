//! Frames in: a YUV4MPEG2 (`.y4m`) stream read frame by frame into RGB, with no codec. Y4M is
//! what `ffmpeg -f yuv4mpegpipe` writes, so the command line reads `.mp4` and `.webm` files by
//! piping ffmpeg's output through this same reader.
//!
//! The format (the mjpegtools `yuv4mpeg(5)` manual page, and ffmpeg's `libavformat/yuv4mpegenc.c`
//! as it writes it): one header line `YUV4MPEG2 W<width> H<height> [F<n>:<d>] [I<p|t|b|m>]
//! [A<n>:<d>] [C<colour>] [X<tag>]...`, then per frame a line `FRAME[ <tags>]` and the planes,
//! Y then Cb then Cr, each row-major with no padding. Read here: 8-bit `C420jpeg`, `C420paldv`,
//! `C420mpeg2`, `C420` (the default when `C` is absent), `C444` and `Cmono`; a chroma plane of
//! 4:2:0 is `ceil(w / 2) x ceil(h / 2)`, as ffmpeg sizes it for odd sizes, and each of its
//! samples is repeated over the 2 x 2 pixels it covers (its siting, centred or co-sited, is
//! not interpolated: a quarter of a pixel's shift at most, below what a label map shows).
//! Colours are BT.601, limited range unless `XCOLORRANGE=FULL` (what ffmpeg writes for
//! full-range video). Everything else (4:2:2, 4:1:1, alpha, 10- and 16-bit samples) is refused
//! with the list of what is read.
//!
//! The bytes are untrusted: header lines are bounded ([`MAX_LINE`]), the size passes the image
//! size guard ([`check_image_size`]) before a frame is allocated, sizes are computed with checked
//! arithmetic, and a short frame is an error that names the frame and the bytes it lacks.

use std::io::{BufRead, Read};

use crate::error::{Error, Result};
use crate::preprocess::{RgbImage, check_image_size};

/// Longest header or `FRAME` line read (ffmpeg's header is under 100 bytes; tags may follow).
pub const MAX_LINE: usize = 4096;

/// How the chroma planes are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0: one Cb and one Cr sample per 2 x 2 pixels.
    C420,
    /// 4:4:4: a Cb and a Cr sample per pixel.
    C444,
    /// Luma only (grey).
    Mono,
}

/// What a Y4M stream says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    pub chroma: Chroma,
    /// Frames per second as `(numerator, denominator)`, when given.
    pub fps: Option<(u32, u32)>,
    /// Samples span 0..=255 (`XCOLORRANGE=FULL`) rather than video's 16..=235.
    pub full_range: bool,
}

impl Header {
    /// Bytes of one frame's planes.
    pub fn frame_bytes(&self) -> Result<usize> {
        let luma = self.width.checked_mul(self.height);
        let chroma = match self.chroma {
            Chroma::C420 => self.width.div_ceil(2).checked_mul(self.height.div_ceil(2)),
            Chroma::C444 => luma,
            Chroma::Mono => Some(0),
        };
        luma.zip(chroma)
            .and_then(|(y, c)| c.checked_mul(2).and_then(|c| c.checked_add(y)))
            .ok_or_else(|| Error::invalid(format!("a {}x{} frame is too large", self.width, self.height)))
    }
}

/// A Y4M stream, read a frame at a time.
pub struct Y4m<R> {
    input: R,
    pub header: Header,
    /// Frames read so far.
    pub frames: usize,
    name: String,
    planes: Vec<u8>,
}

fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::Video { source_name: name.to_string(), reason: reason.into() }
}

/// One line up to `\n` (not included), at most [`MAX_LINE`] bytes; `None` at the end of the
/// input before any byte.
fn read_line(input: &mut impl BufRead, name: &str, what: &str) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| bad(name, format!("cannot read {what}: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            bad(name, format!("{what} is longer than {MAX_LINE} bytes"))
        } else {
            bad(name, format!("{what} is cut short (no end of line)"))
        });
    }
    line.pop();
    Ok(Some(line))
}

/// A decimal number of at most 9 digits (larger sizes fail the size guard anyway).
fn number(text: &str, name: &str, what: &str) -> Result<usize> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(name, format!("{what} is not a number: {text:?}")));
    }
    text.parse().map_err(|_| bad(name, format!("{what} is not a number: {text:?}")))
}

fn parse_header(line: &[u8], name: &str) -> Result<Header> {
    let text = std::str::from_utf8(line).map_err(|_| bad(name, "the header is not text"))?;
    let mut tokens = text.split(' ').filter(|t| !t.is_empty());
    if tokens.next() != Some("YUV4MPEG2") {
        return Err(bad(name, "not a Y4M stream (it does not begin with YUV4MPEG2)"));
    }
    let (mut width, mut height, mut fps) = (None, None, None);
    let (mut chroma, mut full_range) = (Chroma::C420, false);
    for token in tokens {
        // Tags are one character, which may be any (a byte split could fall inside one).
        let tag = token.chars().next().unwrap_or(' ');
        let value = &token[tag.len_utf8()..];
        match tag {
            'W' => width = Some(number(value, name, "the width")?),
            'H' => height = Some(number(value, name, "the height")?),
            'F' => {
                let rate =
                    value.split_once(':').and_then(|(n, d)| Some((n.parse::<u32>().ok()?, d.parse::<u32>().ok()?)));
                fps = rate.filter(|&(n, d)| n > 0 && d > 0);
            }
            'C' => {
                chroma = match value {
                    "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::C420,
                    "444" => Chroma::C444,
                    "mono" => Chroma::Mono,
                    other => {
                        return Err(bad(
                            name,
                            format!(
                                "colour space C{other} is not read; wordmask reads 8-bit 4:2:0 (C420, C420jpeg, C420paldv, C420mpeg2), 4:4:4 (C444) and grey (Cmono): ffmpeg -pix_fmt yuv420p converts"
                            ),
                        ));
                    }
                }
            }
            'X' if value.eq_ignore_ascii_case("COLORRANGE=FULL") => full_range = true,
            // Interlacing, aspect ratio and other tags change nothing here.
            _ => {}
        }
    }
    let width = width.ok_or_else(|| bad(name, "the header gives no width (W)"))?;
    let height = height.ok_or_else(|| bad(name, "the header gives no height (H)"))?;
    check_image_size(width, height).map_err(|e| bad(name, format!("frames of {width}x{height}: {e}")))?;
    Ok(Header { width, height, chroma, fps, full_range })
}

impl<R: BufRead> Y4m<R> {
    /// Read the header of the stream `input`, named `name` in errors.
    pub fn new(mut input: R, name: &str) -> Result<Self> {
        let line = read_line(&mut input, name, "the header")?.ok_or_else(|| bad(name, "the file is empty"))?;
        let header = parse_header(&line, name)?;
        Ok(Y4m { input, header, frames: 0, name: name.to_string(), planes: Vec::new() })
    }

    /// The next frame as RGB, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        let number = self.frames + 1;
        let what = format!("frame {number}'s FRAME line");
        let Some(line) = read_line(&mut self.input, &self.name, &what)? else { return Ok(None) };
        if !(line.starts_with(b"FRAME") && (line.len() == 5 || line[5] == b' ')) {
            return Err(bad(&self.name, format!("frame {number} does not begin with FRAME")));
        }
        let size = self.header.frame_bytes()?;
        // Grown as the bytes arrive, so a header that claims a large frame over a short file
        // costs what the file holds, not what it claims.
        self.planes.clear();
        let got = self
            .input
            .by_ref()
            .take(size as u64)
            .read_to_end(&mut self.planes)
            .map_err(|e| bad(&self.name, format!("cannot read frame {number}: {e}")))?;
        if got < size {
            return Err(bad(&self.name, format!("frame {number} is truncated: {got} of its {size} bytes")));
        }
        self.frames = number;
        Ok(Some(to_rgb(&self.header, &self.planes)?))
    }
}

/// BT.601 YCbCr to RGB: `R = Y + 1.402 Cr`, `G = Y - 0.344136 Cb - 0.714136 Cr`,
/// `B = Y + 1.772 Cb` (ITU-R BT.601's matrix, as JPEG's JFIF uses it), with limited-range samples
/// first stretched from 16..=235 (luma) and 16..=240 (chroma).
fn to_rgb(header: &Header, planes: &[u8]) -> Result<RgbImage> {
    let (w, h) = (header.width, header.height);
    let (luma, chroma) = planes.split_at(w * h);
    let (cw, ch) = match header.chroma {
        Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
        Chroma::C444 => (w, h),
        Chroma::Mono => (0, 0),
    };
    let (cb, cr) = chroma.split_at(cw * ch);
    let (y_scale, y_offset, c_scale) =
        if header.full_range { (1.0, 0.0, 1.0) } else { (255.0 / 219.0, 16.0, 255.0 / 224.0) };
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let l = (f32::from(luma[y * w + x]) - y_offset) * y_scale;
            let (u, v) = match header.chroma {
                Chroma::Mono => (0.0, 0.0),
                Chroma::C420 | Chroma::C444 => {
                    let k = if header.chroma == Chroma::C420 { (y / 2) * cw + x / 2 } else { y * w + x };
                    ((f32::from(cb[k]) - 128.0) * c_scale, (f32::from(cr[k]) - 128.0) * c_scale)
                }
            };
            let r = l + 1.402 * v;
            let g = l - 0.344_136 * u - 0.714_136 * v;
            let b = l + 1.772 * u;
            rgb.extend([r, g, b].map(|c| c.round().clamp(0.0, 255.0) as u8));
        }
    }
    RgbImage::new(w, h, rgb)
}

/// RGB to BT.601 limited-range YCbCr 4:4:4 planes (Y, then Cb, then Cr): the inverse of the
/// reader's conversion, for writing test streams and fuzz seeds.
pub fn to_ycbcr444(image: &RgbImage) -> Vec<u8> {
    let n = image.width * image.height;
    let mut planes = vec![0u8; 3 * n];
    for (i, p) in image.data.chunks_exact(3).enumerate() {
        let [r, g, b] = [p[0], p[1], p[2]].map(f32::from);
        let l = 0.299 * r + 0.587 * g + 0.114 * b;
        let u = (b - l) / 1.772;
        let v = (r - l) / 1.402;
        planes[i] = (16.0 + l * 219.0 / 255.0).round().clamp(0.0, 255.0) as u8;
        planes[n + i] = (128.0 + u * 224.0 / 255.0).round().clamp(0.0, 255.0) as u8;
        planes[2 * n + i] = (128.0 + v * 224.0 / 255.0).round().clamp(0.0, 255.0) as u8;
    }
    planes
}

/// A whole 4:4:4 Y4M stream of `frames` (all of one size), at `fps` frames a second.
pub fn write_y4m444(frames: &[RgbImage], fps: u32) -> Vec<u8> {
    let (w, h) = frames.first().map_or((0, 0), |f| (f.width, f.height));
    let mut out = format!("YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C444\n").into_bytes();
    for frame in frames {
        out.extend_from_slice(b"FRAME\n");
        out.extend(to_ycbcr444(frame));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Vec<RgbImage>> {
        let mut video = Y4m::new(bytes, "test.y4m")?;
        let mut frames = Vec::new();
        while let Some(frame) = video.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> RgbImage {
        let data = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| f(x, y)).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    /// Writing and reading back keeps every colour within the rounding of limited range.
    #[test]
    fn a_444_stream_round_trips() {
        let frames: Vec<RgbImage> =
            (0..3).map(|k| image(5, 3, |x, y| [(x * 50) as u8, (y * 100) as u8, (k * 120) as u8])).collect();
        let stream = write_y4m444(&frames, 25);
        let back = read_all(&stream).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in frames.iter().zip(&back) {
            let worst = a.data.iter().zip(&b.data).map(|(&p, &q)| (p as i32 - q as i32).abs()).max().unwrap();
            assert!(worst <= 2, "a colour moved by {worst}");
        }
        let video = Y4m::new(&stream[..], "t").unwrap();
        assert_eq!(video.header.fps, Some((25, 1)));
    }

    /// 4:2:0 at an odd size: chroma planes of ceil(w/2) x ceil(h/2), each sample over 2 x 2.
    #[test]
    fn odd_sized_420_repeats_each_chroma_sample() {
        let (w, h) = (3, 3);
        let mut bytes = b"YUV4MPEG2 W3 H3 C420jpeg XCOLORRANGE=FULL\nFRAME\n".to_vec();
        bytes.extend([128u8; 9]);
        bytes.extend([128, 128, 128, 228]); // Cb: the last block (x 2, y 2) bluer
        bytes.extend([128u8; 4]);
        let frames = read_all(&bytes).unwrap();
        let [frame] = &frames[..] else { panic!("one frame") };
        assert_eq!((frame.width, frame.height), (w, h));
        let px = |x: usize, y: usize| &frame.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
        assert_eq!(px(0, 0), &[128, 128, 128]);
        assert_eq!(px(2, 2), &[128, 94, 255]);
        assert_eq!(px(1, 1), &[128, 128, 128]);
    }

    #[test]
    fn mono_is_grey_and_limited_range_is_stretched() {
        let mut bytes = b"YUV4MPEG2 W2 H1 Cmono\nFRAME\n".to_vec();
        bytes.extend([16, 235]);
        let frames = read_all(&bytes).unwrap();
        assert_eq!(frames[0].data, vec![0, 0, 0, 255, 255, 255]);
    }

    /// Each kind of bad stream gives its own error, never a panic.
    #[test]
    fn bad_streams_say_what_is_wrong() {
        let frame = |extra: &[u8]| {
            let mut b = b"YUV4MPEG2 W2 H2 C444\nFRAME\n".to_vec();
            b.extend([0u8; 12]);
            b.extend(extra);
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (b"RIFF....".to_vec(), "cut short"),
            (b"GIF89a nothing\n".to_vec(), "does not begin with YUV4MPEG2"),
            (b"YUV4MPEG2 H2 C444\n".to_vec(), "no width"),
            (b"YUV4MPEG2 W2 C444\n".to_vec(), "no height"),
            (b"YUV4MPEG2 W-2 H2\n".to_vec(), "not a number"),
            (b"YUV4MPEG2 W0 H2\n".to_vec(), "no pixels"),
            (b"YUV4MPEG2 W99999 H99999\n".to_vec(), "too large"),
            (b"YUV4MPEG2 W2 H2 C422\n".to_vec(), "C422 is not read"),
            (b"YUV4MPEG2 W2 H2 C420p10\n".to_vec(), "C420p10 is not read"),
            ([b"YUV4MPEG2 W2 H2 ".as_slice(), &[b'X'; MAX_LINE], b"\n"].concat(), "longer than"),
            (frame(b"FRAME\n\0\0"), "frame 2 is truncated: 2 of its 12 bytes"),
            (frame(b"FRAM"), "cut short"),
            (frame(b"JUNK\n"), "frame 2 does not begin with FRAME"),
        ];
        for (bytes, expected) in cases {
            let error = read_all(&bytes).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                error.contains(expected),
                "{:?}: expected \"{expected}\", got \"{error}\"",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
        // A header alone is a stream of no frames (the command line refuses it by name).
        assert_eq!(read_all(b"YUV4MPEG2 W2 H2\n").unwrap().len(), 0);
    }
}
