//! Video: temporal smoothing and object ids on a synthetic video with known answers, and
//! `segment --video` from the command line.
//!
//! The video is painted here, with the colour checkpoint (tests/fixtures/semantic-colours,
//! whose colour words light up regions of that colour) as the model: two shots of coloured
//! shapes that move over a still background, each frame's ground truth the word of the colour
//! painted there, Gaussian noise on every pixel, and one scene cut. A low-contrast patch, whose
//! colour lies [`MARGIN`] levels on the green side of where the model's answer turns from
//! green to yellow (measured first, on clean frames), stands for the uncertain surfaces where a
//! live segmenter's labels flicker.
//!
//! Measured with smoothing off (strength 0) and on (the video default), and printed: flicker
//! (the share of pixels whose label changes between two frames where the ground truth does
//! not), mIoU over the video, each frame's mIoU after the cut, and id switches (a painted
//! shape whose object id changes from one frame to the next). Negative controls show that the
//! checks can fail: without the motion and cut resets the cut is not recovered from in time,
//! and without the motion reset the moving shapes leave trails that cost mIoU.

use crate::common::{self, Cli};

use wordmask::Backend;
use wordmask::labels::{self, Label};
use wordmask::preprocess::RgbImage;
use wordmask::segment::objects::instance_map;
use wordmask::segment::temporal::{TemporalOptions, VIDEO_STRENGTH, Video};
use wordmask::segment::{EmbeddingCache, Model, Settings, segment, segment_frame};

const WORDS: &str = "red, green, blue, yellow";
const W: usize = 128;
const H: usize = 96;
/// Frames of the first shot; the second starts at this frame (counted from 0).
const CUT: usize = 10;
const FRAMES: usize = 18;
/// Per-pixel noise, standard deviation in levels of 255.
const NOISE: f32 = 12.0;
/// The noise's seeds: every bound must hold for each. Without the label hysteresis the flicker
/// cut holds for some and not others (the control below): near the decision boundary an
/// average alone halves the label's changes at best.
const SEEDS: [u64; 8] = [0x5eed_1234_abcd_0001, 1, 2, 3, 4, 5, 6, 7];
/// How far (red levels) the low-contrast patch sits on the green side of the model's
/// green/yellow boundary (found to half a level): close enough that noise tips it either way.
const MARGIN: f32 = 0.5;
/// Smoothing must at least halve flicker (the bound).
const FLICKER_CUT: f64 = 0.5;
/// Smoothing may cost at most one point of mIoU (the bound); the negative control
/// without the motion reset must lose more than that against smoothing with it.
const MIOU_LOSS: f64 = 0.01;
/// After the cut a frame counts as recovered when its mIoU is within this of the same frame's
/// segmented on its own (smoothing off): the two shots differ in difficulty, and the first
/// shot's level swings with the low-contrast patch, so the frame itself is the level to reach.
const RECOVERED: f64 = 0.02;
/// Frames after the cut (its own first frame included) by which it must be recovered.
const RECOVERY_FRAMES: usize = 2;

/// A shape: its word's colour (or the patch's), a rectangle moving by `step` a frame, and
/// whether it is one of the objects whose ids are followed.
struct Shape {
    word: usize,
    rgb: [f32; 3],
    at: (f32, f32),
    size: (usize, usize),
    step: (f32, f32),
    object: bool,
}

const RED: [f32; 3] = [255.0, 0.0, 0.0];
const BLUE: [f32; 3] = [0.0, 0.0, 255.0];
const YELLOW: [f32; 3] = [255.0, 255.0, 0.0];

/// The two shots: a background, then shapes painted in order. `patch` is the low-contrast
/// colour (green by the model's answer).
fn shots(patch: [f32; 3]) -> [(usize, [f32; 3], Vec<Shape>); 2] {
    let shape = |word, rgb, at, size, step, object| Shape { word, rgb, at, size, step, object };
    [
        (
            3,
            BLUE,
            vec![
                shape(2, patch, (72.0, 8.0), (48, 40), (0.0, 0.0), false),
                shape(1, RED, (4.0, 52.0), (28, 28), (4.0, 0.0), true),
                shape(4, YELLOW, (80.0, 60.0), (24, 24), (-3.0, -2.0), true),
            ],
        ),
        (
            1,
            RED,
            vec![
                shape(2, patch, (8.0, 40.0), (44, 48), (0.0, 0.0), false),
                shape(3, BLUE, (64.0, 8.0), (28, 28), (0.0, 4.0), true),
                shape(4, YELLOW, (96.0, 56.0), (24, 24), (-4.0, 0.0), true),
            ],
        ),
    ]
}

