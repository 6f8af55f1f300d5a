//! The README's "When the input is wrong" table, row by row: each row's input is made here, the
//! command run, and every quoted piece of the row's second cell (split at "...") must be on
//! stderr, with a non-zero exit. A row without a case here, or a case without a row, fails.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use crate::images::{GREY, RGB, black_png, jpeg_claiming};
use common::{Cli, fixtures, scratch};

/// The table's rows: first cell -> the quoted pieces of the second.
fn table() -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-input.md")).unwrap();
    let block = readme.split("<!-- bad-input -->").nth(1).expect("the bad-input table of docs/bad-input.md");
    let mut rows = BTreeMap::new();
    for line in block.lines().skip_while(|l| l.trim().is_empty()).take_while(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 2, "two cells: {line}");
        let quoted: Vec<String> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .flat_map(|q| q.split("...").map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect::<Vec<_>>())
            .collect();
        assert!(!quoted.is_empty(), "row without quoted words: {line}");
        rows.insert(cells[0].to_string(), quoted);
    }
    rows
}

fn png(path: &Path, w: u32, h: u32) -> String {
    image::RgbImage::from_pixel(w, h, image::Rgb([200, 40, 40])).save(path).unwrap();
    path.to_str().unwrap().to_string()
}

/// A copy of a fixture folder with `edit` applied, for broken checkpoints.
fn model_copy(dir: &Path, name: &str, from: &str, edit: impl FnOnce(&Path)) -> String {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(from).join(file), to.join(file)).unwrap();
    }
    edit(&to);
    to.to_str().unwrap().to_string()
}

