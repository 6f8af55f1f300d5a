//! SegCLIP parity with the SegCLIP repository's own model code (tools/segclip_reference.py):
//! the release-layout pickle is converted by the same converter users run, loaded by the same
//! loader, and every stage compared on every backend: text embeddings, the preprocessed
//! pixels, and per window the patch tokens after the first stage, the centre assignments, the
//! image and group embeddings and the window's scores; then the final label map.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::{EMBED_TOL, Reference, all_close, backends, fixtures, read, to_vec};
use wordmask::labels;
use wordmask::network::Network;
use wordmask::preprocess::{Preprocessor, RgbImage};
use wordmask::segclip::SegClipModel;
use wordmask::segclip::convert::convert;
use wordmask::segment::segclip::window_scores;
use wordmask::segment::{EmbeddingCache, Model, Settings, Templates, segment};

const TOL: f32 = 1e-4;
/// Pixels whose two best groups are this close in the upsampled soft assignment are ties:
/// float rounding may pick either, on either side.
const TIE: f32 = 1e-5;

/// The reference's pixels (window coordinates) where the two best groups of the bilinearly
/// upsampled soft assignment `[G, gh*gw]` are within [`TIE`].
fn ties(soft: &[f32], groups: usize, grid: usize, size: usize) -> Vec<usize> {
    let mut planes = vec![vec![0f32; size * size]; groups];
    for (g, plane) in planes.iter_mut().enumerate() {
        wordmask::nn::bilinear_rows(
            &soft[g * grid * grid..(g + 1) * grid * grid],
            (grid, grid),
            (size, size),
            |y, row| plane[y * size..(y + 1) * size].copy_from_slice(row),
        );
    }
    (0..size * size)
        .filter(|&p| {
            let mut v: Vec<f32> = planes.iter().map(|plane| plane[p]).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            v[0] - v[1] < TIE
        })
        .collect()
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("segclip/reference.json")).unwrap()).unwrap()
}

fn converted() -> wordmask::segclip::convert::Converted {
    let bytes = read(&fixtures().join("segclip/segclip-release.bin"));
    convert(&bytes, "segclip-release.bin", None, Some(meta()["text_heads"].as_u64().unwrap() as usize)).unwrap()
}

fn photo() -> RgbImage {
    let img = image::open(fixtures().join("segclip/photo.png")).unwrap().to_rgb8();
    RgbImage::new(img.width() as usize, img.height() as usize, img.into_raw()).unwrap()
}

fn normalized(v: &[f32], dim: usize) -> Vec<f32> {
    v.chunks(dim)
        .flat_map(|row| {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter().map(move |x| x / n)
        })
        .collect()
}

#[test]
fn the_converter_names_what_it_leaves_out() {
    let c = converted();
    let dropped: Vec<&str> = c.dropped.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        dropped.iter().any(|p| p.ends_with("layers_mae2")) && dropped.iter().any(|p| p.starts_with("vis_mae_decoder")),
        "{dropped:?}"
    );
    assert!(
        !dropped.iter().any(|p| p.contains("semantic_layer2") || p.contains("layers0")),
        "used tensors left out: {dropped:?}"
    );
    let v = &c.config.clip.vision_config;
    assert_eq!((v.hidden_size, v.num_attention_heads, c.config.first_stage_layers, v.num_hidden_layers), (64, 2, 2, 3));
    assert_eq!((c.config.num_group_tokens, c.config.num_cross_layers), (8, 2));
    // A CLIP checkpoint is not a SegCLIP one.
    let clip = read(&fixtures().join("clip-p16-quickgelu/model.safetensors"));
    let err = convert(&clip, "model.safetensors", None, None).err().unwrap().to_string();
    assert!(err.contains("not a SegCLIP checkpoint"), "{err}");
}

