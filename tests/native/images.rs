//! Images as an attacker or a camera makes them, built here byte by byte (nothing large is
//! committed): PNG and JPEG headers claiming huge sizes, a PNG whose colour profile inflates to
//! gigabytes, huge label maps, and photos with each EXIF orientation.
//!
//! Each hostile image goes through the commands that read images; a refused one must say why,
//! and whatever the outcome the command's peak memory stays under 1 GiB (`tools/input_peaks.sh`
//! prints the table this test measures, for docs/performance.md). The EXIF photos
//! (tests/fixtures/images/exif/, shared with tests/browser/exif.test.mjs) must come out as
//! Chromium shows them.

use crate::common;

use std::path::Path;

use common::{Cli, Scene, fixtures, scratch};

/// A zlib stream that inflates to `n` zero bytes, at about 1,000 to 1 (deflate's limit): one
/// dynamic-Huffman block whose codes are a literal 0 (`10`), the 258-byte match (`0`) at
/// distance 1 (`0`) and the end of the block (`11`), so a match costs two zero bits.
pub fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.put(1, 1); // the last block
    bits.put(2, 2); // dynamic Huffman codes
    bits.put(29, 5); // 286 literal/length codes
    bits.put(1, 5); // 2 distance codes
    bits.put(14, 4); // 18 code-length codes, in deflate's order 16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
    // 11, 4, 12, 3, 13, 2, 14, 1: 18 is one bit long, 1 and 2 are two bits long.
    for symbol in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
        bits.put(
            match symbol {
                18 => 1,
                1 | 2 => 2,
                _ => 0,
            },
            3,
        );
    }
    // Canonical codes for the code lengths: 18 -> 0, 1 -> 10, 2 -> 11.
    let (one, two) = (|b: &mut BitWriter| b.code(0b10, 2), |b: &mut BitWriter| b.code(0b11, 2));
    let zeros = |b: &mut BitWriter, count: u32| {
        b.code(0, 1);
        b.put(count - 11, 7);
    };
    // Literal 0: length 2; 1..=255: none; 256 (end of block): 2; 257..=284: none; 285: 1.
    two(&mut bits);
    zeros(&mut bits, 138);
    zeros(&mut bits, 117);
    two(&mut bits);
    zeros(&mut bits, 28);
    one(&mut bits);
    // Distance codes 0 and 1: one bit each.
    one(&mut bits);
    one(&mut bits);
    // The data: a literal zero, then 258-byte copies of it, then literals for the rest.
    assert!(n >= 1);
    let (copies, rest) = ((n - 1) / 258, (n - 1) % 258);
    bits.code(0b10, 2);
    bits.zeros(copies * 2);
    for _ in 0..rest {
        bits.code(0b10, 2);
    }
    bits.code(0b11, 2);
    let mut out = vec![0x78, 0x01];
    out.extend(bits.finish());
    // Adler-32 of n zeros: a stays 1, b counts the bytes.
    let adler = ((n % 65_521) as u32) << 16 | 1;
    out.extend(adler.to_be_bytes());
    out
}

/// Deflate's bit order: values least significant bit first, Huffman codes most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    used: u32,
}

impl BitWriter {
    fn bit(&mut self, bit: u32) {
        if self.used.is_multiple_of(8) {
            self.bytes.push(0);
        }
        *self.bytes.last_mut().unwrap() |= (bit as u8 & 1) << (self.used % 8);
        self.used += 1;
    }

    fn put(&mut self, value: u32, count: u32) {
        (0..count).for_each(|i| self.bit(value >> i));
    }

    fn code(&mut self, code: u32, length: u32) {
        (0..length).rev().for_each(|i| self.bit(code >> i));
    }

    /// `count` zero bits, a byte at a time where it can.
    fn zeros(&mut self, mut count: usize) {
        while count > 0 && !self.used.is_multiple_of(8) {
            self.bit(0);
            count -= 1;
        }
        self.bytes.resize(self.bytes.len() + count / 8, 0);
        self.used += (count / 8 * 8) as u32;
        (0..count % 8).for_each(|_| self.bit(0));
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// CRC-32 as PNG's chunks carry it (ISO 3309, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ b as u32, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })
    })
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// PNG colour types.
pub const GREY: u8 = 0;
pub const RGB: u8 = 2;
pub const RGBA: u8 = 6;