/// Each row's command line (`--backend cpu` is added to the commands that run a model).
fn cases(dir: &Path) -> BTreeMap<&'static str, Cli> {
    let colours = fixtures().join("semantic-colours").to_str().unwrap().to_string();
    let photo = png(&dir.join("photo.png"), 64, 48);
    let out = dir.join("labels.png").to_str().unwrap().to_string();
    let segment = |model: &str, image: &str, labels: &str, extra: &[&str]| {
        Cli::new("segment").model(model).image(image).labels(labels).out(&out).args(extra)
    };
    let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(",");

    let truncated = model_copy(dir, "truncated", "semantic-colours", |m| {
        let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
        std::fs::write(m.join("model.safetensors"), &bytes[..5000]).unwrap();
    });
    let truncated_bin = model_copy(dir, "truncated-bin", "semantic-colours", |m| {
        std::fs::remove_file(m.join("model.safetensors")).unwrap();
        let bytes = std::fs::read(fixtures().join("semantic-colours/pytorch_model.bin")).unwrap();
        std::fs::write(m.join("pytorch_model.bin"), &bytes[..bytes.len() / 2]).unwrap();
    });
    let text_weights = model_copy(dir, "text-weights", "semantic-colours", |m| {
        std::fs::write(m.join("model.safetensors"), "hello\n").unwrap();
    });
    let bert = model_copy(dir, "bert", "semantic-colours", |m| {
        std::fs::write(m.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    });
    let wider = model_copy(dir, "wider", "semantic-colours", |m| {
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
        let vision = &mut config["vision_config"];
        vision["hidden_size"] = (vision["hidden_size"].as_u64().unwrap() * 2).into();
        vision["num_hidden_layers"] = (vision["num_hidden_layers"].as_u64().unwrap_or(1) + 1).into();
        std::fs::write(m.join("config.json"), config.to_string()).unwrap();
    });
    let sam = fixtures().join("sam-tiny").to_str().unwrap().to_string();
    let text_image = dir.join("text.png");
    std::fs::write(&text_image, "not a picture\n").unwrap();
    let truncated_png = dir.join("truncated.png");
    let noisy =
        image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, (x ^ y) as u8]));
    noisy.save(&truncated_png).unwrap();
    let bytes = std::fs::read(&truncated_png).unwrap();
    std::fs::write(&truncated_png, &bytes[..bytes.len() / 2]).unwrap();
    let (text_image, truncated_png) = (text_image.to_str().unwrap(), truncated_png.to_str().unwrap());
    let wide = png(&dir.join("wide.png"), 16_385, 2);
    let strip = png(&dir.join("strip.png"), 16_384, 1);
    let thin = png(&dir.join("thin.png"), 4000, 4);
    let shapes = fixtures().join("images/shapes_50x90.png").to_str().unwrap().to_string();

    let mut cases = BTreeMap::new();
    cases.insert("A model folder that does not exist", segment("/no/such/model", &photo, "red", &[]));
    cases.insert("A truncated `model.safetensors`", segment(&truncated, &photo, "red", &[]));
    cases.insert("A truncated `pytorch_model.bin`", segment(&truncated_bin, &photo, "red", &[]));
    cases.insert("A text file named `model.safetensors`", segment(&text_weights, &photo, "red", &[]));
    cases.insert("A `config.json` of another architecture (`bert`)", segment(&bert, &photo, "red", &[]));
    cases.insert(
        "A config wider than its weights (a ViT-L config over ViT-B weights)",
        segment(&wider, &photo, "red", &[]),
    );
    cases.insert("A Segment Anything checkpoint given to `segment`", segment(&sam, &photo, "red", &[]));
    cases.insert("No labels (`--labels \" , \"`)", segment(&colours, &photo, " , ", &[]));
    cases.insert("2,049 labels", segment(&colours, &photo, &words(2049), &[]));
    cases.insert("A label of 1,000 characters", segment(&colours, &photo, &"a".repeat(1000), &[]));
    cases.insert(
        "1,000 labels at `--short-side 2048`",
        segment(&colours, &photo, &words(1000), &["--short-side", "2048"]),
    );
    cases.insert("A text file as the image", segment(&colours, text_image, "red", &[]));
    cases.insert("`--precision f16` on the CPU backend", segment(&colours, &photo, "red", &["--precision", "f16"]));
    cases.insert("A truncated PNG", segment(&colours, truncated_png, "red", &[]));
    cases.insert("An image of 16,385 pixels a side (refused from its header)", segment(&colours, &wide, "red", &[]));
    let claims = dir.join("claims.jpg");
    std::fs::write(&claims, jpeg_claiming(16384, 16384)).unwrap();
    cases.insert(
        "A JPEG of a few hundred bytes whose header claims 16384x16384 pixels",
        segment(&colours, claims.to_str().unwrap(), "red", &[]),
    );
    let huge_label = dir.join("huge-label");
    for (sub, bytes) in [("images", black_png(64, 48, RGB, 8, &[])), ("labels", black_png(16384, 16384, GREY, 8, &[]))]
    {
        std::fs::create_dir_all(huge_label.join(sub)).unwrap();
        std::fs::write(huge_label.join(sub).join("a.png"), bytes).unwrap();
    }
    std::fs::write(huge_label.join("classes.txt"), "red\n").unwrap();
    cases.insert(
        "A label map of 16384x16384 pixels to `eval` (refused from its header)",
        Cli::new("eval")
            .model(&colours)
            .arg("--dataset", &huge_label)
            .arg("--format", "folder")
            .arg("--classes", huge_label.join("classes.txt")),
    );
    cases.insert("A 16384x1 strip to `classify`", Cli::new("classify").model(&colours).image(&strip).labels("red"));
    cases.insert("A 4000x4 strip to `segment`", segment(&colours, &thin, "red", &[]));
    cases.insert("`--threshold 2`", segment(&colours, &photo, "red", &["--threshold", "2"]));
    cases.insert("`--window 3`", segment(&colours, &photo, "red", &["--window", "3"]));
    cases.insert(
        "`--short-side 4096 --window 16 --stride 1`",
        segment(&colours, &photo, "red", &["--short-side", "4096", "--window", "16", "--stride", "1"]),
    );
    let segclip = fixtures().join("semantic-colours-segclip").to_str().unwrap().to_string();
    cases.insert("`--window 448` with a SegCLIP checkpoint", segment(&segclip, &photo, "red", &["--window", "448"]));
    let clip_weights = fixtures().join("clip-p16-quickgelu/model.safetensors").to_str().unwrap().to_string();
    let converted = dir.join("converted").to_str().unwrap().to_string();
    cases.insert(
        "A CLIP checkpoint given to `convert-segclip`",
        Cli::new("convert-segclip").arg("--checkpoint", &clip_weights).out(&converted),
    );
    let click = |model: &str| Cli::new("sam").model(model).image(&shapes).arg("--point", "10,10").out(&out);
    cases.insert(
        "A click outside the image (`sam --point 60,10` on 50x90)",
        Cli::new("sam").model(&sam).image(&shapes).arg("--point", "60,10").out(&out),
    );
    let ovsam = fixtures().join("ovsam-tiny").to_str().unwrap().to_string();
    cases
        .insert("`--clip` with an Open-Vocabulary SAM checkpoint", click(&ovsam).labels("red").arg("--clip", &colours));
    let ovsam_as_sam = model_copy(dir, "ovsam-as-sam", "ovsam-tiny", |m| {
        std::fs::copy(fixtures().join("sam-tiny/config.json"), m.join("config.json")).unwrap();
    });
    cases.insert("A Segment Anything `config.json` over Open-Vocabulary SAM weights", click(&ovsam_as_sam));
    let fusioner = fixtures().join("fusioner-tiny").to_str().unwrap().to_string();
    cases.insert("`--window 224` with a Fusioner checkpoint", segment(&fusioner, &photo, "red", &["--window", "224"]));
    let no_clip = model_copy(dir, "fusioner-no-clip", "fusioner-tiny", |m| {
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("clip");
        std::fs::write(m.join("config.json"), config.to_string()).unwrap();
    });
    cases.insert("A Fusioner `config.json` without its CLIP's config", segment(&no_clip, &photo, "red", &[]));
    let vit = fixtures().join("fusioner-dino-tiny/vit").to_str().unwrap().to_string();
    let data = fixtures().join("colour-segmentation");
    cases.insert(
        "`train fusioner` with a ViT backbone and no `--text`",
        Cli::new("train fusioner")
            .arg("--backbone", &vit)
            .arg("--dataset", &data)
            .arg("--format", "folder")
            .arg("--classes", data.join("classes.txt"))
            .out(dir.join("trained")),
    );
    let train_with_text = |text: &str, out: &str| {
        Cli::new("train fusioner")
            .arg("--backbone", &vit)
            .arg("--text", text)
            .arg("--dataset", &data)
            .arg("--format", "folder")
            .arg("--classes", data.join("classes.txt"))
            .out(dir.join(out))
    };
    let sam = fixtures().join("sam-tiny").to_str().unwrap().to_string();
    cases.insert(
        "`train fusioner --text` naming a checkpoint that is neither CLIP nor BERT (`sam`)",
        train_with_text(&sam, "t-sam"),
    );
    // A BERT folder with its config and weights only.
    let no_vocab = model_copy(dir, "bert-no-vocab", "bert-colours", |_| {});
    cases.insert(
        "`train fusioner --text` naming a BERT folder without `vocab.txt` or `tokenizer.json`",
        train_with_text(&no_vocab, "t-bert"),
    );
    box_files(dir, &mut cases, &photo);
    user_mistakes(dir, &mut cases, &photo, &colours);
    hostile_cases(dir, &photo, &out, &mut cases);
    video_cases(dir, &mut cases, &colours);
    cases
}