/// A frame: its pixels (noise added), its ground truth (word numbers from 1), and each
/// followed shape's pixels as `(shape id, truth mask)`.
struct Frame {
    image: RgbImage,
    truth: Vec<u8>,
    shapes: Vec<(usize, Vec<bool>)>,
    /// The low-contrast patch's pixels.
    patch: Vec<bool>,
}

/// A small deterministic generator (xorshift64*), and Gaussian samples by Box–Muller.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn paint(patch: [f32; 3], t: usize, noise: &mut Noise) -> Frame {
    paint_with(patch, t, noise, NOISE)
}

/// [`paint`] with noise of standard deviation `sigma` levels.
fn paint_with(patch: [f32; 3], t: usize, noise: &mut Noise, sigma: f32) -> Frame {
    let shots = shots(patch);
    let (shot, k) = if t < CUT { (&shots[0], t) } else { (&shots[1], t - CUT) };
    let (background, colour, shapes) = shot;
    let mut rgb = vec![*colour; W * H];
    let mut truth = vec![*background as u8; W * H];
    let mut masks = Vec::new();
    let mut patch_mask = vec![false; W * H];
    for (n, s) in shapes.iter().enumerate() {
        let x0 = (s.at.0 + s.step.0 * k as f32).round() as isize;
        let y0 = (s.at.1 + s.step.1 * k as f32).round() as isize;
        let mut mask = vec![false; W * H];
        for y in y0.max(0)..(y0 + s.size.1 as isize).min(H as isize) {
            for x in x0.max(0)..(x0 + s.size.0 as isize).min(W as isize) {
                let i = y as usize * W + x as usize;
                rgb[i] = s.rgb;
                truth[i] = s.word as u8;
                mask[i] = true;
            }
        }
        if !s.object {
            patch_mask = mask.clone();
        }
        if s.object {
            // Shapes of the second shot are other objects than the first's.
            masks.push((n + if t < CUT { 0 } else { 100 }, mask));
        }
    }
    let data =
        rgb.iter().flat_map(|p| p.map(|c| (c + sigma * noise.gaussian()).round().clamp(0.0, 255.0) as u8)).collect();
    // A later shape painted over an earlier one hides it: each mask keeps what shows.
    let shown: Vec<(usize, Vec<bool>)> = masks
        .iter()
        .map(|(id, mask)| {
            let word = shapes[id % 100].word as u8;
            (*id, mask.iter().zip(&truth).map(|(&m, &w)| m && w == word).collect())
        })
        .collect();
    Frame { image: RgbImage::new(W, H, data).unwrap(), truth, shapes: shown, patch: patch_mask }
}

fn uniform(rgb: [f32; 3]) -> RgbImage {
    RgbImage::new(W, H, rgb.map(|c| c.round() as u8).repeat(W * H)).unwrap()
}

/// The red level at which the model's answer for a clean frame of `(r, 255, 0)` turns from
/// green (2) to yellow (4), by bisection.
fn green_yellow_boundary(model: &Model, words: &[Label], cache: &mut EmbeddingCache) -> f32 {
    let answer = |r: f32, cache: &mut EmbeddingCache| {
        let out = wordmask::block_on(segment(model, &uniform([r, 255.0, 0.0]), words, &Settings::default(), cache));
        out.unwrap().segmentation.label_map.get(W * H / 2 + W / 2)
    };
    let (mut green, mut yellow) = (0.0f32, 255.0f32);
    assert_eq!((answer(green, cache), answer(yellow, cache)), (2, 4), "pure green and yellow are named so");
    while yellow - green > 0.5 {
        let mid = (green + yellow) / 2.0;
        if answer(mid, cache) == 2 { green = mid } else { yellow = mid }
    }
    green
}