/// A black (all-zero) PNG of `width` x `height`, non-interlaced, with `extra` chunks before its
/// pixels: a few hundred bytes per megapixel.
pub fn black_png(width: u32, height: u32, colour: u8, depth: u8, extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let channels = match colour {
        GREY => 1,
        RGB => 3,
        RGBA => 4,
        other => panic!("colour type {other}"),
    };
    let row = 1 + (width as usize * channels * depth as usize).div_ceil(8);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([depth, colour, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    for (kind, data) in extra {
        chunk(&mut out, kind, data);
    }
    chunk(&mut out, b"IDAT", &zlib_zeros(row * height as usize));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// An iCCP chunk whose profile inflates to `bytes` zero bytes.
pub fn iccp(bytes: usize) -> (&'static [u8; 4], Vec<u8>) {
    let mut data = b"bomb\0\0".to_vec();
    data.extend(zlib_zeros(bytes));
    (b"iCCP", data)
}

/// A JPEG of the `image` crate's encoder (quality 90).
pub fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).unwrap();
    out
}

/// A small JPEG whose frame header (SOF0) claims `width` x `height`: the scan holds a 16x16
/// picture's data, so a decoder that trusts the header allocates the whole claimed size.
pub fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(&image::RgbImage::from_pixel(16, 16, image::Rgb([120, 60, 30])));
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// A TIFF structure (what EXIF is) holding one tag, Orientation (0x0112) = `orientation`:
/// a big-endian header, one IFD with one SHORT.
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend(1u16.to_be_bytes()); // one entry
    tiff.extend(0x0112u16.to_be_bytes()); // Orientation
    tiff.extend(3u16.to_be_bytes()); // SHORT
    tiff.extend(1u32.to_be_bytes()); // one value
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]); // the value's padding to 4 bytes
    tiff.extend(0u32.to_be_bytes()); // no next IFD
    tiff
}

/// `jpeg` with an EXIF APP1 segment ("Exif\0\0" and the TIFF structure) saying `orientation`,
/// after the JFIF APP0 segment.
pub fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let tiff = exif_orientation(orientation);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend((2 + 6 + tiff.len() as u16).to_be_bytes());
    segment.extend(b"Exif\0\0");
    segment.extend(tiff);
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] {
        at += 2 + u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
    }
    [&jpeg[..at], &segment[..], &jpeg[at..]].concat()
}

/// `png` with an eXIf chunk saying `orientation`, right after IHDR (before the pixels, where
/// PNG's third edition puts it).
pub fn png_with_orientation(png: &[u8], orientation: u16) -> Vec<u8> {
    let at = 8 + 25; // the signature, then IHDR: length, type, 13 bytes, CRC
    let mut exif = Vec::new();
    chunk(&mut exif, b"eXIf", &exif_orientation(orientation));
    [&png[..at], &exif[..], &png[at..]].concat()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// The bound the issue sets: any input file under 10 MB keeps a command under 1 GiB.
const PEAK_LIMIT_MIB: f64 = 1024.0;

/// What the size guard says of a 16384x16384 image (docs/bad-input.md).
const TOO_LARGE: &str = "image of 16384x16384 pixels is too large";
const PIXEL_LIMIT: &str = "the limit is 67108864 pixels in all";

/// What a command must do with a hostile input: refuse it with these words on stderr, or read
/// it (and answer).
enum Expect {
    Refused(&'static [&'static str]),
    Read,
}

/// A dataset folder (`--format folder`) of one image and its label map.
fn dataset(dir: &Path, name: &str, image: &[u8], label: &[u8]) -> std::path::PathBuf {
    let root = dir.join(name);
    for sub in ["images", "labels"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("images/a.png"), image).unwrap();
    std::fs::write(root.join("labels/a.png"), label).unwrap();
    std::fs::write(root.join("classes.txt"), "red\ngreen\n").unwrap();
    root
}