/// `segment --video` with streams that are wrong.
fn video_cases(dir: &Path, cases: &mut BTreeMap<&'static str, Cli>, colours: &str) {
    let video = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Cli::new("segment").model(colours).arg("--video", path).labels("red").out(dir.join("frames"))
    };
    // 4x2 in 4:2:0: 8 luma bytes and two chroma planes of 2x1, 12 bytes a frame.
    let frame = [b"FRAME\n".as_slice(), &[128; 12]].concat();
    let truncated = [b"YUV4MPEG2 W4 H2 C420jpeg\n".as_slice(), &frame, b"FRAME\n", &[128; 5]].concat();
    cases.insert("A truncated `.y4m` to `segment --video`", video("truncated.y4m", &truncated));
    cases.insert("A `.y4m` of no frames", video("empty.y4m", b"YUV4MPEG2 W4 H2 C420jpeg\n"));
    cases.insert("A `.y4m` whose frames claim 16385x16 pixels", video("huge.y4m", b"YUV4MPEG2 W16385 H16\nFRAME\n"));
    cases.insert("A 4:2:2 `.y4m`", video("c422.y4m", &[b"YUV4MPEG2 W4 H2 C422\n".as_slice(), &frame].concat()));
    cases.insert(
        "`segment --video --smooth 1.5`",
        video("one.y4m", &[b"YUV4MPEG2 W4 H2\n".as_slice(), &frame].concat()).arg("--smooth", "1.5"),
    );
}