#[test]
fn segclip_matches_the_repository_on_every_backend() {
    let meta = meta();
    let reference = Reference::load("segclip");
    let c = converted();
    let prompts: Vec<String> =
        meta["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let template = meta["template"].as_str().unwrap();
    let threshold = meta["threshold"].as_f64().unwrap() as f32;
    let mut failures = Vec::new();
    for (backend, device) in backends() {
        let mut check = |what: String, ours: Vec<f32>, theirs: &[f32], tol: f32| {
            if let Err(e) = all_close(&format!("[{backend:?}] {what}"), &ours, theirs, tol, true) {
                failures.push(e);
            }
        };
        // Resized-image pixels at a group tie, where either answer is right.
        let mut tied = Vec::new();
        let model = Model::from_bytes(&c.config_json, &c.safetensors, "model.safetensors", None, &device).unwrap();
        assert_eq!(model.engine(), "segclip");
        let net = model.network().downcast::<SegClipModel>().expect("a SegCLIP network");

        // Text.
        let texts: Vec<String> = prompts.iter().map(|p| template.replace("{}", p)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids = model.tokenizer.encode_batch(&refs, net.text_context());
        let text = to_vec(net.text_features(&ids).unwrap()).unwrap();
        check("text embeddings".into(), text, &reference.get("text_embeds").0, EMBED_TOL);

        // Pixels: the short side to 224 with Pillow's bicubic, CLIP's normalisation.
        let (pixels, shape) = reference.get("pixels");
        let pre = Preprocessor { short_side: 224, crop: None, ..Preprocessor::clip(224) };
        let (ours, (w, h)) = pre.apply(&photo()).unwrap();
        assert_eq!([3, h, w], shape[..], "resized size");
        check("pixels".into(), ours, &pixels, 1e-5);

        // Each window.
        let names = wordmask::nn::l2_normalize(net.text_features(&ids).unwrap());
        let all = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, h, w]), &device);
        for (k, window) in meta["windows"].as_array().unwrap().iter().enumerate() {
            let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|i| window[i].as_u64().unwrap() as usize);
            let crop = all.clone().slice([0..1, 0..3, y1..y2, x1..x2]);
            let f = net.image_features(crop.clone()).unwrap();
            check(
                format!("window {k} patches"),
                to_vec(f.patches).unwrap(),
                &reference.get(&format!("window{k}.patches")).0,
                TOL,
            );
            check(
                format!("window {k} soft assignment"),
                to_vec(f.grouping.soft).unwrap(),
                &reference.get(&format!("window{k}.soft")).0,
                TOL,
            );
            check(
                format!("window {k} hard assignment"),
                to_vec(f.grouping.hard).unwrap(),
                &reference.get(&format!("window{k}.hard")).0,
                1e-6,
            );
            let dim = f.embeds.dims()[1];
            let (image, _) = reference.get(&format!("window{k}.image_embeds"));
            check(format!("window {k} image embedding"), to_vec(f.embeds).unwrap(), &normalized(&image, dim), TOL);
            let (groups, _) = reference.get(&format!("window{k}.group_embeds"));
            check(
                format!("window {k} group embeddings"),
                to_vec(f.group_embeds).unwrap(),
                &normalized(&groups, dim),
                TOL,
            );

            // Scores: each pixel's group's class scores, and the background row.
            let mut scores = to_vec(window_scores(net, crop, &names, Some(threshold), 5).unwrap()).unwrap();
            let (group, _) = reference.get(&format!("window{k}.group"));
            let (affinity, _) = reference.get(&format!("window{k}.affinity"));
            let limit = reference.get(&format!("window{k}.background_limit")).0[0];
            let (n, pixels) = (prompts.len(), (y2 - y1) * (x2 - x1));
            let mut theirs = vec![0f32; (n + 1) * pixels];
            for (p, &g) in group.iter().enumerate() {
                let row = &affinity[g as usize * n..(g as usize + 1) * n];
                for c in 0..n {
                    theirs[c * pixels + p] = row[c];
                }
                theirs[n * pixels + p] = if row.iter().cloned().fold(f32::MIN, f32::max) < limit { 1.0 } else { 0.0 };
            }
            let size = y2 - y1;
            let at_tie = ties(&reference.get(&format!("window{k}.soft")).0, 8, size / 16, size);
            assert!(at_tie.len() <= 3, "{} tied pixels: the fixture should have almost none", at_tie.len());
            for &p in &at_tie {
                for c in 0..=n {
                    scores[c * pixels + p] = theirs[c * pixels + p];
                }
                tied.push((y1 + p / size, x1 + p % size));
            }
            check(format!("window {k} scores"), scores, &theirs, TOL);
        }

        // The whole pipeline: the label map, pixel for pixel.
        let labels = labels::parse(&prompts.join(", ")).unwrap();
        let settings =
            Settings { templates: Some(Templates::Single), threshold: Some(threshold), ..Settings::default() };
        let seg = wordmask::block_on(segment(&model, &photo(), &labels, &settings, &mut EmbeddingCache::default()))
            .unwrap()
            .segmentation;
        let (want, _) = reference.get("label_map");
        // Pixels of the photo near a tie (its resized position within 2 pixels) may differ.
        let (width, height) = (seg.width, seg.height);
        let near_tie = |i: usize| {
            let (x, y) = ((i % width) as f32 * w as f32 / width as f32, (i / width) as f32 * h as f32 / height as f32);
            tied.iter().any(|&(ty, tx)| (tx as f32 - x).abs() <= 2.0 && (ty as f32 - y).abs() <= 2.0)
        };
        let wrong: Vec<usize> =
            (0..want.len()).filter(|&i| seg.label_map.get(i) != want[i] as usize && !near_tie(i)).collect();
        if !wrong.is_empty() {
            failures.push(format!(
                "[{backend:?}] label map: {} of {} pixels differ, first at {:?}",
                wrong.len(),
                want.len(),
                &wrong[..wrong.len().min(5)]
            ));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