/// Every hostile image through the commands that read it: refused with the reason, or read,
/// and under 1 GiB at its peak either way. Prints the table of peaks (markdown).
#[test]
fn hostile_images_are_refused_or_read_within_1_gib() {
    let dir = scratch("hostile-images");
    let colours = fixtures().join("semantic-colours");
    let out = dir.join("out.png");
    let overlay = dir.join("overlay.png");
    let segment = |image: &str| Cli::new("segment").model(&colours).image(image).labels("red, green").out(&out);

    let photo = write(&dir, "photo.png", &black_png(64, 48, RGB, 8, &[]));
    let claim_huge = write(&dir, "claims-16384.jpg", &jpeg_claiming(16384, 16384));
    let claim_large = write(&dir, "claims-8192.jpg", &jpeg_claiming(8192, 8192));
    let black_huge = write(&dir, "black-16384.png", &black_png(16384, 16384, RGB, 8, &[]));
    // The widest layout a PNG decodes to (16-bit RGBA: 512 MiB) at the largest size allowed.
    let widest = black_png(8192, 8192, RGBA, 16, &[]);
    let widest_path = write(&dir, "rgba16-8192.png", &widest);
    let turned = write(&dir, "rgba16-8192-turned.png", &png_with_orientation(&widest, 6));
    let profile = write(&dir, "profile-4gb.png", &black_png(64, 48, RGB, 8, &[iccp(4_000_000_000)]));
    let huge_label =
        dataset(&dir, "huge-label", &black_png(64, 48, RGB, 8, &[]), &black_png(16384, 16384, GREY, 8, &[]));
    let large_pair = dataset(&dir, "large-pair", &widest, &black_png(8192, 8192, GREY, 8, &[]));
    let folder = |cli: Cli, root: &Path| {
        cli.arg("--dataset", root).arg("--format", "folder").arg("--classes", root.join("classes.txt"))
    };
    let eval = |root: &Path| folder(Cli::new("eval").model(&colours), root);
    let train = |root: &Path, to: &str| {
        folder(Cli::new("train fusioner").arg("--backbone", &colours), root)
            .out(dir.join(to))
            .args(["--epochs", "1", "--width", "16", "--layers", "2", "--heads", "4"])
    };

    let cases: Vec<(&str, &str, Cli, Expect)> = vec![
        ("a 64x48 photo (for comparison)", &*photo, segment(&photo), Expect::Read),
        (
            "a JPEG header claiming 16384x16384",
            &*claim_huge,
            segment(&claim_huge),
            Expect::Refused(&[TOO_LARGE, PIXEL_LIMIT]),
        ),
        (
            "a JPEG header claiming 8192x8192 (the rest of the picture missing, filled as browsers do)",
            &*claim_large,
            segment(&claim_large),
            Expect::Read,
        ),
        (
            "a black PNG of 16384x16384",
            &*black_huge,
            Cli::new("classify").model(&colours).image(&black_huge).labels("red"),
            Expect::Refused(&[TOO_LARGE, PIXEL_LIMIT]),
        ),
        (
            "a PNG of 8192x8192, 16-bit RGBA",
            &*widest_path,
            segment(&widest_path).arg("--overlay", &overlay),
            Expect::Read,
        ),
        (
            "a PNG of 8192x8192, 16-bit RGBA",
            &*widest_path,
            Cli::new("classify").model(&colours).image(&widest_path).labels("red"),
            Expect::Read,
        ),
        (
            "a PNG of 8192x8192, 16-bit RGBA",
            &*widest_path,
            Cli::new("embed-image").model(&colours).image(&widest_path),
            Expect::Read,
        ),
        (
            "a PNG of 8192x8192, 16-bit RGBA",
            &*widest_path,
            Cli::new("sam").fixture("sam-tiny").image(&widest_path).arg("--point", "10,10").out(&out),
            Expect::Read,
        ),
        (
            "a PNG of 8192x8192, 16-bit RGBA, turned by its EXIF orientation (6)",
            &*turned,
            segment(&turned),
            Expect::Read,
        ),
        ("a 64x48 PNG whose colour profile inflates to 4 GB", &*profile, segment(&profile), Expect::Read),
        ("a label PNG of 16384x16384", "", eval(&huge_label), Expect::Refused(&["label", "labels/a.png", TOO_LARGE])),
        (
            "a label PNG of 16384x16384",
            "",
            train(&huge_label, "trained-huge"),
            Expect::Refused(&["labels/a.png", TOO_LARGE]),
        ),
        ("a 16-bit RGBA PNG and its label map, 8192x8192", "", eval(&large_pair), Expect::Read),
        ("a 16-bit RGBA PNG and its label map, 8192x8192", "", train(&large_pair, "trained-large"), Expect::Read),
    ];

    let mut table =
        vec!["| Input | Size | Command | Outcome | Peak |".to_string(), "| --- | --- | --- | --- | --- |".to_string()];
    let mut failures = Vec::new();
    for (input, file, cli, expect) in cases {
        let line = cli.to_string();
        let command =
            line.split_whitespace().skip(1).take_while(|w| !w.starts_with("--")).collect::<Vec<_>>().join(" ");
        let bytes = if file.is_empty() {
            let root = line.split("--dataset ").nth(1).unwrap().split(' ').next().unwrap();
            ["images/a.png", "labels/a.png"]
                .iter()
                .map(|f| std::fs::metadata(Path::new(root).join(f)).unwrap().len())
                .sum()
        } else {
            std::fs::metadata(file).unwrap().len()
        };
        let (output, peak) = cli.run_measured();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let outcome = match (&expect, output.status.success()) {
            (Expect::Read, true) => "read".to_string(),
            (Expect::Refused(pieces), false) => {
                let missing: Vec<_> = pieces.iter().filter(|p| !stderr.contains(*p)).collect();
                if !missing.is_empty() {
                    failures.push(format!("{input} ({command}): missing {missing:?} in:\n{stderr}"));
                }
                let said = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
                format!("refused: {}", said.rsplit(": ").next().unwrap_or_default())
            }
            (_, success) => {
                failures
                    .push(format!("{input} ({line}): exit {:?} (success {success}):\n{stderr}", output.status.code()));
                "wrong".to_string()
            }
        };
        if stderr.contains("panicked") {
            failures.push(format!("{input} ({command}) panicked:\n{stderr}"));
        }
        if peak >= PEAK_LIMIT_MIB {
            failures.push(format!("{input} ({command}): peak {peak:.0} MiB, over {PEAK_LIMIT_MIB} MiB"));
        }
        let size = if bytes < 10_000 { format!("{bytes} bytes") } else { format!("{} KB", bytes.div_ceil(1000)) };
        table.push(format!("| {input} | {size} | `{command}` | {outcome} | {peak:.0} MiB |"));
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    std::fs::remove_dir_all(&dir).ok();
}

/// One file of tests/fixtures/images/exif/orientations.json: as a browser shows it.
struct Shown {
    file: String,
    width: u32,
    height: u32,
    /// `(x, y, word)`: where each region's probe lands once the orientation is applied.
    probes: Vec<(u32, u32, String)>,
}

fn exif_fixtures() -> Vec<Shown> {
    let path = fixtures().join("images/exif/orientations.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as u32;
    json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Shown {
            file: f["file"].as_str().unwrap().to_string(),
            width: n(&f["width"]),
            height: n(&f["height"]),
            probes: f["probes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (n(&p[0]), n(&p[1]), p[2].as_str().unwrap().to_string()))
                .collect(),
        })
        .collect()
}

/// `segment` with the colour checkpoint on the scene stored in each EXIF orientation (1-8, and
/// a PNG's eXIf chunk): the label map has the size and the colours where Chromium shows them
/// (orientations.json; tests/browser/exif.test.mjs holds the page to the same file).
#[test]
fn exif_orientations_come_out_as_browsers_show_them() {
    let dir = scratch("exif");
    let scene = Scene::load();
    let mut failures = Vec::new();
    for shown in exif_fixtures() {
        let out = dir.join(format!("{}.png", shown.file));
        Cli::new("segment")
            .fixture("semantic-colours")
            .image(fixtures().join("images/exif").join(&shown.file))
            .labels(scene.labels.join(", "))
            .out(&out)
            .ok();
        let map = image::open(&out).unwrap().to_luma8();
        if map.dimensions() != (shown.width, shown.height) {
            failures.push(format!("{}: {:?}, shown {}x{}", shown.file, map.dimensions(), shown.width, shown.height));
            continue;
        }
        for (x, y, word) in &shown.probes {
            let label = map.get_pixel(*x, *y).0[0] as usize;
            let got = label.checked_sub(1).and_then(|i| scene.labels.get(i)).map_or("(unlabelled)", |w| w.as_str());
            if got != word {
                failures.push(format!("{}: ({x}, {y}) is {got}, shown {word}", shown.file));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes tests/fixtures/images/exif/: the scene (tests/fixtures/images/scene.json) as a JPEG of
/// the `image` crate (quality 90) with each EXIF orientation, and as a PNG whose eXIf chunk
/// says 6. `cargo test --release --test native images::write_exif_fixtures -- --ignored`.
#[test]
#[ignore = "rewrites the committed fixtures"]
fn write_exif_fixtures() {
    let to = fixtures().join("images/exif");
    std::fs::create_dir_all(&to).unwrap();
    let (picture, _) = Scene::load().picture();
    let stored = jpeg(&picture);
    for orientation in 1..=8 {
        write(&to, &format!("orientation-{orientation}.jpg"), &jpeg_with_orientation(&stored, orientation));
    }
    let mut png = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    write(&to, "orientation-6.png", &png_with_orientation(&png, 6));
}