/// Files of boxes `sam --boxes` refuses before it loads a model, each a small instances file on
/// the 64x48 photo unless the row says otherwise.
fn box_files(dir: &Path, cases: &mut BTreeMap<&'static str, Cli>, photo: &str) {
    let photos = Path::new(photo).parent().unwrap().to_path_buf();
    let file_name = Path::new(photo).file_name().unwrap().to_str().unwrap().to_string();
    let image = serde_json::json!({"id": 1, "file_name": file_name, "width": 64, "height": 48});
    let truth = |annotations: serde_json::Value, categories: serde_json::Value| serde_json::json!({"images": [image.clone()], "annotations": annotations, "categories": categories});
    let red = serde_json::json!([{"id": 1, "name": "red"}]);
    let sam = |name: &str, text: String| {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        Cli::new("sam")
            .fixture("ovsam-tiny")
            .arg("--boxes", &path)
            .arg("--images", &photos)
            .out(dir.join(format!("{name}-results.json")))
    };
    let boxed = |id: u64, image_id: u64, bbox: serde_json::Value| serde_json::json!({"id": id, "image_id": image_id, "category_id": 1, "bbox": bbox, "iscrowd": 0});
    let elsewhere = truth(
        serde_json::json!([
            boxed(10, 1, serde_json::json!([1, 1, 5, 5])),
            boxed(11, 99, serde_json::json!([1, 1, 5, 5]))
        ]),
        red.clone(),
    );
    cases
        .insert("`sam --boxes` with a box on an image the file does not list", sam("elsewhere", elsewhere.to_string()));
    let outside = truth(serde_json::json!([boxed(10, 1, serde_json::json!([40, 30, 30, 10]))]), red.clone());
    cases.insert("`sam --boxes` with a box reaching outside its image", sam("outside", outside.to_string()));
    let flat = truth(serde_json::json!([boxed(10, 1, serde_json::json!([4, 4, 0, 10]))]), red.clone());
    cases.insert("`sam --boxes` with a box of no width", sam("flat", flat.to_string()));
    cases.insert(
        "`sam --boxes` with no annotations",
        sam("empty", truth(serde_json::json!([]), red.clone()).to_string()),
    );
    let nan = r#"{"images": [IMAGE], "categories": [{"id": 1, "name": "red"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 2, 5, 5]}]}"#
        .replace("IMAGE", &image.to_string());
    cases.insert("`sam --boxes` with NaN in a box (as Python's `json` writes it)", sam("nan", nan));
    let detections = serde_json::json!([{"image_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9, "category_id": 1}]);
    cases.insert(
        "`sam --boxes` with a detector's results and no `--annotations`",
        sam("detections", detections.to_string()),
    );
    let many: Vec<serde_json::Value> =
        (1..=65_536).map(|i| serde_json::json!({"id": i, "name": format!("c{i}")})).collect();
    let vast =
        truth(serde_json::json!([boxed(10, 1, serde_json::json!([1, 1, 5, 5]))]), serde_json::Value::Array(many));
    cases.insert("`sam --boxes` with 65,536 categories", sam("vast", vast.to_string()));
}

/// What a user typing commands gets wrong: an output that is an input, a lossy label map, a
/// folder that holds another model, a word typed twice, numbers that cannot be right.
fn user_mistakes(dir: &Path, cases: &mut BTreeMap<&'static str, Cli>, photo: &str, colours: &str) {
    let segment = |labels: &str| Cli::new("segment").model(colours).image(photo).labels(labels);
    cases.insert("`segment --out` naming the photo itself", segment("red").out(photo));
    cases.insert("`segment --out labels.jpg`", segment("red").out(dir.join("labels.jpg")));
    cases.insert("A word typed twice (`cat, dog, cat`)", segment("cat, dog, cat").out(dir.join("l.png")));
    cases.insert(
        "A typed word that is also a background word (`background, cat`)",
        segment("background, cat").out(dir.join("l.png")),
    );
    let other = model_copy(dir, "another-model", "clip-p16-quickgelu", |_| {});
    cases.insert("`convert --out` into another model's folder", Cli::new("convert").model(colours).out(&other));
    let data = fixtures().join("colour-segmentation");
    let train = || {
        Cli::new("train fusioner")
            .arg("--dataset", &data)
            .arg("--format", "folder")
            .arg("--classes", data.join("classes.txt"))
            .arg("--backbone", colours)
    };
    cases.insert("`train fusioner --out` naming the backbone's folder", train().out(colours));
    cases.insert("`train fusioner --fusion-lr -1`", train().args(["--fusion-lr=-1"]).out(dir.join("t1")));
    cases.insert("`train fusioner --crop 4096`", train().arg("--crop", "4096").out(dir.join("t2")));
    let eval = Cli::new("eval").model(colours).arg("--dataset", &data).args(["--format", "folder", "--limit", "0"]);
    cases.insert("`eval --limit 0`", eval.arg("--classes", data.join("classes.txt")));
    let fss = fixtures().join("fss");
    let episodes = |format: &str, fold: &str, root: &Path| {
        Cli::new("eval")
            .fixture("semantic-colours-fusioner")
            .args(["--protocol", "fss", "--format", format, "--fold", fold])
            .arg("--dataset", root)
            .arg("--splits", fss.join("splits"))
    };
    cases.insert("`eval --protocol fss --fold 4`", episodes("pascal5i", "4", &fss.join("pascal")));
    cases.insert(
        "`eval --protocol fss` with a `--splits` folder missing the fold's list",
        episodes("coco20i", "1", &fss.join("pascal")),
    );
    // A PASCAL folder whose images are all gone.
    let bare = dir.join("fss-bare");
    std::fs::create_dir_all(bare.join("VOCdevkit/VOC2012/JPEGImages")).unwrap();
    std::fs::create_dir_all(bare.join("SegmentationClassAug")).unwrap();
    cases.insert("`eval --protocol fss` with an image the split list names absent", episodes("pascal5i", "0", &bare));
}

/// The rows of files made to hurt (their makers are `hostile_files.rs`'s).
fn hostile_cases(dir: &Path, photo: &str, out: &str, cases: &mut BTreeMap<&'static str, Cli>) {
    use crate::hostile_files as hostile;
    let segment = |model: &Path| Cli::new("segment").model(model).image(photo).labels("red").out(out);
    let bin = |name: &str, bytes: Vec<u8>| hostile::bin_model(dir, name, &bytes);
    cases.insert(
        "A `pytorch_model.bin` whose pickle calls `os.system`",
        segment(&bin("os-system", hostile::calls_os_system())),
    );
    cases.insert(
        "A 1.2 KB pickle that copies a memoised list 64 times a round",
        segment(&bin("memo-bomb", hostile::memo_bomb())),
    );
    cases.insert("A pickle of a megabyte of nested tuples", segment(&bin("nested", hostile::deep_tuples())));
    let overlap = hostile::model_copy(dir, "overlap", "semantic-colours", |m| {
        let bytes = hostile::overlapping_safetensors(
            "text_model.encoder.layers.0.layer_norm2.bias",
            "text_model.encoder.layers.0.layer_norm1.bias",
        );
        std::fs::write(m.join("model.safetensors"), bytes).unwrap();
    });
    cases.insert("Two tensors of a `model.safetensors` over the same bytes", segment(&overlap));
    let flat_conv = dir.join("flat-conv.bin");
    std::fs::write(&flat_conv, hostile::segclip_reshaped("clip.visual.conv1.weight", vec![64, 768])).unwrap();
    cases.insert(
        "A SegCLIP `.bin` whose patch embedding has 2 axes, to `convert-segclip`",
        Cli::new("convert-segclip").arg("--checkpoint", &flat_conv).out(dir.join("flat-conv")),
    );
    cases.insert(
        "`convert-segclip --vision-heads 0`",
        Cli::new("convert-segclip")
            .arg("--checkpoint", fixtures().join("segclip/segclip-release.bin"))
            .out(dir.join("no-heads"))
            .arg("--vision-heads", "0"),
    );
    let config = |name: &str, file: &str, pointer: &str, value: serde_json::Value| {
        hostile::model_copy(dir, name, "semantic-colours", |m| hostile::set_json(m, file, pointer, value))
    };
    cases.insert(
        "`image_size: 1000000000` in `config.json`",
        segment(&config("huge", "config.json", "/vision_config/image_size", 1_000_000_000u64.into())),
    );
    cases.insert(
        "A negative `layer_norm_eps` in `config.json`",
        segment(&config("eps", "config.json", "/vision_config/layer_norm_eps", serde_json::json!(-1e-5))),
    );
    cases.insert(
        "`image_std` 0 in `preprocessor_config.json`",
        segment(&config("std", "preprocessor_config.json", "/image_std", serde_json::json!([0.0, 0.26, 0.27]))),
    );
    let nan = hostile::model_copy(dir, "nan", "semantic-colours", |m| {
        let bytes = hostile::poisoned_safetensors("text_model.final_layer_norm.weight", f32::NAN);
        std::fs::write(m.join("model.safetensors"), bytes).unwrap();
    });
    cases.insert("A NaN weight in `model.safetensors`", segment(&nan));
}

#[test]
fn every_row_of_the_readme_table_is_what_the_user_sees() {
    let dir = scratch("bad-input");
    let rows = table();
    let cases = cases(&dir);
    let documented: Vec<&String> = rows.keys().collect();
    let tested: Vec<&&str> = cases.keys().collect();
    assert!(
        rows.keys().map(String::as_str).eq(cases.keys().copied()),
        "README rows and test cases differ:\nREADME: {documented:#?}\ntests: {tested:#?}"
    );
    let mut failures = Vec::new();
    for (row, cli) in cases {
        let out = cli.run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing: Vec<&String> = rows[row].iter().filter(|piece| !stderr.contains(piece.as_str())).collect();
        if out.status.success() || !missing.is_empty() || stderr.contains("panicked") {
            failures.push(format!("{row}: exit {:?}, missing {missing:?} in:\n{stderr}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    std::fs::remove_dir_all(&dir).ok();
}
