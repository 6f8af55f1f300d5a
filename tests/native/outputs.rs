//! Never lose a user's file: every output the commands write is checked before the work and
//! written whole or not at all. One table of cases, each a command line and the file it must
//! leave as it was: an output that is an input, an unsupported extension (refused before the
//! model is even opened), two outputs naming one file, a model folder that is an input or holds
//! another model; then a full disk (a small tmpfs, where this test may mount one), which must
//! leave the old file and no partial one.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Cli, fixtures, scratch};

fn png(path: &Path, w: u32, h: u32) -> PathBuf {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 3) as u8, 90])).save(path).unwrap();
    path.to_path_buf()
}

/// A copy of a fixture model folder.
fn model_copy(dir: &Path, name: &str, from: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixtures().join(from)).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

struct Case {
    what: &'static str,
    line: Cli,
    /// What stderr must say.
    says: &'static str,
    /// The folder whose files must all be left as they were.
    keeps: PathBuf,
}

#[test]
fn outputs_never_destroy_a_file() {
    let dir = scratch("outputs");
    let photo = png(&dir.join("photo.png"), 64, 48);
    let existing = dir.join("labels.jpg");
    std::fs::write(&existing, b"a file the user keeps").unwrap();
    let colours = model_copy(&dir, "colours", "semantic-colours");
    let other = model_copy(&dir, "other-model", "clip-p16-quickgelu");
    let segment = || Cli::new("segment").model(&colours).image(&photo).labels("red, green");
    let cases = [
        Case { what: "--out is the photo", line: segment().out(&photo), says: "is an input", keeps: dir.clone() },
        Case {
            what: "--overlay is the photo",
            line: segment().out(dir.join("l.png")).arg("--overlay", &photo),
            says: "is an input",
            keeps: dir.clone(),
        },
        Case {
            what: "--out is the model's weights",
            line: segment().out(colours.join("model.safetensors")),
            says: "is written as .png",
            keeps: colours.clone(),
        },
        Case {
            what: "a lossy label map, refused before the model is opened",
            line: Cli::new("segment").model(dir.join("no-such-model")).image(&photo).labels("red").out(&existing),
            says: "a label map is written as .png",
            keeps: dir.clone(),
        },
        Case {
            what: "two outputs name one file",
            line: segment().out(dir.join("same.png")).arg("--overlay", dir.join("./same.png")),
            says: "--out and --overlay both name",
            keeps: dir.clone(),
        },
        Case {
            what: "sam --out is the photo",
            line: Cli::new("sam").fixture("sam-tiny").image(&photo).arg("--point", "5,5").out(&photo),
            says: "is an input",
            keeps: dir.clone(),
        },
        Case {
            what: "convert --out into another model's folder",
            line: Cli::new("convert").model(&colours).out(&other),
            says: "already holds a model",
            keeps: other.clone(),
        },
        Case {
            what: "convert --out is the model's own folder",
            line: Cli::new("convert").model(&colours).out(&colours).switch("--force"),
            says: "holds an input",
            keeps: colours.clone(),
        },
        Case {
            what: "train --out is the backbone",
            line: Cli::new("train fusioner")
                .arg("--backbone", &colours)
                .arg("--dataset", fixtures().join("colour-segmentation"))
                .args(["--format", "folder"])
                .arg("--classes", fixtures().join("colour-segmentation/classes.txt"))
                .out(&colours),
            says: "holds an input",
            keeps: colours.clone(),
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let before = snapshot(&case.keeps);
        let line = case.line.to_string();
        let out = case.line.run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(case.says) {
            failures.push(format!(
                "{}: `{line}` exit {:?}, wanted \"{}\" in: {stderr}",
                case.what,
                out.status.code(),
                case.says
            ));
        }
        if snapshot(&case.keeps) != before {
            failures.push(format!("{}: `{line}` changed a file in {}", case.what, case.keeps.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // With --force the other model's folder is replaced whole: no weights of the old one left.
    Cli::new("convert").model(&colours).out(&other).switch("--force").ok();
    let config = std::fs::read_to_string(other.join("config.json")).unwrap();
    assert_eq!(config, std::fs::read_to_string(colours.join("config.json")).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

/// A full disk mid-write leaves the old file as it was and no partial file. Needs a small
/// tmpfs: where this test cannot mount one (no privilege), it says so and checks nothing.
#[test]
fn a_full_disk_leaves_the_old_file() {
    let dir = scratch("full-disk");
    let small = dir.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("a_full_disk_leaves_the_old_file: cannot mount a tmpfs here; not checked");
        std::fs::remove_dir_all(&dir).ok();
        return;
    }
    let old = small.join("overlay.png");
    std::fs::write(&old, b"the overlay of yesterday").unwrap();
    // A 400 x 300 overlay of noise is far more than the 16 KiB the disk holds.
    let photo = dir.join("photo.png");
    image::RgbImage::from_fn(400, 300, |x, y| image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y) as u8]))
        .save(&photo)
        .unwrap();
    let out = Cli::new("segment")
        .fixture("semantic-colours")
        .image(&photo)
        .labels("red, green")
        .out(dir.join("labels.png"))
        .arg("--overlay", &old)
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let left: Vec<String> =
        std::fs::read_dir(&small).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let kept = std::fs::read(&old).unwrap();
    Command::new("umount").arg(&small).status().ok();
    assert!(!out.status.success() && stderr.contains("cannot write"), "{stderr}");
    assert_eq!(kept, b"the overlay of yesterday", "the old overlay is kept");
    assert_eq!(left, ["overlay.png"], "no partial file is left");
    std::fs::remove_dir_all(&dir).ok();
}