/// One run over the video: each frame's labels and objects' id map.
struct Run {
    labels: Vec<Vec<u8>>,
    ids: Vec<Vec<u16>>,
}

fn run(model: &Model, words: &[Label], frames: &[Frame], options: TemporalOptions) -> Run {
    let mut video = Video::new(options).unwrap();
    let mut cache = EmbeddingCache::default();
    let (mut labels, mut ids) = (Vec::new(), Vec::new());
    for frame in frames {
        let out =
            wordmask::block_on(segment_frame(model, &frame.image, words, &Settings::default(), &mut cache, &mut video))
                .unwrap();
        let seg = &out.segmented.segmentation;
        labels.push((0..W * H).map(|i| seg.label_map.get(i) as u8).collect());
        ids.push(instance_map(&out.report.objects, W, H));
    }
    Run { labels, ids }
}

/// Mean IoU over the words present in the truth or the labels of `frames`.
fn miou(truth: &[&[u8]], labels: &[&[u8]]) -> f64 {
    let mut ious = Vec::new();
    for word in 1..=4u8 {
        let (mut inter, mut union) = (0usize, 0usize);
        for (t, l) in truth.iter().zip(labels) {
            for (&a, &b) in t.iter().zip(l.iter()) {
                inter += usize::from(a == word && b == word);
                union += usize::from(a == word || b == word);
            }
        }
        if union > 0 {
            ious.push(inter as f64 / union as f64);
        }
    }
    ious.iter().sum::<f64>() / ious.len() as f64
}

struct Measured {
    flicker: f64,
    /// Flicker inside the low-contrast patch, and everywhere else.
    in_patch: f64,
    elsewhere: f64,
    miou: f64,
    per_frame: Vec<f64>,
    id_switches: usize,
}

fn measure(frames: &[Frame], run: &Run) -> Measured {
    // [changed, still] inside the patch and elsewhere.
    let mut counts = [[0usize; 2]; 2];
    for t in 1..frames.len() {
        for i in 0..W * H {
            if frames[t].truth[i] == frames[t - 1].truth[i] {
                let c = &mut counts[usize::from(!(frames[t].patch[i] && frames[t - 1].patch[i]))];
                c[1] += 1;
                c[0] += usize::from(run.labels[t][i] != run.labels[t - 1][i]);
            }
        }
    }
    let (changed, still) = (counts[0][0] + counts[1][0], counts[0][1] + counts[1][1]);
    let truth: Vec<&[u8]> = frames.iter().map(|f| f.truth.as_slice()).collect();
    let labels: Vec<&[u8]> = run.labels.iter().map(Vec::as_slice).collect();
    let per_frame = (0..frames.len()).map(|t| miou(&truth[t..t + 1], &labels[t..t + 1])).collect();
    // Each followed shape's id: the id covering most of its pixels, if over half of them.
    let mut last: std::collections::HashMap<usize, u16> = Default::default();
    let mut id_switches = 0;
    for (frame, ids) in frames.iter().zip(&run.ids) {
        for (shape, mask) in &frame.shapes {
            let mut votes: std::collections::HashMap<u16, usize> = Default::default();
            for (&m, &id) in mask.iter().zip(ids) {
                if m && id > 0 {
                    *votes.entry(id).or_default() += 1;
                }
            }
            let area = mask.iter().filter(|&&m| m).count();
            let Some((&id, &n)) = votes.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id))) else { continue };
            if 2 * n < area {
                continue;
            }
            if last.insert(*shape, id).is_some_and(|before| before != id) {
                id_switches += 1;
            }
        }
    }
    let share = |c: [usize; 2]| c[0] as f64 / c[1].max(1) as f64;
    Measured {
        flicker: changed as f64 / still as f64,
        in_patch: share(counts[0]),
        elsewhere: share(counts[1]),
        miou: miou(&truth, &labels),
        per_frame,
        id_switches,
    }
}

