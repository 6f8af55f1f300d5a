//! The exports against the references: our RLE against pycocotools' own strings for the edge
//! cases in `tests/fixtures/exports/pycocotools.json` (`tools/check_exports.py record`), every
//! format of those cases read back here (an RLE decoder written from `maskApi.c`'s
//! `rleFrString`, polygons filled by pixel centres, the PNGs decoded), and the folder mode of
//! `wordmask segment` on scenes whose words are known: what it writes, resuming after a kill,
//! and shards merged. `WORDMASK_EXPORTS_DIR=DIR` keeps the edge cases' exports in DIR for
//! `tools/check_exports.py check DIR/edge` (and `DIR/many-classes`).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{Cli, Scene, fixtures};
use wordmask::labels::Label;
use wordmask::segment::LabelMap;
use wordmask::segment::export::coco::{self, CocoFile, Shape};
use wordmask::segment::export::{Labelled, labelme, rle, voc, yolo};
use wordmask::segment::objects::{Object, RunMask};

/// Objects of at least this many pixels must fill back from their YOLO outline with an IoU of
/// at least [`MIN_IOU`] (the bound); smaller ones are a few pixels, where the
/// outline's half-pixel corners are a large share.
const MIN_AREA: usize = 100;
const MIN_IOU: f64 = 0.98;

struct Case {
    name: String,
    width: usize,
    height: usize,
    classes: usize,
    /// `(class, mask, pycocotools' counts, its toBbox, its area)`.
    objects: Vec<(usize, RunMask, String, [usize; 4], usize)>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("exports/pycocotools.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (width, height) = (n(&c["width"]), n(&c["height"]));
            let objects = c["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    let plane: Vec<u8> = o["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|r| r.as_str().unwrap().bytes().map(|b| b - b'0').collect::<Vec<_>>())
                        .collect();
                    let bbox = o["bbox"].as_array().unwrap().iter().map(n).collect::<Vec<_>>();
                    let counts = o["counts"].as_str().unwrap().to_string();
                    (
                        n(&o["class"]),
                        RunMask::from_plane(&plane, width, height),
                        counts,
                        bbox.try_into().unwrap(),
                        n(&o["area"]),
                    )
                })
                .collect();
            Case { name: c["name"].as_str().unwrap().into(), width, height, classes: n(&c["classes"]), objects }
        })
        .collect()
}

/// `rleFrString` (cocoapi `common/maskApi.c`): the counts of a compressed RLE string.
fn decode_counts(text: &str) -> Vec<u64> {
    let bytes = text.as_bytes();
    let (mut counts, mut p) = (Vec::<i64>::new(), 0);
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0, true);
        while more {
            let c = bytes[p] as i64 - 48;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x += counts[counts.len() - 2];
        }
        counts.push(x);
    }
    counts.into_iter().map(|c| c as u64).collect()
}

/// The row-major 0/1 plane of a COCO RLE (runs down the columns, zeros first).
pub fn decode_rle(r: &rle::Rle) -> Vec<u8> {
    let [h, w] = r.size;
    let mut plane = vec![0u8; w * h];
    let (mut t, mut value) = (0usize, 0u8);
    for count in decode_counts(&r.counts) {
        for k in t..t + count as usize {
            plane[(k % h) * w + k / h] = value;
        }
        t += count as usize;
        value ^= 1;
    }
    assert_eq!(t, w * h, "the counts cover the image");
    plane
}

/// A closed or open outline filled by pixel centres (even-odd), `h x w`.
fn fill(points: &[[f64; 2]], w: usize, h: usize) -> Vec<u8> {
    let mut plane = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut odd = false;
            for k in 0..points.len() {
                let (a, b) = (points[k], points[(k + 1) % points.len()]);
                if (a[1] > py) != (b[1] > py) && px < a[0] + (py - a[1]) / (b[1] - a[1]) * (b[0] - a[0]) {
                    odd = !odd;
                }
            }
            plane[y * w + x] = odd as u8;
        }
    }
    plane
}

/// A PNG's header and its raw values (palette indices, not colours; 16-bit ones widened).
fn png_values(bytes: &[u8]) -> (png::Info<'static>, Vec<usize>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut pixels).unwrap();
    let info = reader.info().clone();
    let values = match info.bit_depth {
        png::BitDepth::Sixteen => pixels.chunks(2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).collect(),
        _ => pixels.iter().map(|&v| v as usize).collect(),
    };
    (info, values)
}

fn iou(a: &[u8], b: &[u8]) -> f64 {
    let both = a.iter().zip(b).filter(|(x, y)| **x == 1 && **y == 1).count();
    let either = a.iter().zip(b).filter(|(x, y)| **x == 1 || **y == 1).count();
    if either == 0 { 1.0 } else { both as f64 / either as f64 }
}

fn words(n: usize) -> Vec<Label> {
    (0..n).map(|i| Label { name: format!("w{i}"), synonyms: vec![format!("w{i}"), format!("word {i}")] }).collect()
}

#[test]
fn rle_strings_are_pycocotools_own() {
    let mut checked = 0;
    for case in cases() {
        for (k, (_, mask, counts, bbox, area)) in case.objects.iter().enumerate() {
            let ours = rle::encode(mask);
            assert_eq!(ours.size, [case.height, case.width]);
            assert_eq!(
                &ours.counts,
                counts,
                "{} mask {k}: our counts {} (runs {:?}), pycocotools' {counts}",
                case.name,
                ours.counts,
                rle::column_counts(mask)
            );
            assert_eq!(decode_rle(&ours), mask.to_plane(), "{} mask {k}: our decoder reads it back", case.name);
            assert_eq!(mask.area(), *area, "{} mask {k}: area", case.name);
            if *area > 0 {
                let [x0, y0, x1, y1] = mask.bbox();
                assert_eq!([x0, y0, x1 - x0 + 1, y1 - y0 + 1], *bbox, "{} mask {k}: COCO's box", case.name);
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} masks in the fixture");
}

/// The edge cases written in every format, in `segment --images`' layout, and read back.
#[test]
fn edge_cases_read_back_from_every_format() {
    let keep = std::env::var_os("WORDMASK_EXPORTS_DIR").map(PathBuf::from);
    let root = keep.clone().unwrap_or_else(|| common::scratch("exports-edge"));
    let all = cases();
    let (small, many): (Vec<&Case>, Vec<&Case>) = all.iter().partition(|c| c.classes <= 3);
    let mut lowest = f64::INFINITY;
    for (folder, group, classes) in [("edge", small, 3), ("many-classes", many, 2048)] {
        let out = root.join(folder);
        for sub in ["coco", "yolo/labels", "labelme", "voc/SegmentationClass", "voc/SegmentationObject"] {
            std::fs::create_dir_all(out.join(sub)).unwrap();
        }
        let labels = words(classes);
        let mut files = Vec::new();
        for (k, case) in group.iter().enumerate() {
            let (w, h) = (case.width, case.height);
            let objects: Vec<Object> = case
                .objects
                .iter()
                .filter(|o| o.1.area() > 0)
                .enumerate()
                .map(|(i, (class, mask, ..))| Object {
                    id: i as u32 + 1,
                    label: Some(labels[*class].name.clone()),
                    class: Some(*class),
                    score: 1.0 - i as f32 * 0.1,
                    bbox: mask.bbox(),
                    area: mask.area(),
                    point: None,
                    mask: mask.clone(),
                })
                .collect();
            let file_name = format!("{}.png", case.name);
            let image = Labelled { file_name: &file_name, width: w, height: h, objects: &objects };
            let file = coco::image_file(&image, k as u64 + 1, &labels, false);
            std::fs::write(out.join(format!("coco/{}.json", case.name)), serde_json::to_vec(&file).unwrap()).unwrap();
            let yolo_text = yolo::label_file(&image);
            std::fs::write(out.join(format!("yolo/labels/{}.txt", case.name)), &yolo_text).unwrap();
            let labelme = labelme::file(&image, &format!("../{file_name}"), &labels);
            std::fs::write(out.join(format!("labelme/{}.json", case.name)), labelme.to_string()).unwrap();
            let mut map = if classes > 255 { LabelMap::Wide(vec![0; w * h]) } else { LabelMap::Narrow(vec![0; w * h]) };
            for o in &objects {
                for &(start, n) in o.mask.runs() {
                    (start..start + n).for_each(|i| map.set(i as usize, o.class.unwrap() + 1));
                }
            }
            let class_png = voc::class_png(&map, w, h).unwrap();
            std::fs::write(out.join(format!("voc/SegmentationClass/{}.png", case.name)), &class_png).unwrap();
            std::fs::write(
                out.join(format!("voc/SegmentationObject/{}.png", case.name)),
                voc::object_png(&image).unwrap(),
            )
            .unwrap();

            // COCO: each annotation decodes to its object, with its word's category.
            assert_eq!(file.annotations.len(), objects.len(), "{}: one annotation an object", case.name);
            for (a, o) in file.annotations.iter().zip(&objects) {
                let Shape::Rle(r) = &a.segmentation else { panic!("RLE unless polygons are asked for") };
                assert_eq!(decode_rle(r), o.mask.to_plane(), "{}: annotation {}", case.name, a.id);
                assert_eq!((a.category_id, a.area), (o.class.unwrap() + 1, o.area));
            }
            // YOLO: a line an object, its class, its outline filling back to the mask.
            let lines: Vec<&str> = yolo_text.lines().collect();
            assert_eq!(lines.len(), objects.len(), "{}: {yolo_text}", case.name);
            for (line, o) in lines.iter().zip(&objects) {
                let values: Vec<f64> = line.split(' ').skip(1).map(|v| v.parse().unwrap()).collect();
                assert_eq!(line.split(' ').next().unwrap(), o.class.unwrap().to_string());
                let points: Vec<[f64; 2]> = values.chunks(2).map(|p| [p[0] * w as f64, p[1] * h as f64]).collect();
                let back = iou(&fill(&points, w, h), &o.mask.to_plane());
                lowest = lowest.min(back);
                if o.area >= MIN_AREA {
                    assert!(
                        back >= MIN_IOU,
                        "{}: object {} of {} px fills back with IoU {back}",
                        case.name,
                        o.id,
                        o.area
                    );
                }
            }
            // VOC: the class map as written, with VOC's palette where it fits 8 bits.
            let (info, values) = png_values(&class_png);
            assert_eq!(values, map.to_vec(), "{}: class map", case.name);
            if classes > 255 {
                assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
            } else {
                assert_eq!(info.color_type, png::ColorType::Indexed);
                assert_eq!(&info.palette.unwrap()[3..6], &[128, 0, 0], "VOC's first class colour");
            }
            files.push(file);
        }
        let merged = coco::merge(&files).unwrap();
        let ids: Vec<u64> = merged.annotations.iter().map(|a| a.id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "annotation ids numbered again");
        assert_eq!(merged.categories.len(), classes);
        assert_eq!(merged.categories[classes - 1].id, classes, "the last word's category id");
        std::fs::write(out.join("coco.json"), serde_json::to_vec(&merged).unwrap()).unwrap();
        std::fs::write(out.join("coco_results.json"), serde_json::to_vec(&coco::results(&merged)).unwrap()).unwrap();
        std::fs::write(out.join("yolo/data.yaml"), yolo::data_yaml(&labels, ".")).unwrap();
        std::fs::write(out.join("voc/labelmap.txt"), voc::labelmap(&labels)).unwrap();
    }
    eprintln!("lowest YOLO fill-back IoU over the edge cases: {lowest:.4}");
    if keep.is_none() {
        std::fs::remove_dir_all(&root).ok();
    }
}

/// Class indices up to 65,535, the most a 16-bit label PNG holds, through every writer: COCO's
/// category ids and categories, YOLO's class numbers and `data.yaml`, LabelMe's labels, VOC's
/// 16-bit class map and `labelmap.txt` (typed words stop at 2,048; a classifier's classes, such
/// as an ImageNet-21k one's, go further).
#[test]
fn class_indices_up_to_65535_survive_every_format() {
    let classes = 65_535;
    let labels = words(classes);
    let (w, h) = (12, 10);
    let rect = |x0: usize, y0: usize, x1: usize, y1: usize| {
        let plane: Vec<u8> =
            (0..w * h).map(|i| u8::from((x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w)))).collect();
        RunMask::from_plane(&plane, w, h)
    };
    let objects: Vec<Object> = [(0, rect(0, 0, 4, 3)), (40_000, rect(5, 1, 11, 6)), (65_534, rect(1, 6, 9, 10))]
        .into_iter()
        .enumerate()
        .map(|(i, (class, mask))| Object {
            id: i as u32 + 1,
            label: Some(labels[class].name.clone()),
            class: Some(class),
            score: 0.5,
            bbox: mask.bbox(),
            area: mask.area(),
            point: None,
            mask,
        })
        .collect();
    let image = Labelled { file_name: "wide.png", width: w, height: h, objects: &objects };
    let file = coco::image_file(&image, 1, &labels, false);
    assert_eq!(file.categories.len(), classes);
    assert_eq!((file.categories[classes - 1].id, file.categories[classes - 1].name.as_str()), (65_535, "w65534"));
    let ids: Vec<usize> = file.annotations.iter().map(|a| a.category_id).collect();
    assert_eq!(ids, [1, 40_001, 65_535]);
    for (a, o) in file.annotations.iter().zip(&objects) {
        let Shape::Rle(r) = &a.segmentation else { panic!("RLE") };
        assert_eq!(decode_rle(r), o.mask.to_plane());
    }
    let yolo_classes: Vec<String> =
        yolo::label_file(&image).lines().map(|l| l.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(yolo_classes, ["0", "40000", "65534"]);
    assert!(
        yolo::data_yaml(&labels, ".").contains("nc: 65535\n")
            && yolo::data_yaml(&labels, ".").ends_with("  65534: \"w65534\"\n")
    );
    let labelme = labelme::file(&image, "wide.png", &labels);
    let names: Vec<&str> = labelme["shapes"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["w0", "w40000", "w65534"]);
    let mut map = LabelMap::Wide(vec![0; w * h]);
    for o in &objects {
        for &(start, n) in o.mask.runs() {
            (start..start + n).for_each(|i| map.set(i as usize, o.class.unwrap() + 1));
        }
    }
    let (info, values) = png_values(&voc::class_png(&map, w, h).unwrap());
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    assert_eq!(values, map.to_vec());
    assert!(values.contains(&65_535) && values.contains(&40_001));
    let [r, g, b] = voc::colour(65_535);
    assert!(voc::labelmap(&labels).ends_with(&format!("w65534:{r},{g},{b}::\n")));
}

/// Paint `n` variants of the four-colour scene (each moved along by 16 pixels a step, so the
/// images differ) into `dir`, and give the word each pixel shows in each.
fn paint_scenes(dir: &Path, n: usize) -> Vec<(String, Vec<String>)> {
    std::fs::create_dir_all(dir).unwrap();
    let scene = Scene::load();
    let (picture, truth) = scene.picture();
    let (w, h) = (scene.width as usize, scene.height as usize);
    (0..n)
        .map(|k| {
            let shift = 16 * k;
            let mut img = image::RgbImage::new(w as u32, h as u32);
            let mut moved = vec![String::new(); w * h];
            for y in 0..h {
                for x in 0..w {
                    let from = (x + w - shift % w) % w;
                    img.put_pixel(x as u32, y as u32, *picture.get_pixel(from as u32, y as u32));
                    moved[y * w + x] = truth[y * w + from].clone();
                }
            }
            let name = format!("scene-{k}.png");
            img.save(dir.join(&name)).unwrap();
            (name, moved)
        })
        .collect()
}

fn folder_cli(images: &Path, out: &Path) -> Cli {
    Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--images", images)
        .labels("yellow, green|lime, red, blue")
        .args(["--background", "none", "--threshold", "0", "--templates", "single"])
        .arg("--format", "coco,yolo,labelme,voc")
        .out(out)
}

fn read_coco(path: &Path) -> CocoFile {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir`, with its modification time (while a run writes there: a folder not
/// made yet, or a temporary file renamed away meanwhile, is passed over).
fn listing(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(time) = path.metadata().and_then(|m| m.modified()) {
                found.insert(path, time);
            }
        }
    }
    found
}

/// The folder mode on scenes whose words are known: one COCO annotation a painted region,
/// decoding to its region; the VOC class map as painted; YOLO and LabelMe for each object.
#[test]
fn folder_mode_exports_each_painted_region() {
    let dir = common::scratch("exports-folder");
    let images = dir.join("photos");
    let scenes = paint_scenes(&images, 2);
    let out = dir.join("labels");
    folder_cli(&images, &out).ok();
    let merged = read_coco(&out.join("coco.json"));
    let names: Vec<&str> = merged.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["yellow", "green", "red", "blue"]);
    assert_eq!(merged.categories[1].synonyms, ["green", "lime"]);
    assert_eq!(merged.images.len(), scenes.len());
    for (k, (name, truth)) in scenes.iter().enumerate() {
        let image = &merged.images[k];
        assert_eq!((&image.file_name, image.id), (name, k as u64 + 1));
        let anns: Vec<&coco::Annotation> = merged.annotations.iter().filter(|a| a.image_id == image.id).collect();
        let (w, h) = (image.width, image.height);
        for category in &merged.categories {
            let painted: Vec<u8> = truth.iter().map(|word| u8::from(*word == category.name)).collect();
            let mut mine: Vec<&&coco::Annotation> = anns.iter().filter(|a| a.category_id == category.id).collect();
            // The region, and specks of a pixel or two where the words' map is upsampled at the
            // regions' corners: every region is an object.
            mine.sort_by_key(|a| std::cmp::Reverse(a.area));
            let specks: usize = mine.iter().skip(1).map(|a| a.area).sum();
            assert!(specks * 1000 < w * h, "{name}: {} is one region and specks: {:?}", category.name, mine);
            let Shape::Rle(r) = &mine[0].segmentation else { panic!("RLE") };
            let decoded = decode_rle(r);
            let overlap = iou(&decoded, &painted);
            assert!(overlap >= 0.95, "{name}: {} decodes to its painted region with IoU {overlap}", category.name);
        }
        let class_png = png_values(&std::fs::read(out.join("voc/SegmentationClass").join(name)).unwrap()).1;
        // Each category's objects together are its pixels in the VOC class map.
        let mut union = vec![0usize; w * h];
        for a in &anns {
            let Shape::Rle(r) = &a.segmentation else { panic!("RLE") };
            for (i, v) in decode_rle(r).into_iter().enumerate() {
                if v == 1 {
                    assert_eq!(union[i], 0, "{name}: objects overlap at pixel {i}");
                    union[i] = a.category_id;
                }
            }
        }
        let wrong = union.iter().zip(&class_png).filter(|(u, c)| u != c).count();
        assert_eq!(wrong, 0, "{name}: pixels where the objects and SegmentationClass differ");
        let stem = name.trim_end_matches(".png");
        let yolo = std::fs::read_to_string(out.join(format!("yolo/labels/{stem}.txt"))).unwrap();
        assert_eq!(yolo.lines().count(), anns.len());
        for (line, a) in yolo.lines().zip(&anns) {
            let values: Vec<f64> = line.split(' ').skip(1).map(|v| v.parse().unwrap()).collect();
            let points: Vec<[f64; 2]> = values.chunks(2).map(|p| [p[0] * w as f64, p[1] * h as f64]).collect();
            let Shape::Rle(r) = &a.segmentation else { panic!("RLE") };
            let back = iou(&fill(&points, w, h), &decode_rle(r));
            assert!(back >= MIN_IOU, "{name}: YOLO outline of annotation {} fills back with IoU {back}", a.id);
        }
        let labelme: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("labelme/{stem}.json"))).unwrap()).unwrap();
        assert_eq!(labelme["imagePath"], format!("../../photos/{name}"), "relative to the JSON file");
        assert_eq!((labelme["imageWidth"].as_u64(), labelme["imageHeight"].as_u64()), (Some(w as u64), Some(h as u64)));
    }
    // Without the specks: one annotation a painted region, and the class map without them too.
    let whole = dir.join("whole-regions");
    folder_cli(&images, &whole).args(["--min-area", "64"]).ok();
    let regions = read_coco(&whole.join("coco.json"));
    assert_eq!(regions.annotations.len(), 4 * scenes.len(), "one object a region: {:?}", regions.annotations);
    let class_png = png_values(&std::fs::read(whole.join("voc/SegmentationClass/scene-0.png")).unwrap()).1;
    let labelled = class_png.iter().filter(|&&c| c > 0).count();
    let area: usize = regions.annotations.iter().filter(|a| a.image_id == 1).map(|a| a.area).sum();
    assert_eq!(labelled, area, "the specks' pixels are unlabelled");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coco_results.json")).unwrap()).unwrap();
    assert_eq!(results.as_array().map(Vec::len), Some(merged.annotations.len()));
    assert!(std::fs::read_to_string(out.join("yolo/data.yaml")).unwrap().contains("  1: \"green\""));
    assert!(std::fs::read_to_string(out.join("voc/labelmap.txt")).unwrap().contains("green:0,128,0::"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Stopped by SIGINT after its first image and by SIGKILL after another, the folder mode picks
/// up where it was: no image done twice (the files written before a stop keep their times), no
/// partial file, and the merged COCO file the same as an uninterrupted run's and as two shards'
/// merged.
#[test]
fn folder_mode_resumes_after_a_kill_and_shards_merge() {
    let dir = common::scratch("exports-resume");
    let images = dir.join("photos");
    let scenes = paint_scenes(&images, 6);
    let whole = dir.join("whole");
    folder_cli(&images, &whole).ok();
    let reference = std::fs::read(whole.join("coco.json")).unwrap();

    // Interrupted twice, by Ctrl-C's SIGINT once an image is done and by SIGKILL once another
    // is, then run to its end.
    let out = dir.join("killed");
    let files_of = |stem: &str| {
        [
            "coco/{}.json",
            "yolo/labels/{}.txt",
            "labelme/{}.json",
            "voc/SegmentationClass/{}.png",
            "voc/SegmentationObject/{}.png",
        ]
        .map(|f| out.join(f.replace("{}", stem)))
    };
    let stems: Vec<String> = scenes.iter().map(|(n, _)| n.trim_end_matches(".png").to_string()).collect();
    let done_in = |listed: &BTreeMap<PathBuf, SystemTime>| -> Vec<[PathBuf; 5]> {
        stems.iter().map(|s| files_of(s)).filter(|files| files.iter().all(|f| listed.contains_key(f))).collect()
    };
    let mut done: Vec<[PathBuf; 5]> = Vec::new();
    let mut times = BTreeMap::new();
    // Should the run still reach its end before this test gets to stop it, that attempt proves
    // nothing and starts over (three at most).
    let mut attempt = 0;
    'attempt: loop {
        attempt += 1;
        std::fs::remove_dir_all(&out).ok();
        done.clear();
        times.clear();
        for (round, signal) in [(1, libc::SIGINT), (2, libc::SIGKILL)] {
            // Ctrl-C's default action in the child whatever this process inherited: a suite
            // started in the background by a non-interactive shell (`cmd &`, nohup) ignores
            // SIGINT, and an ignored signal stays ignored across exec, so the run would go on
            // to its end. At the lowest priority, the run also cannot get through its images
            // while this test, among the suite's other threads, waits its turn to stop it.
            let mut command = folder_cli(&images, &out).command();
            // SAFETY: between fork and exec, only the child's own signal disposition and
            // priority change (both async-signal-safe calls).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                    libc::nice(19);
                    Ok(())
                });
            }
            let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
            let started = Instant::now();
            while done_in(&listing(&out)).len() < round {
                assert!(started.elapsed() < Duration::from_secs(300), "round {round}: no image finished");
                assert!(child.try_wait().unwrap().is_none(), "round {round}: the run ended before it was stopped");
                std::thread::sleep(Duration::from_millis(2));
            }
            // SAFETY: the child is ours and not yet waited for.
            assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
            let status = child.wait().unwrap();
            let finished = done_in(&listing(&out)).len() == scenes.len();
            if std::os::unix::process::ExitStatusExt::signal(&status) != Some(signal) || finished {
                assert!(attempt < 3, "round {round}: the run ended before the signal stopped it, {attempt} times");
                eprintln!("round {round}: the run ended before the signal stopped it; starting over");
                continue 'attempt;
            }
            let listed = listing(&out);
            assert!(!out.join("coco.json").exists(), "no merged file from an unfinished run");
            for path in listed.keys().filter(|p| !p.to_string_lossy().ends_with(".partial")) {
                let bytes = std::fs::read(path).unwrap();
                match path.extension().and_then(|e| e.to_str()) {
                    Some("json") => {
                        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{path:?} is whole")
                    }
                    Some("png") => assert!(image::load_from_memory(&bytes).is_ok(), "{path:?} is whole"),
                    _ => {}
                }
            }
            for path in done.iter().flatten() {
                assert_eq!(listed.get(path), times.get(path), "round {round}: {} was written again", path.display());
            }
            done = done_in(&listed);
            times = listed;
            assert!(
                done.len() >= round && done.len() < scenes.len(),
                "round {round}: {} of {} images",
                done.len(),
                scenes.len()
            );
        }
        break;
    }

    let rerun = folder_cli(&images, &out).ok();
    let summary = String::from_utf8_lossy(&rerun.stderr);
    assert!(summary.contains(&format!("{} done before", done.len())), "{summary}");
    let after = listing(&out);
    for path in done.iter().flatten() {
        assert_eq!(after.get(path), times.get(path), "{} was written again", path.display());
    }
    assert!(after.keys().all(|p| !p.to_string_lossy().ends_with(".partial")), "no partial file is left: {after:?}");
    assert_eq!(std::fs::read(out.join("coco.json")).unwrap(), reference, "the resumed run's COCO file");

    // A photo added before the others: the rerun does it alone, and every image takes its new
    // place in the merged file.
    std::fs::copy(images.join("scene-1.png"), images.join("a-scene.png")).unwrap();
    let grown = folder_cli(&images, &out).ok();
    let summary = String::from_utf8_lossy(&grown.stderr);
    assert!(summary.contains(&format!("1 labelled, {} done before", scenes.len())), "{summary}");
    let merged = read_coco(&out.join("coco.json"));
    let names: Vec<(u64, &str)> = merged.images.iter().map(|i| (i.id, i.file_name.as_str())).collect();
    assert_eq!(names[..2], [(1, "a-scene.png"), (2, "scene-0.png")]);
    assert!(merged.annotations.iter().all(|a| a.image_id <= names.len() as u64));
    std::fs::remove_file(images.join("a-scene.png")).unwrap();

    // Two shards into one folder, merged.
    let shards = dir.join("shards");
    for i in 0..2 {
        folder_cli(&images, &shards).arg("--shard", format!("{i}/2")).ok();
    }
    let merged = shards.join("merged.json");
    Cli::new("merge-coco")
        .args([shards.join("coco.shard-1-of-2.json"), shards.join("coco.shard-0-of-2.json")])
        .out(&merged)
        .ok();
    assert_eq!(std::fs::read(&merged).unwrap(), reference, "the shards merged");
    // More parts than images: a part with none writes a file without images, which merges.
    folder_cli(&images, &shards).arg("--shard", "6/7").ok();
    let none = read_coco(&shards.join("coco.shard-6-of-7.json"));
    assert!(none.images.is_empty() && none.annotations.is_empty() && none.categories.len() == 4);
    let with_none = shards.join("with-none.json");
    let parts = ["coco.shard-0-of-2.json", "coco.shard-6-of-7.json", "coco.shard-1-of-2.json"].map(|f| shards.join(f));
    Cli::new("merge-coco").args(parts).out(&with_none).ok();
    assert_eq!(std::fs::read(&with_none).unwrap(), reference, "an empty part changes nothing");
    let err = Cli::new("merge-coco")
        .args([shards.join("coco.shard-0-of-2.json"), shards.join("coco.shard-0-of-2.json")])
        .out(dir.join("twice.json"))
        .fails();
    assert!(err.contains("in two files"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Refused before any work: an output folder that is the photos' folder, a rerun with other
/// words, a missing format, a shard out of range.
#[test]
fn folder_mode_refuses_what_would_mix_or_overwrite() {
    let dir = common::scratch("exports-refused");
    let images = dir.join("photos");
    paint_scenes(&images, 1);
    let err = folder_cli(&images, &images).fails();
    assert!(err.contains("holds an input"), "{err}");
    let err = Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--images", &images)
        .labels("red")
        .out(dir.join("out"))
        .fails();
    assert!(err.contains("--format"), "{err}");
    let err = folder_cli(&images, &dir.join("out")).arg("--shard", "2/2").fails();
    assert!(err.contains("0 <= I < N"), "{err}");
    let out = dir.join("labels");
    folder_cli(&images, &out).ok();
    let err = Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--images", &images)
        .labels("red, green")
        .arg("--format", "coco")
        .out(&out)
        .fails();
    assert!(err.contains("other words"), "{err}");
    std::fs::write(images.join("scene-0.jpg"), b"x").unwrap();
    let err = folder_cli(&images, &dir.join("out2")).fails();
    assert!(err.contains("share the name"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