/// Frames after the cut (from 0, the cut's own) until a frame's mIoU is within [`RECOVERED`] of
/// that frame's without smoothing (`alone`); `FRAMES - CUT` if never.
fn recovery(m: &Measured, alone: &Measured) -> usize {
    (CUT..FRAMES).position(|t| m.per_frame[t] >= alone.per_frame[t] - RECOVERED).unwrap_or(FRAMES - CUT)
}

#[test]
fn smoothing_cuts_flicker_keeps_miou_and_recovers_from_a_cut() {
    let device = wordmask::device::open(Backend::Cpu).unwrap();
    let model = common::load_model("semantic-colours", &device);
    let words = labels::parse(WORDS).unwrap();
    let boundary = green_yellow_boundary(&model, &words, &mut EmbeddingCache::default());
    let patch = [boundary - MARGIN, 255.0, 0.0];
    let default = TemporalOptions::default();
    assert_eq!(default.strength, VIDEO_STRENGTH);
    let runs = [
        ("off (S = 0)", TemporalOptions { strength: 0.0, ..default.clone() }),
        ("on (S = default)", default.clone()),
        ("on, no hysteresis", TemporalOptions { hysteresis: 0.0, ..default.clone() }),
        ("on, no resets", TemporalOptions { motion_reset: false, cut_reset: false, ..default.clone() }),
        ("on, no motion reset", TemporalOptions { motion_reset: false, ..default.clone() }),
    ];
    println!(
        "synthetic video: {FRAMES} frames of {W}x{H}, noise σ {NOISE}, cut at frame {CUT}, patch red {:.1} (boundary {boundary:.1})",
        patch[0]
    );
    println!(
        "{:<6} {:<20} {:>8} {:>9} {:>9} {:>7} {:>9} {:>11}  mIoU per frame",
        "seed", "run", "flicker", "in patch", "elsewhere", "mIoU", "recovery", "id switches"
    );
    let (mut totals, mut failures) = ([[0f64; 3]; 5], Vec::new());
    for (n, seed) in SEEDS.into_iter().enumerate() {
        let mut noise = Noise(seed);
        let frames: Vec<Frame> = (0..FRAMES).map(|t| paint(patch, t, &mut noise)).collect();
        let measured: Vec<Measured> =
            runs.iter().map(|(_, options)| measure(&frames, &run(&model, &words, &frames, options.clone()))).collect();
        let alone = &measured[0];
        for ((name, _), m) in runs.iter().zip(&measured) {
            let after: Vec<String> = m.per_frame.iter().map(|v| format!("{:.3}", v)).collect();
            println!(
                "{n:<6} {name:<20} {:>7.4}% {:>8.3}% {:>8.3}% {:>7.4} {:>9} {:>11}  {}",
                100.0 * m.flicker,
                100.0 * m.in_patch,
                100.0 * m.elsewhere,
                m.miou,
                recovery(m, alone),
                m.id_switches,
                after.join(" ")
            );
        }
        let [off, on, _, no_resets, _] = &measured[..] else { unreachable!() };
        // Per seed: the cut is recovered from at once, and not without the resets.
        let (late, at_once) = (recovery(no_resets, off), recovery(on, off));
        if at_once >= RECOVERY_FRAMES || late < RECOVERY_FRAMES {
            failures.push(format!("seed {n}: recovered {at_once} frames after the cut, {late} without the resets"));
        }
        for (total, m) in totals.iter_mut().zip(&measured) {
            *total = [total[0] + m.flicker, total[1] + m.miou, total[2] + m.id_switches as f64];
        }
    }
    // Over the seeds: the label a pixel near the decision boundary takes is a coin toss from one
    // noise draw to the next, so the bounds hold for the means, each seed's row printed above.
    let seeds = SEEDS.len() as f64;
    let mean = |r: usize| totals[r].map(|t| t / seeds);
    let [off, on, no_hysteresis, _, no_motion] = [0, 1, 2, 3, 4].map(mean);
    println!(
        "means over {} seeds: flicker {:.4}% off, {:.4}% on ({:.2}x; {:.2}x without hysteresis), mIoU {:.4} off, {:.4} on, id switches {:.2} off, {:.2} on",
        SEEDS.len(),
        100.0 * off[0],
        100.0 * on[0],
        on[0] / off[0],
        no_hysteresis[0] / off[0],
        off[1],
        on[1],
        off[2],
        on[2]
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(off[0] > 0.0, "the noisy video does not flicker without smoothing: the test measures nothing");
    assert!(on[0] <= FLICKER_CUT * off[0], "flicker {:.4} on against {:.4} off", on[0], off[0]);
    assert!(on[1] >= off[1] - MIOU_LOSS, "mIoU {:.4} on against {:.4} off", on[1], off[1]);
    assert!(on[2] <= off[2], "id switches {:.2} on against {:.2} off", on[2], off[2]);
    // The negative controls: without the hysteresis flicker stays higher, and without the
    // motion reset the moving shapes' trails cost mIoU.
    assert!(
        no_hysteresis[0] > on[0],
        "the hysteresis holds no label: {:.4} without, {:.4} with",
        no_hysteresis[0],
        on[0]
    );
    assert!(
        no_motion[1] < on[1] - MIOU_LOSS,
        "without the motion reset mIoU holds ({:.4} against {:.4} with it)",
        no_motion[1],
        on[1]
    );
}

/// Objects keep their ids: a still frame repeated gives each region one id throughout, a speck
/// of one frame gets none, and other words start the ids afresh.
#[test]
fn objects_keep_their_ids_and_specks_get_none() {
    let device = wordmask::device::open(Backend::Cpu).unwrap();
    let model = common::load_model("semantic-colours", &device);
    let words = labels::parse(WORDS).unwrap();
    let mut noise = Noise(7);
    let still = paint([0.0, 255.0, 0.0], 0, &mut noise);
    let mut video = Video::new(TemporalOptions::default()).unwrap();
    let mut cache = EmbeddingCache::default();
    let mut seen = Vec::new();
    for t in 0..4 {
        let out = wordmask::block_on(segment_frame(
            &model,
            &still.image,
            &words,
            &Settings::default(),
            &mut cache,
            &mut video,
        ))
        .unwrap();
        let ids: Vec<(u32, Option<usize>)> = out.report.objects.iter().map(|o| (o.id, o.class)).collect();
        if t == 0 {
            assert!(ids.is_empty(), "an object needs two frames before it gets an id: {ids:?}");
        } else {
            seen.push(ids);
        }
    }
    assert!(!seen[0].is_empty());
    assert!(seen.iter().all(|ids| *ids == seen[0]), "ids changed on a still video: {seen:?}");
    let other = labels::parse("yellow, blue, red, green").unwrap();
    let out =
        wordmask::block_on(segment_frame(&model, &still.image, &other, &Settings::default(), &mut cache, &mut video))
            .unwrap();
    assert_eq!(out.report.reset, Some(wordmask::segment::temporal::Reset::Words));
    assert!(out.report.objects.is_empty(), "new words: objects are born again");
}

/// `segment --video` on a tiny Y4M: a label PNG per frame in order, the objects' id maps and
/// the summary; a folder of the same frames gives the same maps; an `.mp4` without ffmpeg says
/// so. (Bad streams are rows of docs/bad-input.md.)
#[test]
fn segment_video_writes_a_label_png_per_frame() {
    let dir = common::scratch("video-cli");
    let mut noise = Noise(11);
    let frames: Vec<RgbImage> = (0..4).map(|t| paint([0.0, 255.0, 0.0], t, &mut noise).image).collect();
    let input = dir.join("clip.y4m");
    std::fs::write(&input, wordmask::video::write_y4m444(&frames, 25)).unwrap();
    let out = dir.join("out");
    let summary = Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--video", &input)
        .labels(WORDS)
        .out(&out)
        .arg("--smooth", "0.5")
        .json();
    assert_eq!(summary["frames"], 4);
    assert_eq!(summary["smooth"], 0.5);
    for n in 1..=4 {
        let labels = image::open(out.join(format!("{n:06}.png"))).unwrap().to_luma8();
        assert_eq!((labels.width() as usize, labels.height() as usize), (W, H));
        // The red square's middle is red in every frame.
        let red_x = 4 + 4 * (n - 1) + 14;
        assert_eq!(labels.get_pixel(red_x as u32, 66)[0], 1, "frame {n}");
        let ids = image::open(out.join("objects").join(format!("{n:06}.png"))).unwrap();
        assert_eq!(ids.color(), image::ColorType::L16);
    }
    assert!(!out.join("000005.png").exists());
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("video.json")).unwrap()).unwrap();
    assert_eq!(written["per_frame"].as_array().unwrap().len(), 4);
    assert_eq!(written["per_frame"][0]["reset"], "first");

    // A folder of frames gives the same label maps as the stream of the same frames.
    let folder = dir.join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    let stream = std::fs::read(&input).unwrap();
    let read_back: Vec<RgbImage> = {
        let mut y4m = wordmask::video::Y4m::new(&stream[..], "clip").unwrap();
        std::iter::from_fn(|| y4m.next_frame().unwrap()).collect()
    };
    for (n, f) in read_back.iter().enumerate() {
        image::RgbImage::from_raw(W as u32, H as u32, f.data.clone())
            .unwrap()
            .save(folder.join(format!("f{n:03}.png")))
            .unwrap();
    }
    let from_folder = dir.join("out-folder");
    Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--video", &folder)
        .labels(WORDS)
        .out(&from_folder)
        .arg("--smooth", "0.5")
        .ok();
    for n in 1..=4 {
        let name = format!("{n:06}.png");
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), std::fs::read(from_folder.join(&name)).unwrap(), "{name}");
    }

    // Without ffmpeg on the PATH, an .mp4 says what it needs.
    let mp4 = dir.join("clip.mp4");
    std::fs::write(&mp4, b"not really").unwrap();
    let empty = dir.join("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let output = Cli::new("segment")
        .fixture("semantic-colours")
        .arg("--video", &mp4)
        .labels(WORDS)
        .out(dir.join("bad"))
        .command()
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("needs ffmpeg on the PATH"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `segment --video --sam`: sharp edges on every frame (the colour Segment Anything, which
/// outlines a clicked colour to the pixel), Segment Anything prompted by the previous frame's
/// objects. The label maps follow the painted shapes' edges where the words' map alone is as
/// coarse as its patches, and each moving shape keeps its object id.
#[test]
fn sharp_edges_on_a_video_follow_the_shapes_and_keep_their_ids() {
    let dir = common::scratch("video-sharp");
    let mut noise = Noise(3);
    let frames: Vec<Frame> = (0..5).map(|t| paint_with([0.0, 255.0, 0.0], t, &mut noise, 0.0)).collect();
    // At 448 x 336 (the colour Segment Anything draws one mask pixel per image pixel at 448
    // pixels), as a folder of PNG frames: it is exact for saturated colours, which a trip
    // through YUV would not keep.
    const BIG: (usize, usize) = (448, 336);
    let up = |values: &[u8], channels: usize| -> Vec<u8> {
        (0..BIG.1)
            .flat_map(|y| (0..BIG.0).map(move |x| (y * H / BIG.1) * W + x * W / BIG.0))
            .flat_map(|i| values[i * channels..(i + 1) * channels].to_vec())
            .collect()
    };
    let truths: Vec<Vec<u8>> = frames.iter().map(|f| up(&f.truth, 1)).collect();
    let input = dir.join("frames");
    std::fs::create_dir_all(&input).unwrap();
    for (n, f) in frames.iter().enumerate() {
        let png = image::RgbImage::from_raw(BIG.0 as u32, BIG.1 as u32, up(&f.image.data, 3)).unwrap();
        png.save(input.join(format!("f{n:03}.png"))).unwrap();
    }
    let sam = common::fixtures().join("sam-colours-fine");
    let run = |name: &str, sharp: bool| {
        let out = dir.join(name);
        let mut cli = Cli::new("segment").fixture("semantic-colours").arg("--video", &input).labels(WORDS).out(&out);
        if sharp {
            cli = cli.arg("--sam", &sam);
        }
        let summary = cli.json();
        assert_eq!(summary["sharp"], sharp);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("video.json")).unwrap()).unwrap();
        let labels: Vec<Vec<u8>> = (1..=frames.len())
            .map(|n| image::open(out.join(format!("{n:06}.png"))).unwrap().to_luma8().into_raw())
            .collect();
        (written, labels)
    };
    let (plain, coarse) = run("plain", false);
    let (sharp, fine) = run("sharp", true);
    println!("frame  mIoU words only  mIoU sharp");
    for (t, truth) in truths.iter().enumerate() {
        let truth = [truth.as_slice()];
        let (a, b) = (miou(&truth, &[coarse[t].as_slice()]), miou(&truth, &[fine[t].as_slice()]));
        println!("{:>5}  {a:>15.4}  {b:>10.4}", t + 1);
        assert!(b > a + 0.03, "frame {}: mIoU {b:.4} sharp against {a:.4} words only", t + 1);
    }
    assert!(plain["per_frame"][0]["sharp_ms"].is_null());
    assert!(sharp["per_frame"][1]["sharp_ms"]["encode"].as_f64().unwrap() > 0.0);
    // Each moving shape's object id, from its second frame on, is one id throughout.
    let per_frame = sharp["per_frame"].as_array().unwrap();
    for word in ["red", "yellow"] {
        let ids: Vec<u64> = per_frame[1..]
            .iter()
            .map(|f| {
                let of_word: Vec<u64> = f["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|o| o["label"] == word)
                    .map(|o| o["id"].as_u64().unwrap())
                    .collect();
                assert_eq!(of_word.len(), 1, "{word}: {of_word:?}");
                of_word[0]
            })
            .collect();
        assert!(ids.iter().all(|&id| id == ids[0]), "{word}'s id changed: {ids:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `segment --video` on an `.mp4` and a `.webm`, decoded by ffmpeg: the same frames in the same
/// order as the `.y4m` they were encoded from, each label map within a few pixels of the
/// stream's (the codecs are lossy). Runs where ffmpeg is on the PATH (`.ci/run` does not install
/// it: the reader it feeds is the Y4M reader the other tests cover); elsewhere it says so.
#[test]
fn segment_video_reads_mp4_and_webm_through_ffmpeg() {
    if std::process::Command::new("ffmpeg").arg("-version").output().is_err() {
        println!("skipped: no ffmpeg on the PATH");
        return;
    }
    let dir = common::scratch("video-ffmpeg");
    let mut noise = Noise(5);
    let frames: Vec<RgbImage> = (0..4).map(|t| paint_with([0.0, 255.0, 0.0], t, &mut noise, 0.0).image).collect();
    let input = dir.join("clip.y4m");
    std::fs::write(&input, wordmask::video::write_y4m444(&frames, 25)).unwrap();
    let segment = |video: &std::path::Path, name: &str| {
        let out = dir.join(format!("out-{name}"));
        let summary =
            Cli::new("segment").fixture("semantic-colours").arg("--video", video).labels(WORDS).out(&out).json();
        assert_eq!(summary["frames"], frames.len(), "{name}");
        (1..=frames.len())
            .map(|n| image::open(out.join(format!("{n:06}.png"))).unwrap().to_luma8().into_raw())
            .collect::<Vec<_>>()
    };
    let reference = segment(&input, "y4m");
    for (file, codec) in
        [("clip.mp4", ["-c:v", "libx264", "-crf", "12"]), ("clip.webm", ["-c:v", "libvpx-vp9", "-crf", "12"])]
    {
        let encoded = dir.join(file);
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(&input)
            .args(codec)
            .args(["-pix_fmt", "yuv444p"])
            .arg(&encoded)
            .status()
            .unwrap();
        if !status.success() {
            println!("skipped {file}: this ffmpeg cannot encode it");
            continue;
        }
        for (n, (ours, theirs)) in segment(&encoded, file).iter().zip(&reference).enumerate() {
            let differ = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
            println!("{file} frame {}: {differ} of {} pixels differ from the .y4m's", n + 1, ours.len());
            assert!(differ * 100 <= ours.len(), "{file} frame {}: {differ} pixels differ", n + 1);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
